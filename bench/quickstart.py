"""The quick start as README states it: `search run --trials 10` in an empty folder (synthetic
data generated on first use, SQLite, CPU), timed as a user sees it: seconds to the first trial
line and to the end, and whether the best trial learnt (heads above their majority baseline).

The shipped quick start (2,000 images of 32 px, spaces/default.yaml with the `rows` neck) runs
beside, in the same run, the quick start it replaced in issue 20 (3,000 images of 48 px,
bench/quickstart_before.yaml, global average pooling), so the ratio says what the change bought
and the head count what it cost. `--no-baseline` skips the old one.
Targets (issue 20): first trial line <= 20 s, 10 trials <= 180 s, >= 5 heads above majority.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, record

BEFORE_SPACE = ROOT / "bench" / "quickstart_before.yaml"
SEARCH = [sys.executable, "-m", "search.cli"]


def quick_start(folder: Path, extra: list[str], trials: int = 10) -> dict:
    """`search run --trials 10 EXTRA` in `folder`; timings from the first byte of output.
    (bench/backends.py adds `--backend B`, and fewer trials in its smoke runs.)"""
    start = time.perf_counter()
    process = subprocess.Popen([*SEARCH, "run", "--trials", str(trials), "--no-progress",
                                *extra],
                               cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    first = None
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip())
        if first is None and line.startswith("trial "):
            first = time.perf_counter() - start
    code = process.wait()
    total = time.perf_counter() - start
    if code != 0:
        sys.exit("search run failed:\n" + "\n".join(lines[-20:]))
    return {"first": first, "total": total, **best_heads(folder)}


def best_heads(folder: Path) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="default",
                              storage=f"sqlite:///{folder / 'runs' / 'optuna.db'}")
    from search.study import trial_record

    best = trial_record.read(study.best_trial)
    acc, majority = best.accuracy, best.majority
    above = [h for h in acc if acc[h] > majority[h]]
    pruned = sum(t.state.name == "PRUNED" for t in study.trials)
    return {"best": best.score, "above": above, "heads": len(acc), "pruned": pruned}


def before_data(folder: Path) -> Path:
    """The old quick start's data set: 3,000 synthetic images of 48 px."""
    from search.data import synthetic

    return synthetic.generate(folder / "data", n=3000, size=48, seed=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="quickstart-") as tmp:
        now = Path(tmp) / "now"
        now.mkdir()
        results["shipped (2,000 x 32 px, spaces/default.yaml)"] = quick_start(now, [])
        if not args.no_baseline:
            before = Path(tmp) / "before"
            before.mkdir()
            csv = before_data(before)
            shutil.rmtree(before / "runs", ignore_errors=True)
            results["before issue 20 (3,000 x 48 px, quickstart_before.yaml)"] = quick_start(
                before, ["--data", str(csv), "--space", str(BEFORE_SPACE)])
    rows = ["| run | first trial line s | 10 trials s | best mean acc | heads above majority | "
            "pruned |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        rows.append(f"| {name} | {r['first']:.1f} | {r['total']:.1f} | {r['best']:.4f} | "
                    f"{len(r['above'])} of {r['heads']} | {r['pruned']} |")
    now_r = next(iter(results.values()))
    lines = rows + [""]
    if len(results) == 2:
        before_r = list(results.values())[1]
        lines.append(f"shipped / before: 10 trials {now_r['total'] / before_r['total']:.2f}x, "
                     f"first line {now_r['first'] / before_r['first']:.2f}x; heads above "
                     f"majority {len(now_r['above'])} vs {len(before_r['above'])}.")
    verdict = [f"first line {now_r['first']:.1f} s (target <= 20: "
               f"{'met' if now_r['first'] <= 20 else 'missed'})",
               f"10 trials {now_r['total']:.0f} s (target <= 180: "
               f"{'met' if now_r['total'] <= 180 else 'missed'})",
               f"{len(now_r['above'])} heads above majority (target >= 5: "
               f"{'met' if len(now_r['above']) >= 5 else 'missed'})"]
    lines.append("Targets (shipped): " + "; ".join(verdict) + ".")
    lines.append("Heads above majority (shipped): " + ", ".join(now_r["above"]) + ".")
    record("quickstart: search run --trials 10 in an empty folder", lines,
           enabled=not args.no_record)
    print(json.dumps({k: {**v, "above": list(v["above"])} for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
