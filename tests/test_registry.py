"""A logged model requires only what pip can install and carries this package's own code."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from search.space.config import TrialConfig

pytestmark = pytest.mark.e2e  # a whole search, worker, server or subprocess CLI

VOCAB = {"gender": ("female", "male"), "age": ("15-25", "25-35", "35-45")}

# Run with `python -I` from a folder outside the project: every copy of `search` is hidden
# (the venv's editable-install finder, any sys.path entry holding one).
HIDE_SEARCH = """
import importlib.machinery, importlib.util, json, os, sys
def holds_search(entry):
    return os.path.isfile(os.path.join(entry or '.', 'search', '__init__.py'))
sys.path = [entry for entry in sys.path if not holds_search(entry)]
sys.meta_path = [f for f in sys.meta_path if f is importlib.machinery.PathFinder
                 or getattr(f, 'find_spec', lambda *a: None)('search', None) is None]
assert importlib.util.find_spec('search') is None, 'search is still importable'
"""
# See the loading test's docstring.
LOAD = HIDE_SEARCH + """
import mlflow.pyfunc, numpy as np
uri, dst = sys.argv[1:]
model = mlflow.pyfunc.load_model(uri, dst_path=dst)
out = model.predict([np.full((20, 30, 3), 90, np.uint8), np.zeros((40, 40, 3), np.uint8)])
import search
inside = os.path.realpath(dst) + os.sep
files = [os.path.realpath(m.__file__) for m in list(sys.modules.values())
         if isinstance(getattr(m, '__file__', None), str)]
print(json.dumps({'search': search.__file__, 'predicted': out,
                  'modules': sorted(f for f in files if f.startswith(inside))}))
"""


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~;\[ ]", requirement, maxsplit=1)[0]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A tiny model logged through the real tracking path: (folder, tracking URI, model URI)."""
    from search.model import assembly as model_lib
    from search.track.tracking import Tracker

    folder = tmp_path_factory.mktemp("registry")
    config = TrialConfig(width=8, depth=2, image_size=(32, 32), neck_units=8, head_units=0)
    keras_path = folder / "model.keras"
    model_lib.export(model_lib.build(config, VOCAB), config).save(keras_path)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracker = Tracker(uri, "registry", artifact_root=folder / "mlartifacts")
    with tracker.trial_run(tracker.study_run("registry"), "registry", 0) as trial:
        model_uri = trial.log_model(keras_path, VOCAB, config.to_dict())
    return folder, uri, model_uri


@pytest.fixture(scope="module")
def loaded(logged):
    """The model loaded and run in a fresh process: what LOAD printed, and where it downloaded."""
    folder, uri, model_uri = logged
    elsewhere, downloaded = folder / "elsewhere", folder / "downloaded"
    elsewhere.mkdir()
    downloaded.mkdir()
    done = subprocess.run([sys.executable, "-I", "-c", LOAD, model_uri, str(downloaded)],
                          cwd=elsewhere, env={**os.environ, "MLFLOW_TRACKING_URI": uri},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return downloaded, json.loads(done.stdout.strip().splitlines()[-1])


def _requirements(folder: Path) -> list[str]:
    [path] = folder.rglob("requirements.txt")
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_requirements_are_installed_versions_and_not_search(logged):
    lines = _requirements(logged[0] / "mlartifacts")  # as stored with the logged model
    names = [_normal(_name(line)) for line in lines]
    assert "search" not in names
    for line in lines:
        installed = metadata.version(_name(line))  # PackageNotFoundError: not installable here
        assert line == f"{_name(line)}=={installed}"
    assert {"mlflow", "tensorflow", "keras", "numpy"} <= set(names)


def test_loads_and_predicts_with_its_own_copy_of_search(loaded):
    """LOAD runs in a fresh `python -I` process (no PYTHONPATH, cwd outside the project) that
    first hides every other copy of `search` (the venv's editable-install finder, any sys.path
    entry holding one) and checks that `import search` would fail. The model must still load
    and predict there, and `search` must then come from the model's own code folder. Every
    third-party package imported by the model's code that ran must be among its requirements."""
    downloaded, seen = loaded
    code = Path(seen["search"]).resolve().parent.parent
    assert code.name == "code" and code.is_relative_to(downloaded.resolve())
    assert {Path(m).name for m in seen["modules"]} >= {"registry.py", "clr.py", "pyfunc_model.py"}
    assert len(seen["predicted"]) == 2
    for labels in seen["predicted"]:
        assert set(labels) == set(VOCAB) and all(labels[h]["label"] in VOCAB[h] for h in VOCAB)
    required = {_normal(_name(line)) for line in _requirements(downloaded)}
    providers = metadata.packages_distributions()
    imported = set()
    for source in seen["modules"]:
        for node in ast.walk(ast.parse(Path(source).read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"search"}
    missing = {top for top in third_party
               if not {_normal(d) for d in providers.get(top, [])} & required}
    assert not missing, f"imported by the model's code but not required: {sorted(missing)}"
