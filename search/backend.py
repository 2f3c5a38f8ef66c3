"""Which Keras 3 backend trains: TensorFlow (the default), JAX or PyTorch.

Keras reads `KERAS_BACKEND` once, when it is first imported, so `select` sets it before anything
imports Keras (`search --backend`, or the variable itself); worker processes inherit it. Every
other module asks `name()`. TensorFlow is imported only where it is the tool: the tf.data input
pipeline on the TensorFlow backend, and SavedModel/TFLite export. On JAX and PyTorch the input
pipeline is numpy (search.data.arrays) and TensorFlow need not be installed.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from search.errors import UsageError

NAMES = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"
# What to install for each backend (the project's own dependencies install TensorFlow).
PACKAGES = {"tensorflow": "tensorflow", "jax": "jax (pip install 'jax[cpu]', or 'jax[cuda12]')",
            "torch": "torch (pip install torch)"}


def select(backend: str | None) -> str:
    """Make `backend` (or $KERAS_BACKEND, or TensorFlow) the one Keras will load; its name.

    One line (`UsageError`) when it is unknown, not installed, or when Keras is already loaded
    on another one in this process."""
    chosen = backend or os.environ.get("KERAS_BACKEND") or DEFAULT
    if chosen not in NAMES:
        raise UsageError(f"--backend: unknown backend {chosen!r}; known: {', '.join(NAMES)}")
    if importlib.util.find_spec(chosen) is None:
        raise UsageError(f"--backend {chosen}: the {chosen} package is not installed; "
                         f"install {PACKAGES[chosen]}, or choose another backend")
    if "keras" in sys.modules:
        loaded = sys.modules["keras"].backend.backend()
        if loaded != chosen:
            raise UsageError(f"--backend {chosen}: Keras is already loaded on {loaded} in this "
                             "process; set KERAS_BACKEND before it starts")
    os.environ["KERAS_BACKEND"] = chosen
    if chosen == "jax":  # let several workers share a GPU instead of the first taking 75%
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return chosen


def name() -> str:
    """The backend Keras runs on (loads Keras when it is not loaded yet)."""
    import keras

    return keras.backend.backend()


def is_tensorflow() -> bool:
    return name() == "tensorflow"


def set_random_seed(seed: int) -> None:
    """`keras.utils.set_random_seed` (Python, numpy, Keras, torch), which also seeds TensorFlow
    whenever it is installed, importing it: on JAX or PyTorch that cost a trial TensorFlow's
    9 s import and its C++ start-up lines. There Keras is told, for this call only (a private
    flag of its lazy module), that TensorFlow is not available, unless it is already loaded."""
    import keras

    if is_tensorflow() or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    from keras.src.utils import module_utils

    lazy = module_utils.tensorflow
    before = getattr(lazy, "_available", None)
    lazy._available = False
    try:
        keras.utils.set_random_seed(seed)
    finally:
        lazy._available = before


def requirement() -> str:
    """The pip requirement of the running backend, for a logged model's environment."""
    from importlib.metadata import PackageNotFoundError, version

    package = name()  # each backend's distribution has its name
    try:
        return f"{package}=={version(package)}"
    except PackageNotFoundError:
        return package
