"""`search eda`: a look at an annotation CSV and its images before searching.

`analyse` returns numbers (a `Report`) that tests can check; `summary_text` and the page
(`search.views.eda_page.render_html`) only show them. The CSV goes through the same check as
in `search run` (`search.data.validate.check`: columns, empty cells, image paths outside the CSV's
folder, single-class heads are errors, exit 2), except that what `run` stops on about the
images themselves (missing, folders, unreadable) is listed, with the line `run` would stop on,
not fatal: listing them is what eda is for.
PIL + numpy only — no TensorFlow — so the 5,600 real images take seconds.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from search.data import validate

BLACK = 16  # a column whose brightest pixel (0-255 luminance) is at most this is padding
TOP_PAIRS = 6  # head pairs shown as cross tables, the most associated, besides RULES' pairs
SHOW_LINES = 10  # CSV lines quoted per finding in the summary


@dataclass(frozen=True)
class Rule:
    """Rows with `head == value` whose `other` label is not in `expected` look mislabelled."""

    head: str
    value: str
    other: str
    expected: tuple[str, ...]
    why: str


RULES = (
    Rule("bodypose", "Back", "emotion", ("Neutral",), "the face is not visible from the back"),
)


@dataclass(frozen=True)
class Report:
    """What `analyse` read; the methods derive the numbers shown."""

    csv_path: Path
    frame: pd.DataFrame  # the CSV's label columns, index = CSV line
    heads: tuple[str, ...]
    images: pd.DataFrame  # image_stats(), same index
    flags: list[tuple[Rule, list[int]]]  # each applicable rule and the CSV lines breaking it
    seconds: float
    refused: str | None = None  # the line `search run` stops on for these images, if any

    def counts(self) -> dict[str, pd.Series]:
        return class_counts(self.frame, self.heads)

    def majority(self) -> dict[str, tuple[str, float]]:
        return majority(self.frame, self.heads)

    def association(self) -> pd.DataFrame:
        return association(self.frame, self.heads)

    def pairs(self) -> list[tuple[str, str]]:
        return pick_pairs(self.association(), RULES)

    def duplicates(self) -> list[list[int]]:
        return duplicate_groups(self.images)

    def readable(self) -> pd.DataFrame:
        return self.images[self.images["problem"].isna()]

    def unreadable(self) -> pd.Series:
        """CSV line → problem (one of validate.PROBLEMS)."""
        return self.images["problem"].dropna()


def analyse(csv_path, heads) -> Report:
    """Read the CSV and every image once. Fatal (DataError) as in `search run`, through the
    same `validate.check`; unreadable images are reported instead (see the module docstring)."""
    start = time.perf_counter()
    csv_path, heads = Path(csv_path), tuple(heads)
    frame, _ = validate.check(csv_path, heads, on_bad_images="report")
    images = image_stats(frame["path"].tolist(), index=frame.index)
    return Report(csv_path=csv_path, frame=frame[list(heads)], heads=heads, images=images,
                  flags=flag(frame, heads, RULES), seconds=time.perf_counter() - start,
                  refused=validate.bad_images_message(frame, images["problem"], csv_path))


def class_counts(frame: pd.DataFrame, heads) -> dict[str, pd.Series]:
    """Per head: rows per label, most frequent first."""
    return {h: frame[h].value_counts() for h in heads}


def majority(frame: pd.DataFrame, heads) -> dict[str, tuple[str, float]]:
    """Per head: the most frequent label and its share, the accuracy of always guessing it."""
    return {h: (str(c.index[0]), float(c.iloc[0] / c.sum()))
            for h, c in class_counts(frame, heads).items()}


def cross_table(frame: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    return pd.crosstab(frame[a], frame[b])


def association(frame: pd.DataFrame, heads) -> pd.DataFrame:
    """Cramér's V between every two heads: 0 independent, 1 one label decides the other."""
    out = pd.DataFrame(np.eye(len(heads)), index=list(heads), columns=list(heads))
    for i, a in enumerate(heads):
        for b in heads[i + 1:]:
            observed = cross_table(frame, a, b).to_numpy(dtype=float)
            n, k = observed.sum(), min(observed.shape) - 1
            expected = observed.sum(1, keepdims=True) * observed.sum(0, keepdims=True) / n
            chi2 = ((observed - expected) ** 2 / expected).sum()
            out.loc[a, b] = out.loc[b, a] = np.sqrt(chi2 / (n * k)) if k else 0.0
    return out


def pick_pairs(assoc: pd.DataFrame, rules=RULES, top: int = TOP_PAIRS) -> list[tuple[str, str]]:
    """The pairs named by rules, then the `top` most associated ones."""
    heads = list(assoc.index)
    ruled = [(r.head, r.other) for r in rules if r.head in heads and r.other in heads]
    ranked = sorted(((a, b) for i, a in enumerate(heads) for b in heads[i + 1:]),
                    key=lambda p: -assoc.loc[p])
    taken = {frozenset(p) for p in ruled}
    return list(dict.fromkeys(ruled)) + [p for p in ranked if frozenset(p) not in taken][:top]


def flag(frame: pd.DataFrame, heads, rules=RULES) -> list[tuple[Rule, list[int]]]:
    """Each rule whose heads are present, with the CSV lines that break it."""
    return [(r, frame.index[(frame[r.head] == r.value) & ~frame[r.other].isin(r.expected)].tolist())
            for r in rules if r.head in heads and r.other in heads]


def image_stats(paths: list[str], index=None) -> pd.DataFrame:
    """Per image: width, height, mode, format, pad_left, pad_right (black columns at each
    side), sha1 of the bytes, and problem (None, or a validate kind) — read in threads."""
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) * 2) as pool:
        rows = list(pool.map(inspect_image, paths))
    columns = ["width", "height", "mode", "format", "pad_left", "pad_right", "sha1", "problem"]
    return pd.DataFrame(rows, index=index, columns=columns)


def inspect_image(path: str) -> dict:
    """The stats of one image, or its problem as `search.data.validate.image_problem` words it."""
    problem = validate.file_problem(path)
    if problem:
        return {"problem": problem}
    try:
        data = Path(path).read_bytes()
    except OSError:  # gone since the check
        return {"problem": validate.MISSING}
    try:
        with Image.open(io.BytesIO(data)) as im:
            mode, fmt = im.mode, im.format
            if fmt == "JPEG":
                im.draft("L", im.size)  # decode luminance only
            gray = np.asarray(im.convert("L"))
    except Exception as exc:  # any decoder failure means unusable
        return {"problem": validate.decode_problem(exc)}
    height, width = gray.shape
    bright = np.flatnonzero(gray.max(axis=0) > BLACK)
    left, right = (bright[0], width - 1 - bright[-1]) if bright.size else (width, width)
    return {"width": width, "height": height, "mode": mode, "format": fmt, "pad_left": int(left),
            "pad_right": int(right), "sha1": hashlib.sha1(data).hexdigest(), "problem": None}


def size_counts(images: pd.DataFrame) -> pd.Series:
    """'W×H' → images of that size, most common first (readable images only)."""
    width, height = (images[c].astype(int).astype(str) for c in ("width", "height"))
    return (width + "×" + height).value_counts()


def duplicate_groups(images: pd.DataFrame) -> list[list[int]]:
    """CSV lines whose image files have identical bytes, one list per image."""
    groups = images[images["problem"].isna()].groupby("sha1").groups.values()
    return sorted(sorted(g) for g in groups if len(g) > 1)


# ---------------------------------------------------------------------------------------------
# Showing a report.


def summary_text(report: Report) -> str:
    counts, majorities = report.counts(), report.majority()
    lines = [f"{report.csv_path}: {len(report.frame)} rows, {len(report.heads)} heads "
             f"(read in {report.seconds:.1f} s)",
             f"  {'head':<14}{'classes':>8}  majority baseline"]
    for h in report.heads:
        label, share = majorities[h]
        lines.append(f"  {h:<14}{len(counts[h]):>8}  {share:.3f} ({label})")
    assoc = report.association()
    strongest = ", ".join(f"{a}×{b} {assoc.loc[a, b]:.2f}"
                          for a, b in pick_pairs(assoc, rules=(), top=4))
    lines.append(f"associated heads (Cramér's V): {strongest or 'n/a'}")
    for rule, bad in report.flags:
        lines.append(f"suspicious: {len(bad)} row(s) with {rule.head}={rule.value} and "
                     f"{rule.other} not {'/'.join(rule.expected)} ({rule.why}){lines_text(bad)}")
    ok = report.readable()
    lines.append(f"images: {len(ok)} readable; sizes " + ", ".join(
        f"{s} ({n})" for s, n in size_counts(ok).head(3).items()))
    if len(ok):
        lines.append(f"black side padding, median px: left {ok['pad_left'].median():.0f}, "
                     f"right {ok['pad_right'].median():.0f}")
    groups = report.duplicates()
    lines.append(f"exact duplicate images: {len(groups)} group(s)"
                 + "".join(f"; lines {'='.join(map(str, g))}" for g in groups[:3]))
    bad = report.unreadable()
    lines.append(f"unreadable images: {len(bad)}" + "".join(
        f"; {n} {kind}{lines_text(bad.index[bad == kind].tolist())}"
        for kind, n in bad.value_counts().items())
        + ("; `search run` stops on them (exit 2) unless --on-bad-images skip drops those rows"
           if report.refused else ""))
    return "\n".join(lines)


def lines_text(lines: list[int]) -> str:
    """': lines 2, 5, 9 (and N more)' for a message; '' for none."""
    if not lines:
        return ""
    more = f" (and {len(lines) - SHOW_LINES} more)" if len(lines) > SHOW_LINES else ""
    return f": lines {', '.join(map(str, lines[:SHOW_LINES]))}{more}"
