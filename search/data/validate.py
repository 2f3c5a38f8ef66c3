"""Checks an annotation CSV and its images before anything is written (study, MLflow, cache).

Every problem a user can fix raises `DataError` with one message per kind of problem: what is
wrong, how many rows, the first few of them as `line N column=value` (N is the CSV line, the
header is line 1) and how to fix it. Normalisation, on purpose:
  - a UTF-8 BOM and CRLF line endings are accepted; blank lines are ignored;
  - header names and cells are stripped of surrounding spaces (`" male "` is `male`);
  - nothing becomes NaN: `None`, `NA` and `null` are labels like any other.
Images are fully decoded (in threads, a JPEG at reduced DCT scale), because only a decode
notices a truncated file; that takes about a second for 5,600 small JPEGs on 2 cores.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError

from search.errors import DataError

IMAGE_COLUMN = "image_path"
SHOW_ROWS = 5  # offending rows quoted in a message
ON_BAD_IMAGES = ("error", "skip", "report")  # report: the caller lists them (search eda)
DUPLICATES = ("warn", "error")

# Image problems, worded to follow "N image file(s) ...".
MISSING = "do not exist"
NOT_FILE = "are folders or other non-files"
EMPTY = "are empty (0 bytes)"
NOT_IMAGE = "are not images"
CORRUPT = "cannot be decoded (corrupt or truncated)"
PROBLEMS = (MISSING, NOT_FILE, EMPTY, NOT_IMAGE, CORRUPT)  # in the order messages list them
_MAGIC = {b"\xff\xd8\xff": "a JPEG image", b"\x89PNG": "a PNG image", b"PK\x03\x04": "a zip file",
          b"GIF8": "a GIF image", b"%PDF": "a PDF file"}


def check(csv_path, heads, vocab=None, *, on_bad_images="error", allow_outside=False,
          duplicates="warn") -> tuple[pd.DataFrame, dict[str, tuple[str, ...]]]:
    """The validated rows (image_path, absolute path, one column per head; index = CSV line)
    and the vocabulary per head: `vocab` as given, else the sorted labels found. The one
    check of an annotation CSV: `run`, `worker`, `lr-find` (through `search.data.table.read_table`)
    and `eda` all call it. Unreadable images stop it ("error"), are dropped ("skip"), or are
    left to the caller ("report": `eda` inspects every image and lists them, with the line
    `run` would stop on, `bad_images_message`)."""
    if on_bad_images not in ON_BAD_IMAGES:
        raise ValueError(f"on_bad_images must be one of {ON_BAD_IMAGES}, got {on_bad_images!r}")
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates must be one of {DUPLICATES}, got {duplicates!r}")
    csv_path, heads = Path(csv_path), tuple(heads)
    frame = read_csv(csv_path)
    check_columns(frame, heads, csv_path)
    frame = frame[[IMAGE_COLUMN, *heads]].copy()
    _no_empty_cells(frame, csv_path)
    frame["path"] = resolve_paths(frame, csv_path, allow_outside=allow_outside)
    if vocab is not None:
        vocab = _check_vocab(frame, heads, vocab, csv_path)
    _check_duplicates(frame, csv_path, duplicates)
    if on_bad_images != "report":
        frame = _check_images(frame, csv_path, on_bad_images)
    if vocab is None:
        vocab = _found_vocab(frame, heads, csv_path)
    return frame, vocab


def read_csv(csv_path: Path) -> pd.DataFrame:
    """All cells as stripped strings; the index is each row's CSV line number. Rows with only
    empty cells (blank lines, a spreadsheet's trailing `,,,`) are ignored."""
    if not csv_path.is_file():
        what = "is a folder, not a file" if csv_path.is_dir() else "does not exist"
        raise DataError(f"annotation file {csv_path} {what}; pass the annotation CSV with --data")
    raw = csv_path.read_bytes()
    try:
        if b"\x00" in raw:
            raise ValueError("it contains NUL bytes")
        lines = csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=None))
        rows = [(lines.line_num, cells) for cells in
                ([cell.strip() for cell in row] for row in lines) if any(cells)]
    except (ValueError, csv.Error) as exc:  # UnicodeDecodeError is a ValueError
        kind = next((k for magic, k in _MAGIC.items() if raw.startswith(magic)), None)
        looks = f"it looks like {kind}" if kind else f"{exc}"
        raise DataError(f"{csv_path} is not a UTF-8 CSV file ({looks}); pass the annotation "
                        f"CSV with --data") from None
    if not rows:
        raise DataError(f"{csv_path} is empty; expected a header line with {IMAGE_COLUMN} and "
                        f"one column per head, then one row per image")
    (_, header), body = rows[0], rows[1:]
    _check_header(header, csv_path)
    if not body:
        raise DataError(f"{csv_path} has a header but no rows; add one row per image")
    ragged = [(n, len(cells)) for n, cells in body if len(cells) != len(header)]
    if ragged:
        shown = ", ".join(f"line {n}: {k} fields" for n, k in ragged[:SHOW_ROWS])
        raise DataError(f"{csv_path}: {len(ragged)} row(s) do not have the header's "
                        f"{len(header)} fields: {shown}{_more(len(ragged))}; quote cells that "
                        f"contain a comma")
    return pd.DataFrame([cells for _, cells in body], columns=header,
                        index=pd.Index([n for n, _ in body], name="line"), dtype=str)


def _check_header(header: list[str], csv_path: Path) -> None:
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"{csv_path}: column(s) {', '.join(map(repr, repeated))} appear more than "
                        f"once in the header; rename or drop the repeats")


def check_columns(frame: pd.DataFrame, heads: tuple[str, ...], csv_path: Path) -> None:
    missing = [c for c in (IMAGE_COLUMN, *heads) if c not in frame.columns]
    if not missing:
        return
    found = ", ".join(map(repr, frame.columns))
    hint = "fix the header, or choose the label columns with --heads"
    if len(frame.columns) == 1 and any(sep in frame.columns[0] for sep in ";\t|"):
        hint = "the file must be comma-separated"
    raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)}; the header has "
                    f"{_clip(found)}; {hint}")


def _no_empty_cells(frame: pd.DataFrame, csv_path: Path) -> None:
    cells = [(line, column, "") for column in frame.columns
             for line in frame.index[frame[column] == ""]]
    if cells:
        raise DataError(f"{csv_path}: " + _cells_message(sorted(cells), "empty cell(s)",
                                                         "fill them in or delete those rows"))


def resolve_paths(frame: pd.DataFrame, csv_path: Path, *, allow_outside: bool = False
                  ) -> list[str]:
    """Absolute image paths; relative ones are relative to the CSV's folder, which they must not
    leave unless `allow_outside`: no absolute paths, no `..` out of it, and no symlink (the
    image's or a folder's on the way) that points out of it, since the images read would then
    not be the folder's. `run` and `eda` both check here, so they accept the same CSVs."""
    root = str(csv_path.resolve().parent)
    paths = [os.path.normpath(os.path.join(root, p)) for p in frame[IMAGE_COLUMN]]
    if not allow_outside:
        outside = [(line, IMAGE_COLUMN, value) for line, value, path
                   in zip(frame.index, frame[IMAGE_COLUMN], paths)
                   if os.path.isabs(value)
                   or os.path.commonpath([root, os.path.realpath(path)]) != root]
        if outside:
            raise DataError(f"{csv_path}: " + _cells_message(
                outside, f"image path(s) are absolute or lead outside the CSV's folder {root}",
                "write them relative to that folder and keep the images (and what symlinks "
                "point to) in or below it"))
    return paths


def _check_vocab(frame, heads, vocab: dict, csv_path: Path) -> dict[str, tuple[str, ...]]:
    absent = [h for h in heads if h not in vocab]
    if absent:
        raise DataError(f"the label vocabulary has no labels for head(s) {', '.join(absent)}; it "
                        f"has {', '.join(vocab) or 'none'}; choose the heads with --heads")
    vocab = {h: tuple(vocab[h]) for h in heads}
    cells = sorted((line, h, value) for h in heads
                   for line, value in frame[h][~frame[h].isin(vocab[h])].items())
    if cells:
        known = "; ".join(f"{h}: {', '.join(vocab[h])}" for h in dict.fromkeys(c[1] for c in cells))
        raise DataError(f"{csv_path}: " + _cells_message(cells, "label(s) not in the vocabulary",
                                                         f"the known labels are {known}"))
    return vocab


def _found_vocab(frame, heads, csv_path: Path) -> dict[str, tuple[str, ...]]:
    found = {h: tuple(sorted(frame[h].unique())) for h in heads}
    single = [f"{h} ({found[h][0]!r})" for h in heads if len(found[h]) < 2]
    if single:
        raise DataError(f"{csv_path}: head(s) with a single class cannot be learned: "
                        f"{', '.join(single)}; drop them with --heads")
    return found


def _check_duplicates(frame: pd.DataFrame, csv_path: Path, duplicates: str) -> None:
    """A repeated image can land in both training and validation: warn, or refuse."""
    first: dict[str, int] = {}
    for line, path in zip(frame.index, frame["path"]):
        first.setdefault(path, line)
    repeats = [(line, IMAGE_COLUMN, value, f" (as line {first[path]})") for line, value, path
               in zip(frame.index, frame[IMAGE_COLUMN], frame["path"]) if first[path] != line]
    if not repeats:
        return
    message = f"{csv_path}: " + _cells_message(
        repeats, "row(s) repeat an earlier image",
        "a repeated image can land in both the training and the validation split; delete the "
        "repeats")
    if duplicates == "error":
        raise DataError(message)
    print(f"warning: {message}", file=sys.stderr)


def _check_images(frame: pd.DataFrame, csv_path: Path, on_bad_images: str) -> pd.DataFrame:
    problems = pd.Series(scan_images(frame["path"].tolist()), index=frame.index)
    bad = problems.notna()
    if not bad.any():
        return frame
    if on_bad_images == "error" or bad.all():
        raise DataError(bad_images_message(frame, problems, csv_path))
    print(f"{csv_path}: skipping {bad.sum()} of {len(frame)} rows with unreadable images: "
          f"{_kinds(frame, problems)}", file=sys.stderr)
    return frame[~bad]


def bad_images_message(frame: pd.DataFrame, problems: pd.Series, csv_path: Path) -> str | None:
    """The line `run` stops with for these image problems (per CSV line: None or one of
    PROBLEMS), or None when every image is readable."""
    bad = problems.notna()
    if not bad.any():
        return None
    fix = ("every row is unreadable; check the image folder" if bad.all() else
           "fix or delete those rows, or drop them with --on-bad-images skip")
    return f"{csv_path}: {_kinds(frame, problems)}; {fix}"


def _kinds(frame: pd.DataFrame, problems: pd.Series) -> str:
    return "; ".join(
        _cells_message([(line, IMAGE_COLUMN, frame.at[line, IMAGE_COLUMN])
                        for line in problems.index[problems == kind]], f"image file(s) {kind}")
        for kind in PROBLEMS if (problems == kind).any())


def scan_images(paths: list[str]) -> list[str | None]:
    """Per path: None when the file decodes, else one of PROBLEMS."""
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) * 2) as pool:
        return list(pool.map(image_problem, paths))


def image_problem(path: str) -> str | None:
    problem = file_problem(path)
    if problem:
        return problem
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":  # decode at 1/8 scale: still reads every byte
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except Exception as exc:  # any decoder failure (OSError, SyntaxError, ...) means unusable
        return decode_problem(exc)
    return None


def file_problem(path: str) -> str | None:
    """MISSING, NOT_FILE or EMPTY, or None when `path` is a non-empty regular file: what can be
    told before reading it (reading a FIFO would block, a folder is no image)."""
    try:
        info = os.stat(path)
    except OSError:
        return MISSING
    if not stat.S_ISREG(info.st_mode):
        return NOT_FILE
    return EMPTY if info.st_size == 0 else None


def decode_problem(exc: Exception) -> str:
    """What a failure of PIL on a regular, non-empty file means: NOT_IMAGE or CORRUPT."""
    return NOT_IMAGE if isinstance(exc, UnidentifiedImageError) else CORRUPT


def _cells_message(cells: list, what: str, fix: str = "") -> str:
    """'N <what>: line 3 column='value', ... (and K more); <fix>'. A cell is
    (line, column, value) with an optional note appended."""
    shown = ", ".join(f"line {line} {column}={value!r}{''.join(note)}"
                      for line, column, value, *note in cells[:SHOW_ROWS])
    return f"{len(cells)} {what}: {shown}{_more(len(cells))}" + (f"; {fix}" if fix else "")


def _more(n: int) -> str:
    return f" (and {n - SHOW_ROWS} more)" if n > SHOW_ROWS else ""


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
