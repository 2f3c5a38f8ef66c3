"""Processes, and nothing more: the worker processes of `search run --workers K | --gpus`, and a
fresh process for one call (`--isolate`).

One worker interface, two backends: the engine's worker pool launches K workers of one target,
says where they ran and closes: `Processes` (here) or, with `--ray`, the Ray tasks of
`search.study.ray_workers`, which builds on this module (never the other way round).

Workers are spawned processes (multiprocessing "spawn": a fresh interpreter, no forked
TensorFlow state). Each runs the `target` it is handed (a module-level function, e.g. the
Optuna engine's `work`) with arguments passed through a pipe, not argv, so a storage password
never shows in `ps`. Each worker leads its own process group: Ctrl-C reaches the launcher only,
which forwards one SIGINT to each worker's group and waits while they mark their trial FAIL.
This module knows nothing of studies or trials.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Callable

from search.errors import UsageError
from search.settings import mask

LOST = 3  # a Ray worker lost more often than Ray restarts it
RAY_NODE_ENV = "SEARCH_RAY_NODE"  # set in a Ray worker task: its node's id (study.node_name)


class TrialProcessError(RuntimeError):
    """A call in a fresh process failed or the process died; the message says why."""


def wanted(options) -> bool:
    """Whether `search run` starts workers (processes, or Ray tasks) rather than training
    itself."""
    if options.workers < 1:
        raise UsageError("--workers must be at least 1")
    return options.workers > 1 or bool(options.gpus) or options.ray is not None


class Interrupts:
    """Ctrl-C in a worker (SIGINT; Ray's cancel arrives the same way), once `install`ed:
    raised as KeyboardInterrupt only while a trial runs (`armed`), and always remembered.
    Raised anywhere, it could land between Optuna's storage calls (ask, tell), leaving a trial
    RUNNING that only the heartbeat grace would close, or inside a finaliser, where Python
    drops it ("Exception ignored in ...", as SQLAlchemy's did in CI) and the worker went on
    with the study. Remembered, it stops the loop at its next trial boundary (`check`)."""

    def __init__(self):
        self.requested = False
        self._armed = False

    def install(self) -> None:
        try:
            signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Python's default handler stays
            pass

    def _handle(self, signum, frame) -> None:
        self.requested = True
        if self._armed:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def armed(self):
        self.check()
        self._armed = True
        try:
            yield
        finally:
            self._armed = False

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


class Processes:
    """Worker processes on this machine, one per entry of `gpus` (see `launch`)."""

    def __init__(self, gpus: list[str | None]):
        self.gpus = gpus
        self.ran: list[str] = []

    def launch(self, target: Callable[..., int], args: tuple) -> list[int]:
        codes = launch(target, args, self.gpus)
        here = socket.gethostname()
        self.ran = [place(here, [gpu] if gpu else []) for gpu in self.gpus]
        return codes

    def where(self) -> str:
        return ran_on(self.ran)

    def close(self) -> None:
        pass


def place(node: str, gpus: list[str]) -> str:
    """'10.0.0.5 (GPU 0,1)' or '10.0.0.5 (CPU)': where one worker ran."""
    return f"{node} ({'GPU ' + ','.join(gpus) if gpus else 'CPU'})"


def ran_on(places: list[str]) -> str:
    """The summary's line: '3 workers ran on: 10.0.0.5 (GPU 0) x2, 10.0.0.6 (CPU)'; '' for
    none."""
    if not places:
        return ""
    counts = Counter(places)
    return (f"{len(places)} worker{'s' if len(places) > 1 else ''} ran on: "
            + ", ".join(f"{where} x{n}" if n > 1 else where for where, n in counts.items()))


def devices(options) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each worker to start (None: inherit; CPU when there is no GPU).
    One worker per GPU; with more --workers than GPUs they share GPUs round-robin."""
    if not options.gpus:
        return [None] * options.workers
    gpus = gpu_ids(options.gpus)
    if not gpus:
        print(f"--gpus {options.gpus}: no GPU found; starting {options.workers} CPU worker(s)")
        return [None] * options.workers
    return [gpus[i % len(gpus)] for i in range(max(options.workers, len(gpus)))]


def gpu_ids(spec: str) -> list[str]:
    """'0,1' → ['0', '1']; 'all' → the visible GPUs (CUDA_VISIBLE_DEVICES, else nvidia-smi)."""
    if spec != "all":
        ids = [g.strip() for g in spec.split(",") if g.strip()]
        if not ids:
            raise UsageError(f"--gpus {spec!r}: give GPU ids such as 0,1 or 'all'")
        return ids
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() not in ("", "-1")]
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return found.stdout.split() if found.returncode == 0 else []


def launch(target: Callable[..., int], args: tuple, gpus: list[str | None]) -> list[int]:
    """Run target(*args) in one spawned process per entry of `gpus` (its
    CUDA_VISIBLE_DEVICES, None: inherit), wait for all, forward Ctrl-C; their exit codes."""
    context = multiprocessing.get_context("spawn")
    processes = []
    threads = cpu_share(len(gpus))
    for number, gpu in enumerate(gpus, start=1):
        process = context.Process(target=_worker, args=(target, args, gpu, threads),
                                  name=f"search-worker-{number}")
        process.start()
        processes.append(process)
        print(f"worker {number}: pid {process.pid}" + (f", GPU {gpu}" if gpu else ""),
              flush=True)
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            _interrupt(process)
        for process in processes:
            process.join()
        raise
    return [p.exitcode for p in processes]


def exit_text(code: int) -> str:
    """What a worker's exit code means, for the launcher's message."""
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return {1: "stopped after repeated failures", 2: "could not start (see its error)",
            LOST: "was lost (its process or node died more often than Ray restarts it)",
            130: "was interrupted"}.get(code, f"exited with code {code}")


def gone(pid: int) -> bool:
    """Whether no process `pid` runs on this machine: a dead worker's trial need not wait for
    its heartbeat to age. A zombie (dead, not yet reaped by its launcher) is gone; a pid we
    may not signal is not."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass
    return False


def _interrupt(process) -> None:
    """SIGINT to a worker's process group, so that its --isolate trial process stops too."""
    try:
        os.killpg(process.pid, signal.SIGINT)
    except ProcessLookupError:  # not leading its group yet, or already gone
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGINT)


def cpu_workers(device) -> int:
    """The --workers to suggest after a one-process run on a CPU-only machine (0: none; the
    device is search.train.device's choice): one process used 1.50 of 2 cores on the real
    images, two finished 1.38x the trials (bench/cores.py); at most 4, since each worker
    holds its own images and TensorFlow."""
    cores = len(os.sched_getaffinity(0))
    return 0 if device is None or device.gpus or cores < 2 else min(cores, 4)


def cpu_share(workers: int) -> int:
    """Threads for each TensorFlow op of one of `workers` processes on this machine: its share
    of the cores, so that K workers' thread pools do not each claim every core (a 2-core
    machine with 2 workers ran 4 busy op threads on 2 cores)."""
    return max(1, len(os.sched_getaffinity(0)) // max(workers, 1))


def _worker(target, args, gpu: str | None, threads: int | None = None) -> None:
    """A worker process: own process group (see module docstring), its GPU, its share of the
    cores (TensorFlow and oneDNN read these before they start; a user's setting wins), the
    target."""
    os.setpgrp()
    sys.stdout.reconfigure(line_buffering=True)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if threads:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    from search import console

    console.quiet()
    try:
        code = target(*args)
    except UsageError as exc:
        print(f"search worker: error: {mask(str(exc))}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:  # forwarded before the worker was ready
        code = 130
    sys.exit(code)


def in_fresh_process(function: Callable, *args):
    """function(*args) in a fresh spawned process: when it exits, all its memory
    (TensorFlow's, the GPU's) is returned. The function must return plain picklable values
    (TensorFlow's exceptions do not survive pickling back): raise nothing it can avoid."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        future = pool.submit(function, *args)
        try:
            return future.result()
        except BrokenProcessPool:
            raise TrialProcessError("the trial's process died (killed by the system, e.g. out "
                                    "of memory); its MLflow run is closed as FAILED") from None
