"""The feature cache: computed once, reused, keyed, checked on load, safe between processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from search.data import verified
from search.train import features

KEY = features.key(table="t1", family="mobilenet_v2", alpha=0.35, weights="w1",
                   image_size=(8, 8), crop="none", cut="pooled:gap", count=3)


class Extractor:
    """A real Keras model image → mean colour per channel, and how often it was built."""

    built = 0

    def __call__(self):
        import keras

        Extractor.built += 1
        image = keras.Input((8, 8, 3))
        return keras.Model(image, keras.layers.GlobalAveragePooling2D()(image))


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 255, (10, 8, 8, 3), dtype=np.uint8)


def test_views_are_plain_flipped_then_shifted_and_cut_out():
    assert [(v.flip, v.shift > 0, v.cutout) for v in features.views(5)] == [
        ("none", False, False), ("all", False, False), ("random", True, False),
        ("random", True, True), ("random", True, False)]


def test_computed_once_then_read_back(tmp_path, images):
    Extractor.built = 0
    first = features.load(KEY, tmp_path, images, Extractor())
    again = features.load(KEY, tmp_path, images, Extractor())
    assert Extractor.built == 1 and first.built_seconds > 0 and again.built_seconds == 0
    np.testing.assert_array_equal(first.array, again.array)
    assert first.array.shape == (10, 3, 3) and first.array.dtype == np.float16
    np.testing.assert_allclose(first.array[:, 0], images.mean(axis=(1, 2)), rtol=1e-2)
    np.testing.assert_allclose(first.array[:, 1], first.array[:, 0], rtol=1e-2)  # flipped


def test_another_key_is_never_served_from_the_file(tmp_path, images):
    features.load(KEY, tmp_path, images, Extractor())
    path = next(tmp_path.glob("features-*.npy"))
    assert verified.read(path, {**KEY, "weights": "w2"}) is None
    other = features.load({**KEY, "image_size": [16, 16]}, tmp_path, images, Extractor())
    assert other.built_seconds > 0 and len(list(tmp_path.glob("features-*.npy"))) == 2


def test_a_truncated_or_altered_file_is_rebuilt(tmp_path, images):
    good = features.load(KEY, tmp_path, images, Extractor()).array
    path = next(tmp_path.glob("features-*.npy"))
    path.write_bytes(path.read_bytes()[:-40])  # a write cut short
    rebuilt = features.load(KEY, tmp_path, images, Extractor())
    assert rebuilt.built_seconds > 0
    np.testing.assert_array_equal(rebuilt.array, good)
    data = np.load(path)
    data[0, 0, 0] += 1  # same size, other content: the digest tells
    np.save(path, data)
    assert verified.read(path, KEY) is None


def test_an_array_without_its_sidecar_is_not_trusted(tmp_path, images):
    features.load(KEY, tmp_path, images, Extractor())
    path = next(tmp_path.glob("features-*.npy"))
    path.with_suffix(".json").unlink()  # a worker killed between the two renames
    assert verified.read(path, KEY) is None


@pytest.mark.e2e
def test_concurrent_processes_build_it_once(tmp_path, images):
    """Two processes ask for the same cache at once: one builds, the other waits and reads."""
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import json, sys, time
        import numpy as np
        from search.train import features
        key = json.loads({json.dumps(json.dumps(KEY))})
        def slow():
            import keras
            time.sleep(3)
            image = keras.Input((8, 8, 3))
            return keras.Model(image, keras.layers.GlobalAveragePooling2D()(image))
        cache = features.load(key, {str(tmp_path / "cache")!r},
                              np.load({str(tmp_path / "images.npy")!r}), slow)
        print(json.dumps([cache.built_seconds > 0, float(cache.array.sum())]))
        """)
    runs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    results = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in runs]
    assert sorted(built for built, _ in results) == [False, True]
    assert results[0][1] == results[1][1]
    assert not list((tmp_path / "cache").glob("*.tmp.*"))  # nothing half-written left


def test_weights_digest_is_the_file_content(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    a.write_bytes(b"weights one")
    b.write_bytes(b"weights two")
    assert features.weights_digest(str(a)) != features.weights_digest(str(b))
    assert features.weights_digest("imagenet") == "imagenet"
