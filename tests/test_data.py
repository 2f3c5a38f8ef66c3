"""Split determinism, the decoded-image cache and tf.data shapes/dtypes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from search.data import table as data


def test_split_is_deterministic_and_disjoint():
    a_train, a_val = data.split(1000, val_fraction=0.2, seed=3)
    b_train, b_val = data.split(1000, val_fraction=0.2, seed=3)
    assert np.array_equal(a_train, b_train) and np.array_equal(a_val, b_val)
    assert len(a_val) == 200 and not set(a_train) & set(a_val)
    assert set(a_train) | set(a_val) == set(range(1000))
    _, other = data.split(1000, val_fraction=0.2, seed=4)
    assert not np.array_equal(a_val, other)


def test_stratified_split_keeps_class_shares():
    strata = np.array(["a"] * 800 + ["b"] * 200)
    train, val = data.split(1000, val_fraction=0.25, seed=0, strata=strata)
    assert (strata[val] == "b").sum() == 50 and (strata[val] == "a").sum() == 200
    again = data.split(1000, val_fraction=0.25, seed=0, strata=strata)
    assert np.array_equal(val, again[1])


def test_table_keeps_none_and_sorted_vocab(tiny_csv):
    table = data.read_table(tiny_csv)
    assert "None" in table.vocab["carryingbag"]
    assert table.vocab["gender"] == ("female", "male")
    labels = table.labels()
    assert set(labels) == set(data.DEFAULT_HEADS)
    assert labels["gender"].dtype == np.int32 and labels["gender"].max() == 1


def test_images_are_cached_uint8_at_size(tiny_csv, tmp_path):
    table = data.read_table(tiny_csv)
    images = data.load_images(table, (40, 36), cache_dir=tmp_path)
    assert images.shape == (len(table), 40, 36, 3) and images.dtype == np.uint8
    cached = list(tmp_path.glob("images-*.npy"))
    assert len(cached) == 1
    again = data.load_images(table, (40, 36), cache_dir=tmp_path)
    assert np.array_equal(np.asarray(again), images)


def test_a_truncated_image_cache_is_rebuilt_not_trusted(tiny_csv, tmp_path, capsys):
    """Issue 21: the decoded images cut to half their size (a full disk, an interrupted copy)
    failed every trial with `mmap length is greater than file size`; now they are rebuilt."""
    table = data.read_table(tiny_csv)
    images = np.array(data.load_images(table, (32, 32), cache_dir=tmp_path))
    (cached,) = tmp_path.glob("images-*.npy")
    size = cached.stat().st_size
    capsys.readouterr()
    os.truncate(cached, size // 2)
    again = data.load_images(table, (32, 32), cache_dir=tmp_path)
    assert np.array_equal(np.asarray(again), images) and cached.stat().st_size == size
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rebuilding ")
    assert lines[0].endswith(f"{cached.name}: truncated ({size // 2 / 1e6:.1f} MB of "
                             f"{size / 1e6:.1f} MB)")
    np.save(cached, images[::-1])  # same size, other pixels, old sidecar: not served either
    assert np.array_equal(np.asarray(data.load_images(table, (32, 32), cache_dir=tmp_path)),
                          images)


def test_train_and_eval_datasets(tiny_csv):
    table = data.read_table(tiny_csv)
    images = data.load_images(table, (32, 32))
    labels = table.labels()
    weights = data.balanced_weights(labels, table.vocab)
    ds = data.train_dataset(images, labels, batch_size=32, seed=0, sample_weights=weights,
                            augment=lambda x, seed: x)
    x, y, w = next(iter(ds))
    assert x.shape == (32, 32, 32, 3) and x.dtype.name == "float32"
    assert set(y) == set(table.heads) and y["age"].dtype.name == "int32"
    assert w["emotion"].shape == (32,)
    first = [next(iter(ds))[1]["age"].numpy() for _ in range(2)]
    assert not np.array_equal(first[0], first[1])  # reshuffled each iteration
    ev = data.eval_dataset(images, batch_size=64)
    batches = list(ev)
    assert sum(b.shape[0] for b in batches) == len(images)
    assert np.array_equal(np.concatenate([b.numpy() for b in batches]).astype(np.uint8), images)


def test_balanced_weights_equalise_class_mass():
    y = {"h": np.array([0] * 90 + [1] * 10, dtype=np.int32)}
    w = data.balanced_weights(y, {"h": ("a", "b")})["h"]
    assert w[y["h"] == 0].sum() == pytest.approx(w[y["h"] == 1].sum())
