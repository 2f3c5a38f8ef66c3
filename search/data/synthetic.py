"""The embedded default dataset: synthetic person-attribute images, generated on first use.

It lets the whole program (loading, training, search) run without the real data: the same 8 heads,
label vocabularies and annotation-CSV format, PNG images of a person-ish figure centred on a black
background padded left and right like the real crops. Deterministic by seed; numpy + PIL only, so
it imports fast.

Every head has its own visual cue, of varying difficulty (easy -> hard):
  weight        torso width: underweight 6, normal 12, slightly-overweight 20, over-weight 26 px
  gender        torso (and sleeve) colour: male blue/green hues, female red/pink/purple hues
  carryingbag   None: no bag; Daily/Office/Work: dark rectangle at the hip with a shoulder
                strap; Grocery/Home/Plastic: light rectangle at hand height; random side
  footwear      Normal: dark shoes; Fancy: bright saturated shoes; CantSee: bottom of the figure
                (lower legs and feet) covered by a dark band
  bodypose      Front: both arms, skin face; Side: one arm; Back: both arms, head all hair (dark)
  age           hair-band grey level in 5 steps, dark (15-25) to white (55+)
  imagequality  Good: sharp, little noise; Average: blurred, more noise, a bit darker;
                Bad: more blur, heavy noise, dark and low contrast
  emotion       a few pixels on the face: Neutral thin mouth; Happy wide white mouth; Angry/Serious
                dark brows; Sad low mouth and blue tears. Invisible on Back-pose images (the face
                is hidden), so this head is the hardest.
(Sizes are for 48 px images and scale with `size`.) Labels are sampled independently per head with
imbalanced class frequencies resembling the real data, and with probability `_NOISE` a head's
cue is drawn for a random class instead (label noise). Nuisance variation: scene colour and
brightness, crop padding width, figure position (a few px), skin, trouser and bag shades, global
brightness, pixel noise.
"""

from __future__ import annotations

import colorsys
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

from search.data import verified
from search.errors import DataError

HEADS: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female"),
    "imagequality": ("Average", "Good", "Bad"),
    "age": ("15-25", "25-35", "35-45", "45-55", "55+"),
    "weight": ("normal-healthy", "slightly-overweight", "over-weight", "underweight"),
    "carryingbag": ("None", "Daily/Office/Work Bag", "Grocery/Home/Plastic Bag"),
    "footwear": ("Normal", "CantSee", "Fancy"),
    "emotion": ("Neutral", "Happy", "Angry/Serious", "Sad"),
    "bodypose": ("Front-Frontish", "Side", "Back"),
}
COLUMNS = ("filename", *HEADS, "image_path")
CSV_NAME = "annotations.csv"
META_NAME = ".synthetic.json"
VERSION = 3  # bump when the images or labels change, so cached datasets are regenerated

# Class frequencies, in HEADS order, roughly those of the real data.
_FREQ = {
    "gender": (0.56, 0.44),
    "imagequality": (0.55, 0.30, 0.15),
    "age": (0.18, 0.40, 0.26, 0.10, 0.06),
    "weight": (0.63, 0.22, 0.09, 0.06),
    "carryingbag": (0.55, 0.33, 0.12),
    "footwear": (0.47, 0.35, 0.18),
    "emotion": (0.68, 0.16, 0.11, 0.05),
    "bodypose": (0.60, 0.17, 0.23),
}
_NOISE = 0.05
_TORSO_W = (12, 20, 26, 6)  # per weight class
_HAIR = (35, 85, 135, 185, 235)  # per age class
_QUALITY = {  # class -> (box-blur passes, noise sigma, brightness gain, haze)
    0: (1, 9.0, 0.85, 0.0),
    1: (0, 3.0, 1.0, 0.0),
    2: (2, 22.0, 0.55, 25.0),
}


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255.0


def _blur(img: np.ndarray) -> np.ndarray:
    """3x3 box blur with edge replication."""
    p = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    return sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0


def _draw(rng: np.random.Generator, size: int, c: dict[str, int]) -> np.ndarray:
    """One image (uint8, size x size x 3) showing the cues of class indices `c`."""
    k = size / 48.0
    img = np.zeros((size, size, 3), np.float32)

    def box(y0, y1, x0, x1, colour):
        ya, yb = max(int(round(y0 * k)), 0), min(int(round(y1 * k)), size)
        xa, xb = max(int(round(x0 * k)), 0), min(int(round(x1 * k)), size)
        img[ya:max(yb, ya + 1), xa:max(xb, xa + 1)] = colour

    # Scene: a tinted strip between black left/right padding.
    pad = rng.uniform(6, 9)
    box(0, 48, pad, 48 - pad, rng.uniform(40, 190) * rng.uniform(0.8, 1.2, 3))
    cx, top = 24 + rng.uniform(-2, 2), rng.uniform(1, 3)
    skin = _hsv(rng.uniform(0.02, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.55, 0.95))
    hue = rng.uniform(0.45, 0.72) if c["gender"] == 0 else rng.uniform(0.83, 1.05)
    shirt = _hsv(hue, rng.uniform(0.45, 0.9), rng.uniform(0.5, 0.95))
    trousers = _hsv(rng.uniform(0, 1), rng.uniform(0.1, 0.5), rng.uniform(0.15, 0.45))
    tw = _TORSO_W[c["weight"]]
    left, right = cx - tw / 2, cx + tw / 2

    # Legs and feet.
    box(top + 27, top + 42, cx - 4.5, cx - 0.5, trousers)
    box(top + 27, top + 42, cx + 0.5, cx + 4.5, trousers)
    if c["footwear"] == 2:  # Fancy
        shoes = _hsv(rng.uniform(0, 1), rng.uniform(0.6, 1.0), rng.uniform(0.85, 1.0))
    else:
        shoes = _hsv(rng.uniform(0.0, 0.1), rng.uniform(0.2, 0.6), rng.uniform(0.05, 0.3))
    box(top + 42, top + 45, cx - 5.5, cx - 0.5, shoes)
    box(top + 42, top + 45, cx + 0.5, cx + 5.5, shoes)

    # Torso and arms (Side pose: one arm, on a random side).
    box(top + 11, top + 27, left, right, shirt)
    sides = (rng.integers(2),) if c["bodypose"] == 1 else (0, 1)
    for s in sides:
        ax = left - 3 if s == 0 else right
        box(top + 12, top + 24, ax, ax + 3, shirt * 0.8)
        box(top + 24, top + 26, ax, ax + 3, skin)

    # Head: hair band (age), face (skin, or hair seen from the back).
    hair = np.float32(_HAIR[c["age"]]) * rng.uniform(0.93, 1.07, 3)
    box(top, top + 3, cx - 5, cx + 5, hair)
    back = c["bodypose"] == 2
    box(top + 3, top + 11, cx - 5, cx + 5, hair * 0.45 + 10 if back else skin)
    if not back:
        box(top + 5, top + 6, cx - 3, cx - 2, (20, 20, 20))  # eyes
        box(top + 5, top + 6, cx + 2, cx + 3, (20, 20, 20))
        e = c["emotion"]
        if e == 1:  # Happy: wide white mouth
            box(top + 7, top + 10, cx - 4, cx + 4, (250, 250, 245))
        elif e == 3:  # Sad: low mouth and a blue tear
            box(top + 10, top + 11, cx - 2, cx + 2, (60, 20, 20))
            box(top + 6, top + 9, cx - 4, cx - 2, (60, 120, 255))
            box(top + 6, top + 9, cx + 2, cx + 4, (60, 120, 255))
        else:  # Neutral / Angry: thin mouth; Angry adds dark brows
            box(top + 8, top + 9, cx - 2, cx + 2, (90, 30, 30))
            if e == 2:
                box(top + 3, top + 5, cx - 5, cx + 5, (10, 10, 10))

    # Bag, over the torso's edge and arm on a random side (kept clear of the black padding).
    bag = c["carryingbag"]
    if bag:
        s = rng.integers(2)
        if bag == 1:  # Daily/Office/Work: dark, shoulder strap, hip height
            colour = _hsv(rng.uniform(0.0, 0.12), rng.uniform(0.3, 0.8), rng.uniform(0.05, 0.3))
            y0, bw, bh = top + 16, 6, 8
        else:  # Grocery/Home/Plastic: light, hand height
            colour = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.3), rng.uniform(0.85, 1.0))
            y0, bw, bh = top + 24, 7, 8
        x0 = right - 3 if s else left + 3 - bw
        box(y0, y0 + bh, x0, x0 + bw, colour)
        if bag == 1:
            box(top + 11, y0, x0 + bw / 2 - 0.5, x0 + bw / 2 + 0.5, colour)

    if c["footwear"] == 1:  # CantSee: the bottom of the crop is cut off / occluded
        box(top + 36 + rng.uniform(-1, 1), 48, pad, 48 - pad, rng.uniform(0, 30, 3))

    # Image quality and global nuisance; the padding stays pure black like the real crops.
    passes, sigma, gain, haze = _QUALITY[c["imagequality"]]
    for _ in range(passes):
        img = _blur(img)
    img = img * gain * rng.uniform(0.9, 1.1) + haze
    img += rng.normal(0.0, sigma, img.shape).astype(np.float32)
    xa, xb = int(round(pad * k)), int(round((48 - pad) * k))
    img[:, :xa] = 0
    img[:, xb:] = 0
    return np.clip(img, 0, 255).astype(np.uint8)


def _sample_labels(rng: np.random.Generator, n: int):
    """(labels, drawn): class indices per head; `drawn` differs from `labels` where noise hit.

    One random row per class is set to that class, so even tiny datasets show every class.
    """
    labels, drawn = {}, {}
    for head, vocab in HEADS.items():
        y = rng.choice(len(vocab), size=n, p=_FREQ[head])
        if n >= len(vocab):
            y[rng.choice(n, size=len(vocab), replace=False)] = np.arange(len(vocab))
        flip = rng.random(n) < _NOISE
        labels[head] = y
        drawn[head] = np.where(flip, rng.integers(len(vocab), size=n), y)
    return labels, drawn


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
    labels, drawn = _sample_labels(rng, n)
    (tmp / "images").mkdir()
    with open(tmp / CSV_NAME, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i in range(n):
            name = f"{i:06d}.png"
            img = _draw(rng, size, {h: int(drawn[h][i]) for h in HEADS})
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
