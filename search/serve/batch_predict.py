"""`search predict` over many images: files, folders or an annotation CSV in, one row per image
out (JSON lines, or CSV for a spreadsheet), streamed in batches with a progress bar.

Images are read and predicted a batch at a time, so memory stays flat however many there are,
and a file that cannot be read becomes a row with its reason instead of stopping the batch:
a night's batch job should not die at image 90,000 of 100,000. Prediction itself is
`registry.predict_probs`, the same call `mlflow.pyfunc` and `search evaluate` use.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from search.errors import UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FORMATS = ("jsonl", "csv")


@dataclass
class Summary:
    images: int = 0
    failed: int = 0


def image_paths(items: Iterable[str], table: str | None = None) -> list[str]:
    """Files as given, the image files of each folder (sorted, not recursive), then the
    `image_path` column of the CSV `table` (relative to the CSV, as for `--data`). A path that
    does not exist is a usage error: nothing is predicted."""
    out: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"folder {item} holds no image files "
                                 f"({', '.join(IMAGE_SUFFIXES)})")
            out += found
        elif path.is_file():
            out.append(item)
        else:
            raise UsageError(f"image file or folder not found: {item}")
    if table:
        out += _csv_paths(Path(table))
    if not out:
        raise UsageError("nothing to predict: give image files, a folder, or --csv FILE")
    return out


def _csv_paths(table: Path) -> list[str]:
    import pandas as pd

    if not table.is_file():
        raise UsageError(f"--csv {table}: no such file")
    try:
        frame = pd.read_csv(table, usecols=["image_path"], dtype=str, keep_default_na=False)
    except ValueError:
        raise UsageError(f"--csv {table} has no image_path column") from None
    return [str(table.parent / p) for p in frame["image_path"]]


def output_format(out: str | None, fmt: str | None) -> str:
    """--format, else from --out's suffix (.csv → csv), else JSON lines."""
    if fmt:
        return fmt
    return "csv" if out and out.lower().endswith(".csv") else "jsonl"


def predict(net, vocab: dict, paths: list[str], out, fmt: str = "jsonl", batch_size: int = 64,
            progress: bool = False) -> Summary:
    """Write one row per path to the text stream `out`; the counts of images and failures."""
    from tqdm.auto import tqdm

    writer = _Writer(out, fmt, vocab)
    summary = Summary()
    with tqdm(total=len(paths), unit="img", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for chunk in _chunks(paths, batch_size):
            arrays, errors = _read(chunk)
            good = [i for i, a in enumerate(arrays) if a is not None]
            probs = _probabilities(net, [arrays[i] for i in good], batch_size)
            at = {i: n for n, i in enumerate(good)}
            for i, path in enumerate(chunk):
                if i in at:
                    writer.row(path, {h: p[at[i]] for h, p in probs.items()})
                else:
                    writer.failure(path, errors[i])
                    summary.failed += 1
            summary.images += len(chunk)
            bar.update(len(chunk))
    return summary


def _probabilities(net, arrays: list[np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    from search.track.registry import predict_probs

    return predict_probs(net, arrays, batch_size=batch_size) if arrays else {}


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _read(paths: list[str]) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Decoded images, None where a file could not be read, with the reason."""
    from search.data.table import decode

    arrays: list[np.ndarray | None] = []
    errors: list[str | None] = []
    for path in paths:
        try:
            arrays.append(decode(path))
            errors.append(None)
        except Exception as exc:  # PIL raises many types for unreadable files
            arrays.append(None)
            errors.append(f"cannot read image: {type(exc).__name__}: {exc}".replace("\n", " "))
    return arrays, errors


class _Writer:
    """Rows as JSON lines ({"image", head: {"label", "probability"}}, or {"image", "error"}) or
    CSV (image, error, then <head> and <head>_probability per head)."""

    def __init__(self, out, fmt: str, vocab: dict):
        if fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.out, self.fmt, self.vocab = out, fmt, vocab
        if fmt == "csv":
            self.csv = csv.writer(out, lineterminator="\n")
            self.csv.writerow(["image", "error", *[c for h in vocab
                                                   for c in (h, f"{h}_probability")]])

    def row(self, path: str, probs: dict[str, np.ndarray]) -> None:
        result = {h: {"label": self.vocab[h][int(np.argmax(p))],
                      "probability": round(float(np.max(p)), 4)} for h, p in probs.items()}
        if self.fmt == "csv":
            self.csv.writerow([path, "", *[v for h in self.vocab
                                           for v in (result[h]["label"],
                                                     result[h]["probability"])]])
        else:
            self.out.write(json.dumps({"image": path, **result}) + "\n")

    def failure(self, path: str, why: str) -> None:
        if self.fmt == "csv":
            self.csv.writerow([path, why, *[""] * (2 * len(self.vocab))])
        else:
            self.out.write(json.dumps({"image": path, "error": why}) + "\n")
