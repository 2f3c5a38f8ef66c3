"""How the reading commands print: a table for people, CSV or one JSON document for scripts.

`search studies`, `best` and `pareto` take `--format table|csv|json`. In csv and json, stdout
holds the data and nothing else (notes go to stderr), so `search studies --format json | jq`
and `pandas.read_csv` work on it. A missing value is '-' in a table, an empty cell in CSV and
null in JSON (so is NaN, which JSON cannot carry); times are ISO 8601 in local time, as Optuna
stores them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime

FORMATS = ("table", "csv", "json")
FORMAT_HELP = ("table (default) for people; csv (one header line) or json (one document) for "
               "scripts, with nothing else on stdout")


def plain(value):
    """value with datetimes as ISO text and NaN as None, inside dicts, lists and tuples."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def json_text(data) -> str:
    return json.dumps(plain(data), indent=2)


def csv_text(columns: list[str], rows: list[list]) -> str:
    """A header line and one line per row; None is an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in plain(row)])
    return out.getvalue().rstrip("\n")


def table_text(columns: list[str], rows: list[list[str]], left: tuple[str, ...] = ()) -> str:
    """Fixed-width text: each column as wide as its widest cell, the `left` columns aligned
    left (names), the others right (numbers, times)."""
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def line(cells):
        return "  ".join(f"{v:<{w}}" if c in left else f"{v:>{w}}"
                         for c, v, w in zip(columns, cells, widths)).rstrip()

    return "\n".join([line(columns)] + [line(r) for r in rows])


def head_lines(columns: list[tuple[str, int]], rows: dict[str, list[str]],
               test: dict | None = None, test_title: str = "test accuracy [95% CI]") -> list[str]:
    """The per-head table `search run` and `search best` print: a row per head with its cells
    (already formatted) under `columns` (title, width), and, with `test` (per head:
    accuracy and accuracy_ci on the held-out rows), the test accuracy and its interval."""
    width = len(test_title)
    lines = [f"  {'head':<14}" + "".join(f"{title:>{w}}" for title, w in columns)
             + (f"  {test_title:>{width}}" if test else "")]
    for head, cells in rows.items():
        line = f"  {head:<14}" + "".join(f"{cell:>{w}}" for cell, (_, w) in zip(cells, columns))
        if test and head in test:
            low, high = test[head]["accuracy_ci"]
            line += f"  {test[head]['accuracy']:>{width - 15}.3f} [{low:.3f}, {high:.3f}]"
        lines.append(line)
    return lines
