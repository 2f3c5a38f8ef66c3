"""One small real study for the pareto and report tests, built once per test session.

Three trials of tests/tiny_space.yaml with an enqueued baseline first and `clr_bounds: lr_find`
(so the best trial has an LR range test curve in MLflow): ~1 minute on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path

from search import cli

from conftest import TINY_SPACE

STUDY = "tiny"
BASELINE = """clr_bounds: lr_find
enqueue:
  - name: tiny-baseline
    config: {backbone: separable, width: 8, depth: 2, neck_units: 16, head_units: 0,
             clr_mode: exp_range, gamma: 0.99, image_size: 32, batch_size: 32, epochs: 1}
"""
_BUILT: dict[str, Path] = {}


def runs_dir(tmp_path_factory, csv: Path) -> Path:
    """The runs/ folder of the shared study (built on first call)."""
    if "runs" not in _BUILT:
        folder = tmp_path_factory.mktemp("tiny-study")
        lines = [line for line in TINY_SPACE.read_text().splitlines()  # lr_find sets the bounds
                 if not line.lstrip().startswith(("base_lr:", "lr_ratio:"))]
        space = folder / "space.yaml"
        space.write_text("\n".join(lines) + "\n" + BASELINE)
        runs = folder / "runs"
        assert cli.main(["run", "--trials", "3", "--space", str(space), "--data", str(csv),
                         "--study", STUDY, "--runs-dir", str(runs), "--no-progress"]) == 0
        _BUILT["runs"] = runs
    return _BUILT["runs"]
