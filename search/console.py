"""What a user sees in the terminal: our lines, not the libraries' start-up chatter.

TensorFlow prints C++ log lines when it is imported and when it first looks for a GPU
(oneDNN, CUDA stubs, CPU features) whatever TF_CPP_MIN_LOG_LEVEL says, because they come
before its logging is set up; MLflow logs its database migrations and warns about pyfunc type
hints on every run. `quiet()` silences those once per process (the CLI and every worker
process call it) unless `--debug` asks to see everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings


@contextlib.contextmanager
def _stderr_to(fd: int):
    """File descriptor 2 (C++ logging writes there directly) sent to fd for a block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def silenced_stderr():
    """Send file descriptor 2 to /dev/null for a block."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with _stderr_to(devnull):
            yield
    finally:
        os.close(devnull)


@contextlib.contextmanager
def captured_stderr():
    """Keep what is written to file descriptor 2 during a block aside: the list it yields holds
    that text once the block is over (to read a library's reason, or to pass it on)."""
    caught: list[str] = []
    with tempfile.TemporaryFile() as sink:
        try:
            with _stderr_to(sink.fileno()):
                yield caught
        finally:
            sink.seek(0)
            caught.append(sink.read().decode(errors="replace"))


def quiet(debug: bool = False, tensorflow: bool = True) -> None:
    """Silence the libraries' routine output (all of it is shown with debug); TensorFlow's
    start-up lines by importing it here, when Keras is to run on it (search.backend)."""
    if debug:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for module in ("mlflow", "keras", "optuna", "tensorflow", "absl"):
        warnings.filterwarnings("ignore", module=module)
    warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
    on_tensorflow = os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
    if tensorflow and on_tensorflow and "tensorflow" not in sys.modules:
        with silenced_stderr():
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")
            tf.config.list_physical_devices("GPU")  # the CUDA probe logs here, once
