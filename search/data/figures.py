"""How the synthetic dataset's figures are drawn and labelled (written by search.data.synthetic).

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

import numpy as np

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


def draw(rng: np.random.Generator, size: int, c: dict[str, int]) -> np.ndarray:
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


def sample_labels(rng: np.random.Generator, n: int):
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
