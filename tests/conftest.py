"""Shared fixtures: a tiny synthetic dataset, a tiny space, the real data and weights if present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TINY_SPACE = Path(__file__).with_name("tiny_space.yaml")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
if (SHARED / "weights").is_dir():  # genuine ImageNet files: this machine cannot download them
    os.environ.setdefault("SEARCH_WEIGHTS_DIR", str(SHARED / "weights"))


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    """160 synthetic 32 px images with the 8 real heads and vocabularies."""
    from search import synthetic

    return synthetic.generate(tmp_path_factory.mktemp("tiny"), n=160, size=32, seed=1)


@pytest.fixture(scope="session")
def hvc_csv() -> Path:
    csv = SHARED / "hvc" / "hvc_annotations.csv"
    if not csv.is_file():
        pytest.skip("../shared/hvc is not present")
    return csv


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    folder = SHARED / "weights"
    if not folder.is_dir():
        pytest.skip("../shared/weights is not present")
    return folder
