"""Where ImageNet weights come from: local files first (any published input size), then Keras."""

import pytest

from search.errors import ConfigError
from search.model import weights


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCH_WEIGHTS_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    (tmp_path / "w").mkdir()
    return tmp_path / "w"


def test_a_local_file_of_any_input_size_is_found(folder):
    assert weights.local("mobilenet_v2", 0.5) is None
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_160_no_top.h5"
    (folder / name).write_bytes(b"h5")
    assert weights.local("mobilenet_v2", 0.5) == str(folder / name)
    assert weights.resolve("imagenet", "mobilenet_v2", 0.5) == str(folder / name)
    assert weights.resolve("auto", "mobilenet_v2", 0.5) == str(folder / name)
    assert weights.available("mobilenet_v2", 0.5)
    assert weights.local("mobilenet_v2", 0.35) is None  # another width is another file


def test_the_keras_cache_is_searched_after_the_folders(folder):
    cache = folder.parent / "keras-home" / "models"
    cache.mkdir(parents=True)
    (cache / "mobilenet_2_5_224_tf_no_top.h5").write_bytes(b"h5")
    assert weights.local("mobilenet", 0.25) == str(cache / "mobilenet_2_5_224_tf_no_top.h5")


def test_without_a_local_file_keras_is_left_to_download(folder):
    assert weights.resolve("imagenet", "resnet50", 1.0) == "imagenet"


def test_none_and_explicit_paths(folder):
    assert weights.resolve("none", "mobilenet_v2", 0.5) is None
    path = folder / "mine.h5"
    path.write_bytes(b"h5")
    assert weights.resolve(str(path), "mobilenet_v2", 0.5) == str(path)
    with pytest.raises(ConfigError, match="does not exist"):
        weights.resolve(str(folder / "missing.h5"), "mobilenet_v2", 0.5)


def test_shared_weights_are_recognised_when_present(monkeypatch):
    from conftest import SHARED

    if not (SHARED / "weights").is_dir():
        pytest.skip("../shared/weights is not present")
    monkeypatch.setenv("SEARCH_WEIGHTS_DIR", str(SHARED / "weights"))
    for family, alpha in (("mobilenet_v2", 0.35), ("mobilenet_v2", 0.5), ("mobilenet", 0.25)):
        assert weights.local(family, alpha), (family, alpha)
