"""Does a long in-process search leak? RSS after each of 30 small trials on the real path.

`search.engines.run` → its loop → `trial.run` (Keras fit, MLflow logging, model saving) on 160
synthetic 32 px images with tests/tiny_space.yaml's architecture, in one process, as `search
run` does without --isolate. RSS is read from /proc after each trial. Growth is counted from
the end of trial 1, once TensorFlow, the MLflow store and the image cache exist. Target:
<= 100 MB over the 30 trials.

    .venv/bin/python bench/memory.py [--trials 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import benchlib

SPACE = benchlib.ROOT / "tests" / "tiny_space.yaml"
TARGET_MB = 100


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (this benchmark needs Linux)")


def measure(trials: int) -> list[float]:
    """RSS in MB after each trial of one `search run`-like search."""
    from search import engines
    from search.engines.optuna import OptunaEngine
    from search.settings import Settings
    from search.study.session import Options, Session

    figures: list[float] = []

    class Measured(OptunaEngine):
        """The real engine, with RSS read after each in-process trial."""

        def trial(self, bar):
            try:
                return super().trial(bar)
            finally:
                figures.append(rss_mb())

    csv = benchlib.synthetic_csv(160, 32, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        session = Session.build(Settings.resolve(Path(tmp) / "runs"),
                                Options(study="memory", space=str(SPACE), data=str(csv),
                                        trials=trials, progress=False))
        code = engines.run(Measured(session))
    if code != 0 or len(figures) < trials:
        raise SystemExit(f"the search stopped early (exit code {code}, {len(figures)} trials)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    before = rss_mb()
    figures = measure(args.trials)
    growth = figures[-1] - figures[0]
    verdict = "met" if growth <= TARGET_MB else "missed"
    benchlib.record(f"memory: RSS over {args.trials} in-process trials", [
        "tests/tiny_space.yaml on 160 synthetic 32 px images, 8 heads, MLflow logging and "
        "model saving on (the real `search run` path, one process).",
        "",
        f"- RSS before the search: {before:.0f} MB; after trial 1 (start): {figures[0]:.0f} "
        f"MB; after trial {args.trials} (end): {figures[-1]:.0f} MB",
        f"- growth from trial 1 to trial {args.trials}: {growth:+.0f} MB "
        f"({growth / max(len(figures) - 1, 1):+.1f} MB per trial); target <= {TARGET_MB} MB: "
        f"{verdict}",
        f"- RSS after each trial (MB): {' '.join(f'{f:.0f}' for f in figures)}",
    ], enabled=not args.no_record)


if __name__ == "__main__":
    main()
