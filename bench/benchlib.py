"""What every benchmark script shares: the machine's description, the data to use, timing and
appending a dated section to bench/RESULTS.md (append only: other scripts write there too).

Benchmarks import the project (`search.*`) and measure its real code paths; this file only
holds the bookkeeping around them. Run scripts from the repository root with the project's
Python, e.g. `.venv/bin/python bench/pipeline.py`.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
HVC_CSV = ROOT.parent / "shared" / "hvc" / "hvc_annotations.csv"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
if str(ROOT) not in sys.path:  # `search` importable without `pip install -e .`
    sys.path.insert(0, str(ROOT))


def machine() -> str:
    """'2 cores (nproc), AMD EPYC, 24 GB RAM, Linux 6.x, Python 3.11' plus GPUs if any."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB RAM"
    except (ValueError, OSError):
        ram = ""
    load = ", load average {:.1f} / {:.1f} / {:.1f} (1/5/15 min; other work on the machine " \
        "slows both sides)".format(*os.getloadavg())
    return (f"{len(os.sched_getaffinity(0))} cores (nproc), {cpu}{ram}, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}{load}")


def command() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def record(title: str, lines: list[str], *, enabled: bool = True) -> None:
    """Print the figures, and append them to bench/RESULTS.md with date, machine, command."""
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body = "\n".join(lines)
    section = (f"\n## {title} ({stamp})\n\n- machine: {machine()}\n- command: `{command()}`\n\n"
               f"{body}\n")
    print(section)
    if enabled:
        if not RESULTS.exists():
            RESULTS.write_text("# Benchmark results\n\nAppended by the scripts in bench/ "
                               "(see bench/README.md); newest last.\n")
        with RESULTS.open("a") as f:
            f.write(section)


def hvc_csv(allow_synthetic: bool = True, n: int = 5600, size: int = 224) -> tuple[Path, str]:
    """The real images (../shared/hvc) if present, else a synthetic set of the same shape."""
    if HVC_CSV.is_file():
        return HVC_CSV, f"real hvc images ({HVC_CSV})"
    if not allow_synthetic:
        sys.exit(f"skipped: {HVC_CSV} is not present")
    print(f"note: {HVC_CSV} is absent; using {n} synthetic {size} px images instead",
          file=sys.stderr)
    return synthetic_csv(n, size), f"synthetic images ({n} x {size} px; real ones absent)"


def synthetic_csv(n: int, size: int, seed: int = 0) -> Path:
    """The project's synthetic dataset, generated once under runs/bench/."""
    from search.data import synthetic

    return synthetic.generate(ROOT / "runs" / "bench" / f"synthetic-{n}-{size}-{seed}",
                              n=n, size=size, seed=seed)


class Timer:
    """`with Timer() as t: ...; t.seconds`."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator else "n/a"


# Sessions for benchmarks that call `search.engines.trial.run` or `search.train.training` without
# a study.


def session(csv, runs_dir, *, study: str = "bench", tracking: bool = False,
            log_models: bool = True, val_fraction: float = 0.2):
    """A `search.study.session.Session` on csv (default heads, seeded split, objective mean
    accuracy), with an MLflow parent run under runs_dir when `tracking`."""
    from search.settings import Settings
    from search.space import space as space_lib
    from search.study.session import Options, Session

    settings = Settings.resolve(runs_dir=runs_dir)
    settings.ensure()
    options = Options(study=study, data=str(csv), val_fraction=val_fraction)
    made = Session.on_data(settings, options, space_lib.Space(name=study, params=()),
                           log_models=log_models)
    if tracking:
        made.start_tracking()
    return made
