"""What every benchmark script shares: the machine's description, the data to use, timing and
appending a dated section to bench/RESULTS.md (append only: other scripts write there too).

Benchmarks import the project (`search.*`) and measure its real code paths; this file only
holds the bookkeeping around them (and `ray_nodes`, the two-node Ray cluster that
bench/ray_workers.py --cluster measures on). Run scripts from the repository root with the
project's Python, e.g. `.venv/bin/python bench/pipeline.py`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


# Two Ray nodes on this machine, started as docs/cluster.md ("A cluster on one machine") and
# tests/test_cluster.py start them (bench does not import tests).


@dataclass
class RayNodes:
    address: str  # the head's HOST:PORT, for `search run --ray`
    env: dict  # token authentication: the environment of every process that talks to Ray
    up_s: float  # seconds from the first `ray start` until `ray status` showed both nodes


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def stop_session(process: subprocess.Popen) -> None:
    """SIGTERM a session leader (`ray start --block` stops its node), then SIGKILL every
    process left in its session (Ray's daemons and workers), by id: never `ray stop`, which
    stops every Ray instance of this machine."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == process.pid:
                os.kill(int(stat.parent.name), signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


@contextlib.contextmanager
def ray_nodes(logs: Path, cpus: int = 1, timeout: float = 180) -> Iterator[RayNodes]:
    """A Ray head (`ray start --head --block`) and a second node joined to it (`ray start
    --address ... --block`), `cpus` CPUs and no GPU each, on free ports, each with its own
    temp dir and dashboard agent port, Ray's token authentication on (a token per call);
    node logs in `logs`. Every process they start is stopped on exit, by session id."""
    bin_ = Path(sys.executable).parent  # ray of this venv
    logs.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray's socket paths are short
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(16).hex(),
           # the nodes' workers import this checkout's `search`
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get(
               "PYTHONPATH")])])}
    env.pop("RAY_TMPDIR", None)  # each node has its --temp-dir; clients take it from the head
    gcs, client, dashboard, agent, agent2 = free_ports(5)
    common = ["--block", "--num-cpus", str(cpus), "--num-gpus", "0", "--disable-usage-stats"]
    nodes = {
        "head": ["--head", "--port", str(gcs), "--include-dashboard", "false",
                 "--dashboard-port", str(dashboard), "--ray-client-server-port", str(client),
                 "--dashboard-agent-listen-port", str(agent)],
        "second": ["--address", f"127.0.0.1:{gcs}", "--dashboard-agent-listen-port",
                   str(agent2)],
    }
    processes = []
    began = time.monotonic()
    try:
        for name, flags in nodes.items():
            log = logs / f"ray-{name}.log"
            processes.append(subprocess.Popen(
                [str(bin_ / "ray"), "start", *flags, *common, "--temp-dir", str(temp / name)],
                env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                start_new_session=True))
            _wait(lambda p=processes[-1], log=log: _started(p, log), f"the Ray {name} node "
                  f"(log: {log})", timeout)
        status = [str(bin_ / "ray"), "status", "--address", f"127.0.0.1:{gcs}"]
        _wait(lambda: subprocess.run(status, env=env, capture_output=True, text=True)
              .stdout.split("Pending:")[0].count(" node_") == 2, "both Ray nodes in `ray "
              "status`", timeout)
        yield RayNodes(f"127.0.0.1:{gcs}", env, time.monotonic() - began)
    finally:
        for process in reversed(processes):
            stop_session(process)
        shutil.rmtree(temp, ignore_errors=True)


def _started(process: subprocess.Popen, log: Path) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"`ray start` exited ({process.returncode}): "
                           f"{log.read_text()[-2000:]}")
    return "Ray runtime started" in log.read_text()


def _wait(condition, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)
