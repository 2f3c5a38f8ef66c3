"""Frozen backbone outputs, computed once and cached: what a pretrained trial trains on.

A trial whose pretrained backbone is frozen (or frozen below a cut) would compute the same
backbone outputs in every epoch of every trial. Here they are computed once per (data,
family, alpha, weights file, image size, crop, cut, pooling, views) for every image of the
table, in V views — plain, flipped, then alternately shifted and cut out (random flips) — and
trials draw one view per image per epoch: a cut-out view with the trial's `cutout`
probability, else one of the others.

On disk: runs/cache/features-<key>.npy (float16, [N, V, ...]) with a JSON sidecar, through
`search.data.verified`: checked on every read (size against its header, key, SHA-256) and rebuilt
with one line saying why when anything is wrong (another data set, size or weights; a
half-written or truncated file), written atomically, built by one process while concurrent
workers wait.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from search.data import verified

VERSION = 2  # 2: augmented views drawn in numpy (search.data.arrays), on every backend
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

    def build() -> np.ndarray:
        return compute(images, extractor_factory(), chosen, cache_key)

    if cache_dir is None:
        start = time.perf_counter()
        return Cache(build(), chosen, None, time.perf_counter() - start)
    path = Path(cache_dir) / f"features-{name(cache_key)}.npy"
    array, seconds = verified.load_or_build(path, cache_key, build)
    return Cache(array, chosen, path, seconds)


def name(cache_key: dict) -> str:
    """The file name's part that stands for the key."""
    return hashlib.sha256(json.dumps(cache_key, sort_keys=True).encode()).hexdigest()[:20]


def compute(images, extractor, chosen: list[View], cache_key: dict) -> np.ndarray:
    """extractor(view(image)) for every image and view, float16 [N, V, ...]; any backend
    (Keras compiles `predict_on_batch` once; the views are augmented in numpy)."""
    from search.data import arrays

    n = len(images)
    seed = int(hashlib.sha256(json.dumps(cache_key, sort_keys=True).encode())
               .hexdigest()[:8], 16)
    out = None
    for v, view in enumerate(chosen):
        for start in range(0, n, BATCH):
            batch = np.asarray(images[start:start + BATCH])
            if view.flip == "all":
                batch = batch[:, :, ::-1]
            elif view.flip == "random" or view.shift or view.cutout:
                batch = arrays.augment(batch, np.random.default_rng([seed, v, start]),
                                       flip=view.flip == "random", shift=view.shift,
                                       cutout=1.0 if view.cutout else 0.0,
                                       cutout_area=CUTOUT_AREA)
            values = np.asarray(extractor.predict_on_batch(batch.astype(np.float32)))
            if out is None:
                out = np.empty((n, len(chosen), *values.shape[1:]), np.float16)
            out[start:start + len(values), v] = values.astype(np.float16)
    return out


def nbytes(count: int, rows: int, shape) -> int:
    """Bytes of a float16 cache of `rows` images, `count` views, outputs of `shape`."""
    return 2 * rows * count * int(np.prod(shape))
