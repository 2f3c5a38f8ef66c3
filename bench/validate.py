"""Seconds to check the real annotation table before a search (`search.data.table.read_table`,
which runs `search.data.validate.check`) and to analyse it (`search eda`: every image read
once), against the plainest look a user could take: pandas reads the CSV and Pillow opens and
verifies each image, in the same run.

These were once wall-clock limits in unit tests (15 s and 60 s); timing belongs here.

    .venv/bin/python bench/validate.py [--repeats 3] [--no-record]
"""

from __future__ import annotations

import argparse
import statistics
import time

import benchlib

CSV = benchlib.ROOT.parent / "shared" / "hvc" / "hvc_annotations.csv"


def plain() -> None:
    import pandas as pd
    from PIL import Image

    frame = pd.read_csv(CSV, keep_default_na=False)
    for path in frame["image_path"]:
        with Image.open(CSV.parent / path) as image:
            image.verify()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if not CSV.exists():
        raise SystemExit(f"skipped: {CSV} is not present")
    from search.data import eda
    from search.data.table import DEFAULT_HEADS, read_table

    steps = {"plain (pandas + PIL verify)": plain,
             "read_table (validate.check)": lambda: read_table(CSV),
             "search eda (eda.analyse)": lambda: eda.analyse(CSV, DEFAULT_HEADS)}
    seconds = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - start)
    base = statistics.median(seconds["plain (pandas + PIL verify)"])
    lines = ["| step | median s | min s | x plain |", "|---|---|---|---|"]
    for name, values in seconds.items():
        lines.append(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | "
                     f"{statistics.median(values) / base:.2f} |")
    lines += ["", "Once unit-test limits: read_table < 15 s, eda < 60 s."]
    print("\n".join(lines))
    benchlib.record(f"validate: checking the 5,600-row table, {args.repeats} repeats", lines,
                    enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
