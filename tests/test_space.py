"""Space YAML → distributions → frozen config; validation errors name the key."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile

import optuna
import pytest
import yaml

from search.errors import ConfigError
from search.space import space as space_lib
from search.space.config import TrialConfig

from conftest import ROOT, TINY_SPACE


def parse(text: str):
    return space_lib.parse(yaml.safe_load(text))


def test_fixed_trial_gives_frozen_config():
    space = space_lib.load(TINY_SPACE)
    config = space.sample(optuna.trial.FixedTrial({
        "width": 16, "dropout": 0.1, "cutout": 0.25, "clr_mode": "triangular2",
        "base_lr": 1e-3, "lr_ratio": 3.0}))
    assert isinstance(config, TrialConfig)
    assert config.width == 16 and config.image_size == (32, 32)
    assert config.max_lr == pytest.approx(3e-3)  # derived: base_lr * lr_ratio > base_lr
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.width = 3  # type: ignore[misc]


def test_conditional_param_is_sampled_only_when_active():
    space = space_lib.load(TINY_SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        config = space.sample(trial)
        seen.add(config.clr_mode)
        assert ("gamma" in trial.params) == (config.clr_mode == "exp_range")
        study.tell(trial, 0.5)
    assert "exp_range" in seen and len(seen) > 1


@pytest.mark.parametrize("text, words", [
    ("params: {widht: 3}", ["widht", "unknown key"]),
    ("params: {width: {type: int, low: 1}}", ["width", "low and high"]),
    ("params: {width: {type: integer, low: 1, high: 2}}", ["width.type"]),
    ("params: {base_lr: {type: float, low: 0.1, high: 0.01}}", ["base_lr"]),
    ("params: {gamma: {type: float, low: 0.9, high: 0.99, when: {mode: x}}}", ["gamma.when", "mode"]),
    ("objective: accuracy\nparams: {}", ["objective"]),
    ("pruner: {name: sometimes}\nparams: {}", ["pruner.name"]),
    ("params: {base_lr: 0.01, max_lr: 0.001}", ["max_lr", "base_lr"]),
    ("clr_bounds: lr_find\nparams: {base_lr: 0.01}", ["lr_find", "base_lr"]),
    ("params: {image_size: 8}", ["image_size"]),
    ("params: {backbone: {choices: [separable, transformer]}}", ["backbone", "transformer"]),
    ("bogus: 1\nparams: {}", ["bogus"]),
])
def test_invalid_space_names_the_key(text, words):
    with pytest.raises(ConfigError) as err:
        parse(text)
    for word in words:
        assert word in str(err.value)


def test_load_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("params: {width: [1, 2}")
    with pytest.raises(ConfigError, match="bad.yaml"):
        space_lib.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        space_lib.load(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "name: x\nobjective: mean_accuracy\n",
                                  "params:\n", "params: {}\n", "params: []\n"])
def test_a_space_without_params_names_the_file(tmp_path, text):
    """An empty space would run TrialConfig's defaults as a search; an included file (enqueued
    configs only, like spaces/baselines.yaml) needs no params."""
    empty = tmp_path / "x.yaml"
    empty.write_text(text)
    with pytest.raises(ConfigError) as err:
        space_lib.load(empty)
    assert str(err.value) == (f"{empty}: the space has no params; give at least one key under "
                              f"params (see spaces/default.yaml)")
    (tmp_path / "top.yaml").write_text(f"include: {ROOT / 'spaces' / 'baselines.yaml'}\n"
                                       f"params: {{image_size: 32}}\n")
    assert len(space_lib.load(tmp_path / "top.yaml").enqueue) == 2


def test_shipped_spaces_load_and_the_gpu_space_runs_the_baselines_first():
    default = space_lib.load(ROOT / "spaces" / "default.yaml")
    assert not default.enqueue  # the quick start stays within minutes
    sampled = {p.name for p in default.params if p.distribution is not None}
    for key in ("backbone", "width", "dropout", "cutout", "clr_mode", "base_lr", "lr_ratio",
                "step_size_epochs", "gamma", "epochs", "neck_units", "class_weighting"):
        assert key in sampled
    # pinned for the 3-minute quick start on 32 px images (issue 20): a 4x4 map, one row each
    # for head, torso, hands and feet, kept by the rows neck
    pinned = {p.name: p.value for p in default.params if p.distribution is None}
    assert {k: pinned.get(k) for k in ("depth", "image_size", "neck")} == \
        {"depth": 3, "image_size": 32, "neck": "rows"}
    gpu = space_lib.load(ROOT / "spaces" / "hvc-gpu.yaml")
    assert [e["name"] for e in gpu.enqueue] == ["model-1-separable", "model-2-resnet50-clr"]
    model1 = TrialConfig.from_dict(gpu.enqueue[0]["config"])
    assert model1.convs_per_block == (1, 1, 1, 3, 3) and model1.neck == "flatten"
    assert model1.optimizer == "sgd" and model1.cutout == 0.0
    model2 = TrialConfig.from_dict(gpu.enqueue[1]["config"])
    assert (model2.family, model2.clr_mode, model2.gamma) == ("resnet50", "exp_range", 0.99994)
    cpu = space_lib.load(ROOT / "spaces" / "hvc.yaml")
    assert cpu.prune_below_majority and cpu.keep_models is None and not cpu.enqueue


def test_pin_overrides_space_and_baseline_budget(tmp_path):
    path = tmp_path / "with-baselines.yaml"
    path.write_text((ROOT / "spaces" / "default.yaml").read_text()
                    + f"include: {ROOT / 'spaces' / 'baselines.yaml'}\n")
    default = space_lib.load(path)
    pinned = default.pin(image_size=32, epochs=1, backbone="separable")
    config = pinned.sample(optuna.trial.FixedTrial({
        "width": 24, "depth": 4, "convs_per_block": 1, "dropout": 0.0, "neck_units": 0,
        "neck_dropout": 0.0, "head_units": 0, "head_dropout": 0.0, "class_weighting": "none",
        "flip": True, "cutout": 0.0, "shift": 0.0, "optimizer": "adam", "clr_mode": "constant",
        "base_lr": 1e-3, "lr_ratio": 2.0, "step_size_epochs": 1.0, "batch_size": 32}))
    assert config.image_size == (32, 32) and config.epochs == 1 and config.backbone == "separable"
    # the separable baseline keeps its architecture but takes the budget; ResNet50 is dropped
    assert [e["name"] for e in pinned.enqueue] == ["model-1-separable"]
    assert pinned.enqueue[0]["config"]["image_size"] == [32, 32]
    assert pinned.fingerprint() != default.fingerprint()
    assert default.fingerprint() == space_lib.load(path).fingerprint()


def test_config_rejects_unknown_and_mistyped_keys():
    with pytest.raises(ConfigError, match="colour"):
        TrialConfig.from_dict({"colour": 1})
    with pytest.raises(ConfigError, match="epochs"):
        TrialConfig.from_dict({"epochs": "three"})
    assert TrialConfig.from_dict({"image_size": [40, 64]}).image_size == (40, 64)


def test_bundled_space_in_a_checkout_is_the_top_level_file():
    assert space_lib.bundled() == ROOT / "spaces" / "default.yaml"
    assert space_lib.bundled("baselines") == ROOT / "spaces" / "baselines.yaml"


WHEEL_TOOLS = ("pip", "setuptools", "wheel")


@pytest.mark.e2e
@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in WHEEL_TOOLS),
                    reason=f"building a wheel offline needs {', '.join(WHEEL_TOOLS)} installed")
def test_a_wheel_install_ships_and_finds_the_default_space(tmp_path):
    """Built offline (no build isolation, no index) from a copy of what a source distribution
    holds, so the checkout gets no build/ or *.egg-info; installed with --target into a bare
    folder and imported from there, from a folder without spaces/."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("search", "spaces"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w",
                    str(tmp_path / "dist"), str(source)], env=env, check=True,
                   capture_output=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("search-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"search/spaces/default.yaml", "search/spaces/baselines.yaml"} <= set(names)
    assert not [n for n in names if n.startswith("spaces/")]
    subpackages = {str(p.relative_to(ROOT)) for p in (ROOT / "search").rglob("__init__.py")}
    assert subpackages <= set(names), "a subpackage of search/ is missing from setup.cfg"
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], env=env, check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import json, search, search.cli, search.space.space as s; "
            "import search.commands.options as o; "
            "print(json.dumps([search.__file__, o.default_space(), "
            "[e['name'] for e in s.load(s.bundled('hvc-gpu')).enqueue]]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True,
                          text=True, env={**env, "PYTHONPATH": str(site)}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    module, default, enqueued = json.loads(done.stdout)
    assert module == str(site / "search" / "__init__.py")
    assert default == str(site / "search" / "spaces" / "default.yaml")
    assert enqueued == ["model-1-separable", "model-2-resnet50-clr"]  # include: resolved too


def test_family_alpha_draws_a_network_and_its_width_together():
    from search.space import space as space_lib

    space = space_lib.parse({"params": {
        "backbone": "pretrained", "weights": "none",
        "family_alpha": {"choices": ["mobilenet_v2:0.5", "mobilenet:0.25"]}}})
    config = space.sample(optuna.trial.FixedTrial({"family_alpha": "mobilenet:0.25"}))
    assert (config.family, config.alpha) == ("mobilenet", 0.25)
    pinned = space.pin(family="mobilenet_v2")  # a pin narrows the pair to its family
    assert pinned.sample(optuna.trial.FixedTrial({})).alpha == 0.5
    with pytest.raises(ConfigError, match="none of the space's family_alpha choices"):
        space.pin(family="resnet50")
    with pytest.raises(ConfigError, match="family_alpha must be FAMILY:ALPHA"):
        space_lib.parse({"params": {"family_alpha": "mobilenet_v2"}})
