"""The embedded default dataset: synthetic person-attribute images, generated on first use.

It lets the whole program (loading, training, search) run without the real data: the same 8 heads,
label vocabularies and annotation-CSV format, PNG images of a person-ish figure centred on a black
background padded left and right like the real crops. Deterministic by seed; numpy + PIL only, so
it imports fast. The figures and their cues: search.data.figures.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from search.data import figures, verified
from search.data.figures import HEADS
from search.errors import DataError

COLUMNS = ("filename", *HEADS, "image_path")
CSV_NAME = "annotations.csv"
META_NAME = ".synthetic.json"
VERSION = 3  # bump when the images or labels change, so cached datasets are regenerated

def _meta(n: int, size: int, seed: int) -> dict:
    return {"n": n, "size": size, "seed": seed, "version": VERSION}


def _manifest(out_dir: Path) -> dict:
    """What the generation wrote: the CSV's SHA-256, the image count and a digest of every
    image's name and size (a stat per file: cheap, and catches missing, extra and truncated
    images)."""
    listing = hashlib.sha256()
    count = 0
    with os.scandir(out_dir / "images") as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            listing.update(f"{entry.name} {entry.stat().st_size}\n".encode())
            count += 1
    return {"csv_sha256": hashlib.sha256((out_dir / CSV_NAME).read_bytes()).hexdigest(),
            "images": count, "listing_sha256": listing.hexdigest()}


def _problem(out_dir: Path, meta: dict) -> str | None:
    """None if out_dir holds the whole dataset `meta` describes; else what is wrong."""
    try:
        on_disk = json.loads((out_dir / META_NAME).read_text())
    except (OSError, ValueError):
        return f"no readable {META_NAME} (written last by a finished generation)"
    if {k: on_disk.get(k) for k in meta} != meta:
        return "other settings"
    if "listing_sha256" not in on_disk:
        return "written by an older version, without the list of its files"
    try:
        found = _manifest(out_dir)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if found["images"] != on_disk.get("images"):
        return f"{found['images']:,} of {on_disk.get('images', meta['n']):,} images"
    if found != {k: on_disk.get(k) for k in found}:
        return "its files differ from the ones generated (truncated or changed)"
    return None


def _is_complete(out_dir: Path, meta: dict) -> bool:
    return _problem(out_dir, meta) is None


def _is_synthetic(out_dir: Path) -> bool:
    """out_dir was written by `generate` (its marker, or its CSV header, is there)."""
    if (out_dir / META_NAME).exists():
        return True
    try:
        with open(out_dir / CSV_NAME, newline="") as f:
            return next(csv.reader(f), None) == list(COLUMNS)
    except (OSError, UnicodeDecodeError):
        return False


def _write(tmp: Path, n: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels, drawn = figures.sample_labels(rng, n)
    (tmp / "images").mkdir()
    with open(tmp / CSV_NAME, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i in range(n):
            name = f"{i:06d}.png"
            img = figures.draw(rng, size, {h: int(drawn[h][i]) for h in HEADS})
            Image.fromarray(img, "RGB").save(tmp / "images" / name, compress_level=1)
            row = (HEADS[h][labels[h][i]] for h in HEADS)
            writer.writerow([f"synthetic/{name}", *row, f"images/{name}"])
    # Last: the marker a reader trusts, with what it should find.
    (tmp / META_NAME).write_text(json.dumps({**_meta(n, size, seed), **_manifest(tmp)}))


def _temp_prefix(out_dir: Path, pid: int | None = None) -> str:
    return f".{out_dir.name}.tmp-{socket.gethostname()}-{pid or os.getpid()}-"


def _remove_stale_temps(out_dir: Path) -> None:
    """Temp folders of generations on this host whose process is gone (SIGKILL, power cut)."""
    prefix = f".{out_dir.name}.tmp-{socket.gethostname()}-"
    for folder in out_dir.parent.glob(f"{glob.escape(prefix)}*"):
        pid = folder.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not verified.alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def generate(out_dir, *, n: int = 3000, size: int = 48, seed: int = 0) -> Path:
    """Write `out_dir/annotations.csv` and `out_dir/images/*.png`; return the CSV path.

    Idempotent: an existing dataset with the same (n, size, seed, version) is reused as is,
    once checked against the marker written last (the CSV's SHA-256, the image count and
    every image's size); a damaged or half-copied one is regenerated, with one line saying
    why. The data is written to a temporary sibling directory and renamed into place at the
    end, so an interrupted run leaves nothing half-written (temp folders of killed runs are
    removed by the next one); an older synthetic dataset in `out_dir` is replaced, anything
    else there is refused.
    """
    n, size, seed = int(n), int(size), int(seed)
    if n < 1 or size < 16:
        raise DataError(f"synthetic dataset needs n >= 1 and size >= 16, got n={n}, size={size}")
    out_dir = Path(out_dir)
    meta = _meta(n, size, seed)
    problem = _problem(out_dir, meta) if out_dir.exists() else "absent"
    if problem is None:
        return out_dir / CSV_NAME
    if out_dir.exists() and any(out_dir.iterdir()) and not _is_synthetic(out_dir):
        raise DataError(f"{out_dir} exists and is not a synthetic dataset; "
                        "remove it or choose another directory")
    if problem not in ("absent", "other settings") and any(out_dir.iterdir()):
        print(f"regenerating {out_dir}: {problem}", file=sys.stderr, flush=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(out_dir), dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp's 0700 would survive the rename
    try:
        _write(tmp, n, size, seed)
        if _is_complete(out_dir, meta):  # a concurrent run finished first
            return out_dir / CSV_NAME
        if out_dir.exists():
            shutil.rmtree(out_dir)  # an older or damaged synthetic dataset (checked above)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not _is_complete(out_dir, meta):  # unless a concurrent run just finished the same
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / CSV_NAME


DEFAULT_N, DEFAULT_SIZE = 2000, 32  # the quick start's: 10 trials in ~3 minutes on 2 CPU cores


def ensure_default(runs_dir) -> Path:
    """The default dataset under `runs_dir/data/synthetic`, generated on first use."""
    return generate(Path(runs_dir) / "data" / "synthetic", n=DEFAULT_N, size=DEFAULT_SIZE)
