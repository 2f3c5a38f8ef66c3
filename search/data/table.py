"""Annotation CSV + images → a validated `Table` → cached image arrays → tf.data pipelines
(the TensorFlow backend's; the others' are in search.data.arrays).

Owns: reading the CSV (checked first by `search.data.validate`; `None` stays a label), the label
vocabulary per head (sorted, so it is stable), the seeded train/validation split shared by
every trial of a study, the decoded image cache (decode and resize once, reuse across trials
and processes) and the tf.data pipelines.
It does not build models. TensorFlow is imported only by the functions that need it.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from search.data import DEFAULT_HEADS, validate, verified
from search.errors import DataError

IMAGE_CACHE_VERSION = 1  # bump when preparing images changes, so cached ones are rebuilt


@dataclass(frozen=True)
class Table:
    """The validated annotation table: one row per image, label columns as strings."""

    csv_path: Path
    frame: pd.DataFrame  # columns: image_path (as written), path (absolute), one per head
    heads: tuple[str, ...]
    vocab: dict[str, tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.frame)

    def labels(self, rows=None) -> dict[str, np.ndarray]:
        """Integer class ids per head (index into `vocab[head]`)."""
        frame = self.frame if rows is None else self.frame.iloc[rows]
        out = {}
        for head in self.heads:
            index = {label: i for i, label in enumerate(self.vocab[head])}
            out[head] = frame[head].map(index).to_numpy(dtype=np.int32)
        return out

    @property
    def paths(self) -> list[str]:
        return self.frame["path"].tolist()

    def fingerprint(self) -> str:
        """Content hash of the table (paths + labels), used to key the image cache."""
        blob = pd.util.hash_pandas_object(self.frame[["path", *self.heads]], index=False)
        return hashlib.sha256(blob.to_numpy().tobytes()).hexdigest()[:16]


def read_table(csv_path: str | os.PathLike, heads=DEFAULT_HEADS, vocab=None, *,
               on_bad_images: str = "error", allow_outside: bool = False,
               duplicates: str = "warn") -> Table:
    """Read an annotation CSV, checked by `search.data.validate.check` before anything uses it.

    Cells are stripped of surrounding spaces and `None` stays a label. `vocab` ({head: labels},
    e.g. a model's labels.json) makes an unknown label an error; `on_bad_images="skip"` drops
    rows whose image is missing or unreadable instead of stopping; image paths must stay in the
    CSV's folder unless `allow_outside`; repeated images warn, or fail with duplicates="error".
    """
    frame, vocab = validate.check(csv_path, heads, vocab, on_bad_images=on_bad_images,
                                  allow_outside=allow_outside, duplicates=duplicates)
    return Table(csv_path=Path(csv_path), frame=frame.reset_index(drop=True),
                 heads=tuple(heads), vocab=vocab)


def split(n: int, *, val_fraction: float = 0.2, seed: int = 0, strata=None):
    """Seeded train/validation row indices; stratified on `strata` (labels) when given.

    The same (n, fraction, seed, strata) always gives the same split, so every trial of a
    study — in any process — is scored on the same images.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"validation fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    if strata is None:
        order = rng.permutation(n)
        n_val = max(1, int(round(n * val_fraction)))
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    strata = np.asarray(strata)
    val = []
    for value in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == value))
        val.extend(members[: int(round(len(members) * val_fraction))])
    val = np.sort(np.asarray(val, dtype=np.int64))
    train = np.setdiff1d(np.arange(n), val)
    return train, val


# ---------------------------------------------------------------------------------------------
# Images: decode once, cache, reuse.


def decode(path: str) -> np.ndarray:
    """One file → uint8 RGB array. Grayscale, CMYK, palette and PNG-named-.jpg all work."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_images(table: Table, size: tuple[int, int], crop: str = "none",
                cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """All images of the table prepared at `size` as uint8 [N, H, W, 3], cached on disk.

    The cache, runs/cache/images-<table>-<H>x<W>-<crop>.npy, goes through `search.data.verified`:
    keyed by the table's content hash, the size and the crop mode; checked on every read
    (size against its header, key, SHA-256) and rebuilt with one line saying why when it is
    truncated or altered; written atomically and built by one process while concurrent
    workers wait.
    """
    def build() -> np.ndarray:
        return _prepare_all(table.paths, size, crop)

    if not cache_dir:
        return build()
    fingerprint = table.fingerprint()
    key = {"kind": "images", "version": IMAGE_CACHE_VERSION, "table": fingerprint,
           "size": [int(size[0]), int(size[1])], "crop": crop}
    target = Path(cache_dir) / f"images-{fingerprint}-{size[0]}x{size[1]}-{crop}.npy"
    return verified.load_or_build(target, key, build)[0]


def _prepare_all(paths: list[str], size: tuple[int, int], crop: str) -> np.ndarray:
    from keras import ops

    from search.model.preprocess import prepare

    out = np.empty((len(paths), size[0], size[1], 3), dtype=np.uint8)
    chunk = 256
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        for start in range(0, len(paths), chunk):
            raw = list(pool.map(decode, paths[start:start + chunk]))
            by_shape: dict[tuple, list[int]] = {}
            for i, arr in enumerate(raw):
                by_shape.setdefault(arr.shape, []).append(i)
            for members in by_shape.values():
                batch = np.stack([raw[i] for i in members])
                prepared = ops.convert_to_numpy(prepare(batch, size, crop))
                out[[start + i for i in members]] = np.clip(np.round(prepared), 0, 255)
    return out


# ---------------------------------------------------------------------------------------------
# tf.data pipelines.


def train_dataset(images, labels: dict, *, batch_size: int, seed: int, augment=None,
                  sample_weights: dict | None = None):
    """Shuffled, batched, augmented-on-batches, prefetched training pipeline.

    The uint8 images are held once as a tensor; each step gathers a shuffled batch of rows
    (one copy per batch, instead of passing every image through a shuffle buffer),
    augments it while still uint8 (a quarter of the bytes), then casts to float32 — all in
    TensorFlow, in parallel with training. No per-item Python in the hot path.

    `augment(x, seed)` gets each batch's own stateless seed (a [2] int64 tensor) from a
    seeded random stream that draws anew every epoch: fresh augmentation each epoch, and
    the same draws for the same batch whatever order the parallel map runs in, so a trial
    replays exactly from its seed.
    """
    import tensorflow as tf

    n = len(images)
    pool = tf.constant(np.asarray(images))
    columns = (labels,) if sample_weights is None else (labels, sample_weights)
    columns = tuple({k: tf.constant(v) for k, v in part.items()} for part in columns)
    order = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
    order = order.batch(batch_size, drop_remainder=n >= batch_size)
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def take(rows, draw):
        x = tf.gather(pool, rows)
        if augment is not None:
            x = augment(x, draw)
        rest = tuple({k: tf.gather(v, rows) for k, v in part.items()} for part in columns)
        return (tf.cast(x, tf.float32), *rest)

    # `take` has no tensor-dependent Python control flow, so AutoGraph's source rewrite (seconds
    # of a short trial's start-up, per trial) is skipped.
    take = tf.autograph.experimental.do_not_convert(take)
    return tf.data.Dataset.zip(order, draws).map(
        take, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def eval_dataset(images, *, batch_size: int):
    """Validation/prediction pipeline: images only, in order, float32."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    return ds.map(lambda x: tf.cast(x, tf.float32),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def balanced_weights(labels: dict[str, np.ndarray], vocab: dict) -> dict[str, np.ndarray]:
    """Per-sample loss weights n / (k * count[class]) per head: the 'balanced' weighting."""
    out = {}
    for head, y in labels.items():
        k = len(vocab[head])
        counts = np.bincount(y, minlength=k).astype(np.float64)
        weight = len(y) / (k * np.maximum(counts, 1))
        out[head] = weight[y].astype(np.float32)
    return out
