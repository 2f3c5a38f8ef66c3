"""A registered model behind a real `mlflow models serve` on loopback: base64 JPEG and PNG of
different sizes in each JSON form, the same answers as in-process prediction, and every bad
payload answered 400 with one line and no traceback."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from test_image_payload import encoded, png_claiming

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(small_models, tmp_path_factory):
    """`mlflow models serve -m models:/small@champion --env-manager local`: its base URL."""
    runs, _ = small_models
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "serve.log"
    bin_dir = str(Path(sys.executable).parent)  # mlflow and the uvicorn it execs
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{runs / 'mlflow.db'}",
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", "models:/small@champion",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=runs.parent,
            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, 15)  # mlflow and the uvicorn it started
        process.wait(timeout=30)


def post(url: str, body: dict) -> tuple[int, dict, float]:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    return status, json.loads(text), time.perf_counter() - started


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


JPEG, PNG = encoded(40, 30, "JPEG", 1), encoded(64, 80, "PNG", 2)


def test_base64_jpeg_and_png_of_two_sizes_in_every_json_form(server, small_models):
    import io

    from PIL import Image

    from search.track import registry
    from search.track.tracking import using

    runs, _ = small_models
    with using(f"sqlite:///{runs / 'mlflow.db'}"):
        net, vocab = registry.load("models:/small@champion")
    arrays = [np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")) for raw in (JPEG, PNG)]
    expected = registry.predict_arrays(net, vocab, arrays)
    bodies = {"inputs": {"inputs": [b64(JPEG), b64(PNG)]},
              "instances": {"instances": [b64(JPEG), b64(PNG)]},
              "dataframe_split": {"dataframe_split": {"columns": ["image"],
                                                      "data": [[b64(JPEG)], [b64(PNG)]]}}}
    for name, body in bodies.items():
        status, answer, seconds = post(server, body)
        assert status == 200, (name, answer)
        print(f"{name}: 2 images answered in {seconds * 1000:.0f} ms")
        predictions = answer["predictions"]
        assert [set(p) for p in predictions] == [set(vocab)] * 2
        for got, want in zip(predictions, expected):
            for head in vocab:
                assert got[head]["label"] == want[head]["label"], (name, head)
                assert abs(got[head]["probability"] - want[head]["probability"]) <= 1e-4
    status, answer, _ = post(server, {"inputs": [b64(PNG)],
                                      "params": {"all_probabilities": True}})
    assert status == 200
    for head, labels in vocab.items():
        probabilities = answer["predictions"][0][head]["probabilities"]
        assert list(probabilities) == list(labels)
        assert abs(sum(probabilities.values()) - 1) < 1e-3


@pytest.mark.parametrize("name, body, words", [
    ("not an image", {"inputs": [b64(b"plain text, no image")]}, "image 0: not an image"),
    ("empty string", {"inputs": [b64(PNG), ""]}, "image 1: empty"),
    ("decompression bomb", {"inputs": [b64(png_claiming(100_000, 100_000))]},
     "more than 40000000 pixels"),
    ("too many pixels", {"inputs": [b64(png_claiming(8000, 8000))]}, "64000000 pixels"),
    ("wrong-shape array", {"inputs": [[[[1, 2], [3, 4]]]]}, "must be HxWx3"),
    ("flat array", {"inputs": [[1, 2, 3]]}, "NxHxWx3"),
    ("two columns", {"dataframe_split": {"columns": ["a", "b"], "data": [["x", "y"]]}},
     "one column"),
])
def test_a_bad_payload_is_400_with_one_line_and_no_traceback(server, name, body, words):
    status, answer, _ = post(server, body)
    assert status == 400, (name, answer)
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
    message = answer["message"]
    assert words in message and "\n" not in message, (name, message)
    text = json.dumps(answer)
    assert "Traceback" not in text and "stack_trace" not in answer
    assert "Failed to predict data" not in message  # the request is not echoed back


def test_python_callers_pass_a_dataframe_of_bytes_or_arrays(small_models):
    """In Python the pyfunc takes a one-column DataFrame of raw file bytes, or arrays."""
    import io

    import mlflow.pyfunc
    import pandas as pd
    from PIL import Image

    from search.track.tracking import using

    runs, _ = small_models
    with using(f"sqlite:///{runs / 'mlflow.db'}"):
        model = mlflow.pyfunc.load_model("models:/small@champion")
    from_bytes = model.predict(pd.DataFrame({"image": [JPEG, PNG]}),
                               params={"all_probabilities": True})
    arrays = [np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")) for raw in (JPEG, PNG)]
    from_arrays = model.predict(arrays)
    assert [{h: a["label"] for h, a in p.items()} for p in from_bytes] == [
        {h: a["label"] for h, a in p.items()} for p in from_arrays]
    assert all("probabilities" in answer for p in from_bytes for answer in p.values())
