"""Every request form a served model is handed becomes the same arrays; every bad payload is
one PayloadError naming the image and the problem (the HTTP side: test_model_server.py)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from search.track import image_payload
from search.track.image_payload import MAX_PIXELS, PayloadError


def encoded(width: int, height: int, fmt: str, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few bytes whose header claims width x height RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_every_form_of_the_same_images_gives_the_same_arrays():
    jpeg, png = encoded(40, 30, "JPEG", 1), encoded(64, 80, "PNG", 2)
    expected = [np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")) for raw in (jpeg, png)]
    forms = {
        "inputs: numpy str array": np.array([b64(jpeg), b64(png)]),
        "inputs: [[b64], [b64]]": np.array([[b64(jpeg)], [b64(png)]]),
        "list of str": [b64(jpeg), b64(png)],
        "dataframe_split": pd.DataFrame({"image": [b64(jpeg), b64(png)]}),
        "DataFrame of bytes": pd.DataFrame({"image": [jpeg, png]}),
        "inputs by name": {"image": np.array([b64(jpeg), b64(png)], dtype=object)},
        "data URLs": [f"data:image/jpeg;base64,{b64(jpeg)}", b64(png)],
        "arrays": [expected[0], expected[1]],
    }
    for name, form in forms.items():
        got = image_payload.images(form)
        assert len(got) == 2, name
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b, err_msg=name)
    batch = np.stack([expected[0], expected[0]]).astype(np.int64)  # JSON nested lists
    assert [a.shape for a in image_payload.images(batch)] == [(30, 40, 3)] * 2
    assert image_payload.images(expected[1])[0].shape == (80, 64, 3)  # one HxWx3 array


@pytest.mark.parametrize("payload, words", [
    ([b64(b"hello, not an image")], "image 0: not an image"),
    ([b64(encoded(8, 8, "PNG")), ""], "image 1: empty"),
    ([b""], "image 0: empty"),
    (["not base64 !!"], "image 0: not base64"),
    ([b64(png_claiming(100_000, 100_000))], "more than 40000000 pixels"),
    ([b64(png_claiming(8000, 8000))], "8000x8000 is 64000000 pixels"),
    ([b64(encoded(64, 64, "PNG")[:200])], "image 0: damaged or cut short"),
    (np.zeros((2, 5), np.int64), "NxHxWx3"),
    (np.zeros((1, 4, 4, 2), np.int64), "image 0: an array image must be HxWx3"),
    ([np.full((4, 4, 3), 300.0)], "within 0..255"),
    ([np.zeros((0, 4, 3))], "image 0: empty"),
    ([], "no image"),
    (pd.DataFrame({"a": ["x"], "b": ["y"]}), "one column"),
    ([5], "image 0: an array image must be HxWx3"),
    (5, "cannot read images from a int"),
])
def test_a_bad_payload_is_one_line_naming_the_problem(payload, words):
    with pytest.raises(PayloadError) as caught:
        image_payload.images(payload)
    message = caught.value.message
    assert words in message and "\n" not in message
    assert caught.value.get_http_status_code() == 400


def test_the_scoring_servers_rewrite_of_the_message_is_ignored():
    """MLflow's server sets `e.message = "Failed to predict data '<request>'..."`."""
    error = PayloadError("image 0: empty")
    error.message = f"Failed to predict data '{'A' * 1000}'. \nError: {error.message}"
    assert error.message == "image 0: empty"
    assert "A" * 10 not in error.serialize_as_json()


def test_the_pixel_limit_is_set_below_pillows_own():
    assert MAX_PIXELS < Image.MAX_IMAGE_PIXELS


def test_all_probabilities_param():
    assert image_payload.wants_all_probabilities({"all_probabilities": True})
    assert image_payload.wants_all_probabilities({"all_probabilities": "true"})
    assert not image_payload.wants_all_probabilities(None)
    assert not image_payload.wants_all_probabilities({"all_probabilities": False})
    (spec,) = image_payload.signature().params.params
    assert (spec.name, spec.default) == ("all_probabilities", False)
