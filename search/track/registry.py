"""Models in MLflow: log a trial's model, register the best, pull it, predict with it.

A logged model is an MLflow pyfunc LoggedModel holding `model.keras` (raw RGB in, one softmax
per head out) and `labels.json` (the vocabulary per head), so a pulled model needs nothing
else to turn images into labels. Models load with Keras safe_mode on.

No index has this project's `search` package, so a logged model carries its code (the `search`
folder, which MLflow puts on sys.path when it loads the model) and requires only what pip can
install: the versions, installed here, of the third-party packages its loader imports.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from search import backend
from search.errors import UsageError

MODEL_FILE = "model.keras"
LABELS_FILE = "labels.json"
CONFIG_FILE = "config.json"
BACKEND_KEY = "keras_backend"  # in the logged model's metadata and model_config
CHAMPION = "champion"
# The `search` package folder: copied into every logged model (code_paths), so a model loads
# with the code that saved it.
PACKAGE = Path(__file__).resolve().parents[1]
# Distributions the pyfunc loader imports: serve/pyfunc_model.py and this module (mlflow, numpy),
# and load_folder's keras, search.model.backbones, search.train.clr and search.model.preprocess
# (keras, numpy); search.track.image_payload decodes images (Pillow). Beside them, the Keras
# backend the model was saved on (`requirements`); its `.keras` file loads on any of them.
LOADER_DISTRIBUTIONS = ("mlflow", "keras", "numpy", "pillow")

try:  # keep `import search.track.registry` usable without mlflow's heavy pyfunc on the path
    import mlflow.pyfunc

    _PythonModel = mlflow.pyfunc.PythonModel
except ImportError:  # pragma: no cover
    _PythonModel = object


@contextlib.contextmanager
def _without_signature_warnings():
    """MLflow warns, when the class is defined and each time a model is logged, that predict
    has no type hints, and that no input example was given: it takes images of any sizes and
    forms (search.track.image_payload), which no hint or example MLflow validates can describe. Its
    own filter ("once") overrides ours, so the message is dropped where it would be shown."""
    shown = warnings.showwarning
    dropped = ("type hint", "An input example was not provided")

    def show(message, *args, **kwargs):
        if not any(words in str(message) for words in dropped):
            shown(message, *args, **kwargs)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


with _without_signature_warnings():
    class HeadsModel(_PythonModel):
        """pyfunc wrapper: `predict` takes images (HxWx3 arrays, or image files as bytes or
        base64 strings, in any form search.track.image_payload reads), returns label dicts; param
        `all_probabilities` adds every class's probability."""

        def load_context(self, context):
            _use_saved_backend((context.model_config or {}).get(BACKEND_KEY))
            self.model, self.vocab = load_folder(Path(context.artifacts["keras_model"]).parent)

        def predict(self, context, model_input, params=None):
            from search.track import image_payload

            return predict_arrays(self.model, self.vocab, image_payload.images(model_input),
                                  image_payload.wants_all_probabilities(params))


def log_model(run_id: str, keras_path: Path, vocab: dict, config: dict) -> str:
    import mlflow

    from search.track.image_payload import signature

    with tempfile.TemporaryDirectory() as tmp:
        labels = Path(tmp) / LABELS_FILE
        labels.write_text(json.dumps({h: list(v) for h, v in vocab.items()}, indent=2))
        cfg = Path(tmp) / CONFIG_FILE
        cfg.write_text(json.dumps(config, indent=2, sort_keys=True))
        with mlflow.start_run(run_id=run_id), _without_signature_warnings():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(PACKAGE / "serve" / "pyfunc_model.py"),
                artifacts={"keras_model": str(keras_path), "labels": str(labels),
                           "config": str(cfg)},
                code_paths=[str(PACKAGE)], signature=signature(),
                pip_requirements=requirements(), model_config={BACKEND_KEY: backend.name()},
                metadata={BACKEND_KEY: backend.name()})
    return info.model_uri


def requirements() -> list[str]:
    """`name==version` of each of LOADER_DISTRIBUTIONS as installed here (what the model was
    trained and saved with); a name alone if it is installed under another distribution."""
    from importlib import metadata

    out = []
    for name in LOADER_DISTRIBUTIONS:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return [*out, backend.requirement()]


def _use_saved_backend(saved: str | None) -> None:
    """Load a served model on the backend it was saved on when nothing else chose one (no
    KERAS_BACKEND, Keras not yet loaded) and that backend is installed; else the one there is."""
    import importlib.util
    import os
    import sys

    if saved and "keras" not in sys.modules and "KERAS_BACKEND" not in os.environ \
            and importlib.util.find_spec(saved) is not None:
        os.environ["KERAS_BACKEND"] = saved


def register(model_uri: str, name: str, run_id: str, aliases: Iterable[str] = (CHAMPION,)) -> str:
    """Register model_uri under name (once per run: a trial is never registered twice), point
    each alias at that version and write its model card (search.track.model_card); the version."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    version = None
    try:
        for mv in client.search_model_versions(f"name = '{name}'"):
            if mv.run_id == run_id:
                version = mv.version
                break
    except mlflow.exceptions.MlflowException:  # the registered model does not exist yet
        version = None
    if version is None:
        version = _quietly_register(model_uri, name)
    for alias in aliases:
        client.set_registered_model_alias(name, alias, str(version))
    from search.track import model_card

    model_card.write(client, name, str(version), run_id, model_uri)
    return str(version)


def _quietly_register(model_uri: str, name: str) -> str:
    """mlflow.register_model, without its "Successfully registered model" / "already exists.
    Creating a new version" lines on stderr (the caller prints what was registered); any
    other line it prints still goes through."""
    import io
    import sys

    import mlflow

    chatter = ("Successfully registered model ", "Registered model ", "Created version ")
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            return mlflow.register_model(model_uri, name).version
    finally:
        for line in buffer.getvalue().splitlines():
            if not line.startswith(chatter):
                print(line, file=sys.stderr)


def head_alias(head: str) -> str:
    """MLflow aliases allow letters, digits, '-' and '_': best-carryingbag, best-age."""
    return "best-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in head)


def pull(model_uri: str, out: Path) -> Path:
    """Write model.keras, labels.json and config.json of model_uri into the folder out."""
    import mlflow

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        except mlflow.exceptions.MlflowException as exc:
            raise UsageError(f"cannot download {model_uri}: {exc.message}") from None
        source = _find_model_folder(local)
        out.mkdir(parents=True, exist_ok=True)
        for name in (MODEL_FILE, LABELS_FILE, CONFIG_FILE):
            if (source / name).is_file():
                shutil.copy2(source / name, out / name)
    return out


def _find_model_folder(root: Path) -> Path:
    for candidate in [root, *root.rglob("*")]:
        if candidate.is_dir() and (candidate / MODEL_FILE).is_file() \
                and (candidate / LABELS_FILE).is_file():
            return candidate
    raise UsageError(f"{root} holds no {MODEL_FILE} with a {LABELS_FILE}: not a search model")


def load(model: str):
    """A folder (from `search pull`) or a models:/ URI → (keras model, vocab)."""
    path = Path(model)
    if path.is_dir():
        return load_folder(_find_model_folder(path))
    if "://" not in model and ":/" not in model:
        raise UsageError(f"model {model!r} is neither a folder nor a models:/ URI")
    with tempfile.TemporaryDirectory() as tmp:
        folder = pull(model, Path(tmp))
        return load_folder(folder)


def load_folder(folder: Path):
    _check_folder(Path(folder))
    import keras

    # The layers a saved model names ("search>ClassName"), registered by importing them; models
    # saved before the stage packages (search/heads.py, ...) name the same classes.
    import search.model.backbones  # noqa: F401
    import search.model.heads  # noqa: F401
    import search.model.preprocess  # noqa: F401
    import search.train.clr  # noqa: F401  models saved before export dropped the optimizer carry it

    model = keras.models.load_model(Path(folder) / MODEL_FILE, safe_mode=True, compile=False)
    vocab = json.loads((Path(folder) / LABELS_FILE).read_text())
    return model, {h: tuple(v) for h, v in vocab.items()}


def _check_folder(folder: Path) -> None:
    """One clear line, not a zip traceback, for a folder missing a file or with a model.keras
    cut short (an interrupted pull or copy): every member's CRC is checked."""
    import zipfile

    for name in (MODEL_FILE, LABELS_FILE):
        if not (folder / name).is_file():
            raise UsageError(f"{folder} has no {name}: not a whole search model; pull it again")
    try:
        with zipfile.ZipFile(folder / MODEL_FILE) as archive:
            bad = archive.testzip()
        json.loads((folder / LABELS_FILE).read_text())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        bad = f"{type(exc).__name__}: {exc}"
    if bad:
        raise UsageError(f"{folder}: {MODEL_FILE} or {LABELS_FILE} is damaged or cut short "
                         f"({bad}); pull the model again")


def predict_probs(model, images: list[np.ndarray], batch_size: int = 64) -> dict[str, np.ndarray]:
    """{head: [N, k] probabilities} for raw images of any sizes (same-size images batched)."""
    probs: dict[str, np.ndarray] = {}
    by_shape: dict[tuple, list[int]] = {}
    for i, img in enumerate(images):
        by_shape.setdefault(np.asarray(img).shape, []).append(i)
    for members in by_shape.values():
        for start in range(0, len(members), batch_size):
            chunk = members[start:start + batch_size]
            batch = np.stack([np.asarray(images[i], dtype=np.float32) for i in chunk])
            for head, p in model.predict(batch, verbose=0).items():
                out = probs.setdefault(head, np.zeros((len(images), p.shape[1]), np.float32))
                out[chunk] = p
    order = model.output if isinstance(model.output, dict) else probs  # JAX returns keys sorted
    return {head: probs[head] for head in order if head in probs}


def predict_arrays(model, vocab: dict, images: Iterable[np.ndarray],
                   all_probabilities: bool = False) -> list[dict]:
    """One dict per image: {head: {"label": str, "probability": float}}; any image sizes.
    With all_probabilities each head also has "probabilities": {label: float}."""
    images = list(images)
    probs = predict_probs(model, images)
    out = [{head: {"label": vocab[head][int(np.argmax(p[i]))],
                   "probability": round(float(np.max(p[i])), 4)}
            for head, p in probs.items()} for i in range(len(images))]
    if all_probabilities:
        for i, answer in enumerate(out):
            for head, p in probs.items():
                answer[head]["probabilities"] = {
                    label: round(float(q), 4) for label, q in zip(vocab[head], p[i])}
    return out
