"""Frozen backbone outputs, computed once and cached: what a pretrained trial trains on.

A trial whose pretrained backbone is frozen (or frozen below a cut) would compute the same
backbone outputs in every epoch of every trial. Here they are computed once per (data,
family, alpha, weights file, image size, crop, cut, pooling, views) for every image of the
table, in V views — plain, flipped, then alternately shifted and cut out (random flips) — and
trials draw one view per image per epoch: a cut-out view with the trial's `cutout`
probability, else one of the others.

On disk: runs/cache/features-<key>.npy (float16, [N, V, ...]) and a JSON sidecar holding the
key, shape, dtype and the SHA-256 of the array. A file whose sidecar does not match (another
data set, size or weights; a half-written or truncated file) is rebuilt, never trusted. Writes
are atomic (temp file, then rename) and a lock file makes concurrent workers wait for one
build instead of each doing it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VERSION = 1
SHIFT = 0.08  # of the side, for the shifted and cut-out views
CUTOUT_AREA = (0.02, 0.4)
MAX_BYTES = 3 * 2**30  # larger caches (a flattened big map) train on images instead
BATCH = 128
_DIGESTS: dict[tuple, str] = {}


@dataclass(frozen=True)
class View:
    """How one cached view is made from the prepared image."""

    flip: str  # none | all | random
    shift: float = 0.0
    cutout: bool = False


def views(count: int) -> list[View]:
    """plain, flipped, then shifted and cut-out views in turn (random flips)."""
    out = [View("none"), View("all")][:count]
    for k in range(2, count):
        out.append(View("random", SHIFT, cutout=k % 2 == 1))
    return out


@dataclass
class Cache:
    """Cached inputs of one kind for every row of the table, and how they were had."""

    array: np.ndarray  # [N, V, ...] float16
    views: list[View]
    path: Path | None
    built_seconds: float  # 0 when read from disk

    def pools(self, flip: bool, shift: float) -> tuple[list[int], list[int]]:
        """(views a sample may draw without cutout, cut-out views) for a trial's
        augmentation flags: no flipped views without flip, no shifted ones without shift."""
        plain = [i for i, v in enumerate(self.views) if not v.cutout
                 and (flip or v.flip == "none") and (shift > 0 or v.shift == 0)]
        cut = [i for i, v in enumerate(self.views) if v.cutout]
        return plain or [0], cut


def weights_digest(path: str | None) -> str:
    """A content hash of a weight file (what the cache depends on), memoised per file state."""
    if not path or path == "imagenet":
        return str(path)
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def key(*, table: str, family: str, alpha: float, weights: str, image_size, crop: str,
        cut: str, count: int) -> dict:
    """Everything the cached arrays depend on."""
    return {"version": VERSION, "table": table, "family": family, "alpha": alpha,
            "weights": weights, "image_size": list(image_size), "crop": crop, "cut": cut,
            "views": [vars(v) for v in views(count)], "shift": SHIFT,
            "cutout_area": list(CUTOUT_AREA)}


def load(cache_key: dict, cache_dir: Path | None, images, extractor_factory) -> Cache:
    """The cached array for cache_key, from disk when a valid file is there, else computed
    (extractor_factory() → a Keras model image → output) from `images` [N, H, W, 3] uint8."""
    chosen = views(len(cache_key["views"]))
    if cache_dir is None:
        start = time.perf_counter()
        array = compute(images, extractor_factory(), chosen, cache_key)
        return Cache(array, chosen, None, time.perf_counter() - start)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(json.dumps(cache_key, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir / f"features-{name}.npy"
    with _locked(path.with_suffix(".lock")):
        array = read(path, cache_key)
        if array is not None:
            return Cache(array, chosen, path, 0.0)
        start = time.perf_counter()
        array = compute(images, extractor_factory(), chosen, cache_key)
        write(path, array, cache_key)
        return Cache(array, chosen, path, time.perf_counter() - start)


def read(path: Path, cache_key: dict) -> np.ndarray | None:
    """The array at path if its sidecar says it is this key's, whole and unchanged."""
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None
    if meta.get("key") != cache_key or list(array.shape) != meta.get("shape") \
            or str(array.dtype) != meta.get("dtype"):
        return None
    if _digest(array) != meta.get("sha256"):
        return None
    return np.asarray(array)


def write(path: Path, array: np.ndarray, cache_key: dict) -> None:
    """Array and sidecar, each written to a temp file and renamed into place; the sidecar
    last, so a reader never pairs a new sidecar with an old or partial array."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)
    meta = {"key": cache_key, "shape": list(array.shape), "dtype": str(array.dtype),
            "sha256": _digest(array)}
    tmp_meta = path.with_name(f"{path.stem}.{os.getpid()}.tmp.json")
    tmp_meta.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_meta, path.with_suffix(".json"))


def compute(images, extractor, chosen: list[View], cache_key: dict) -> np.ndarray:
    """extractor(view(image)) for every image and view, float16 [N, V, ...]."""
    import tensorflow as tf

    from search.augment import augment_batch

    call = tf.function(lambda x: extractor(x, training=False), reduce_retracing=True)
    n = len(images)
    seed = int(hashlib.sha256(json.dumps(cache_key, sort_keys=True).encode())
               .hexdigest()[:8], 16)
    out = None
    for v, view in enumerate(chosen):
        for start in range(0, n, BATCH):
            batch = tf.constant(np.asarray(images[start:start + BATCH]))
            if view.flip == "all":
                batch = batch[:, :, ::-1]
            elif view.flip == "random" or view.shift or view.cutout:
                batch = augment_batch(batch, flip=view.flip == "random", shift=view.shift,
                                      cutout=1.0 if view.cutout else 0.0,
                                      cutout_area=CUTOUT_AREA, seed=[seed + v, start])
            values = call(tf.cast(batch, tf.float32)).numpy().astype(np.float16)
            if out is None:
                out = np.empty((n, len(chosen), *values.shape[1:]), np.float16)
            out[start:start + len(values), v] = values
    return out


def nbytes(count: int, rows: int, shape) -> int:
    """Bytes of a float16 cache of `rows` images, `count` views, outputs of `shape`."""
    return 2 * rows * count * int(np.prod(shape))


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on path: other processes wait here while one builds."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
