"""What a served model accepts: every request form becomes a list of uint8-range RGB arrays.

`mlflow models serve` parses the JSON body before the model sees it, and each form reaches
the pyfunc as a different object: `inputs`/`instances` lists of base64 strings as a numpy
string array, `dataframe_split` as a one-column DataFrame, nested pixel lists as a 4-D
number array; a Python caller may pass a list of HxWx3 arrays or a DataFrame of raw bytes.
They all end here, so the pyfunc (`search.track.registry.HeadsModel`) stays a thin wrapper.

Every payload a client can get wrong (not an image, empty, too many pixels, the wrong array
shape) fails as one `PayloadError`, which the scoring server answers with HTTP 400 and the
one line that names the problem: no stack trace, and not the request echoed back.

This module travels inside every logged model (code_paths): it imports only numpy, mlflow
and Pillow, which registry.LOADER_DISTRIBUTIONS pins in the model's requirements.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

# A request's image may hold at most this many pixels (8000 x 5000): a small file claiming a
# huge size (a decompression bomb) is refused from its header, before any pixel is decoded.
MAX_PIXELS = 40_000_000
ALL_PROBABILITIES = "all_probabilities"  # the one request param: add every class probability


class PayloadError(MlflowException):
    """A bad request: HTTP 400 (INVALID_PARAMETER_VALUE) with this one-line message.

    The scoring server rewrites a failing predict's message as "Failed to predict data
    '<the whole request>'. \\nError: ..." (megabytes of base64 for images); the message set
    here is kept, so the response body holds only the line that names the problem."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._first_message

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_first_message"):
            self._first_message = value


def signature():
    """The logged model's signature: no input schema (images of any sizes and forms), one
    optional boolean param, `all_probabilities` (MLflow drops params a model does not
    declare)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec

    return ModelSignature(params=ParamSchema([ParamSpec(ALL_PROBABILITIES, "boolean", False)]))


def wants_all_probabilities(params: dict | None) -> bool:
    value = (params or {}).get(ALL_PROBABILITIES, False)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def images(model_input) -> list[np.ndarray]:
    """The request's images as HxWx3 arrays (values 0..255), in request order."""
    items = _items(model_input)
    if not items:
        raise PayloadError("the request holds no image")
    return [_image(item, i) for i, item in enumerate(items)]


def _items(model_input) -> list:
    """One entry per image: a str (base64), bytes, or an array of pixels."""
    if hasattr(model_input, "columns") and hasattr(model_input, "iloc"):  # a DataFrame
        if model_input.shape[1] != 1:
            raise PayloadError(f"a table of images must have one column (base64 strings or "
                               f"bytes), got {model_input.shape[1]}: "
                               f"{', '.join(map(str, model_input.columns[:5]))}")
        return list(model_input.iloc[:, 0])
    if isinstance(model_input, dict):  # `inputs` as {"image": [...]}
        if len(model_input) != 1:
            raise PayloadError(f"inputs by name must have one name (the images), got "
                               f"{len(model_input)}: {', '.join(list(model_input)[:5])}")
        return _items(next(iter(model_input.values())))
    if isinstance(model_input, (str, bytes, bytearray)):
        return [model_input]
    if isinstance(model_input, np.ndarray):
        if model_input.dtype.kind in "USO":  # strings or objects: one per image
            return list(model_input.reshape(-1))
        if model_input.ndim == 3:
            return [model_input]
        if model_input.ndim == 4:
            return list(model_input)
        raise PayloadError(f"an array of images must be NxHxWx3 (or one HxWx3), got shape "
                           f"{'x'.join(map(str, model_input.shape))}")
    if isinstance(model_input, (list, tuple)) or hasattr(model_input, "to_numpy"):
        return list(model_input)
    raise PayloadError(f"cannot read images from a {type(model_input).__name__}: send base64 "
                       f"strings, bytes or HxWx3 arrays")


def _image(item, index: int) -> np.ndarray:
    if isinstance(item, str):
        item = _unbase64(item, index)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _decode(bytes(item), index)
    if item is None:
        raise PayloadError(f"image {index}: empty")
    return _pixels(item, index)


def _unbase64(text: str, index: int) -> bytes:
    text = "".join(text.split())
    if text.startswith("data:") and "," in text:  # a data URL: data:image/png;base64,....
        text = text.split(",", 1)[1]
    if not text:
        raise PayloadError(f"image {index}: empty")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(f"image {index}: not base64 (send the file's bytes base64-encoded, "
                           f"e.g. `base64 -w0 img.jpg`)") from None


def _decode(raw: bytes, index: int) -> np.ndarray:
    """Image file bytes → uint8 RGB, as `search predict` decodes a file (Pillow, RGB)."""
    from PIL import Image, UnidentifiedImageError

    if not raw:
        raise PayloadError(f"image {index}: empty")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(raw)) as im:
                width, height = im.size
                _check_pixels(width, height, index)
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except Image.DecompressionBombError:  # Pillow's own, higher limit, checked at open
            raise PayloadError(f"image {index}: its header claims more than {MAX_PIXELS} "
                               f"pixels (a decompression bomb?)") from None
        except UnidentifiedImageError:
            raise PayloadError(f"image {index}: not an image file Pillow can read (JPEG, "
                               f"PNG, ...)") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated, damaged
            raise PayloadError(f"image {index}: damaged or cut short ({exc})") from None


def _check_pixels(width: int, height: int, index: int) -> None:
    if width < 1 or height < 1:
        raise PayloadError(f"image {index}: empty ({width}x{height} pixels)")
    if width * height > MAX_PIXELS:
        raise PayloadError(f"image {index}: {width}x{height} is {width * height} pixels; the "
                           f"limit is {MAX_PIXELS}")


def _pixels(item, index: int) -> np.ndarray:
    """An HxWx3 array (or nested lists) of numbers 0..255."""
    try:
        array = np.asarray(item)
    except ValueError:  # ragged nested lists
        raise PayloadError(f"image {index}: not an HxWx3 array (ragged rows)") from None
    if array.dtype.kind not in "uif" or array.ndim != 3 or array.shape[2] != 3:
        what = "x".join(map(str, array.shape)) + f" {array.dtype}"
        raise PayloadError(f"image {index}: an array image must be HxWx3 numbers, got {what}")
    _check_pixels(array.shape[1], array.shape[0], index)
    if array.size and (not np.isfinite(array).all() or array.min() < 0 or array.max() > 255):
        raise PayloadError(f"image {index}: pixel values must be within 0..255")
    return array
