"""Chaos: a real tiny study SIGKILLed again and again (some kills while a process builds the
decoded-image cache), its image cache truncated, then run to completion. Nothing may be lost
or left behind: the study holds its target number of finished trials, no trial and no MLflow
run is left RUNNING, every COMPLETE trial has its FINISHED MLflow run, no temp file stays in
runs/cache and the damaged cache is rebuilt with one line, not trusted.

The figures (kills, trials lost, seconds until each dead trial was cleared) are printed;
`pytest -s tests/test_chaos.py` or `python bench/chaos.py` shows them.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import ROOT
from test_workers import HEADS, LIGHT_SPACE, QUICK_HEARTBEAT, check_study, mid_trial

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # ~2 minutes on 2 busy cores; part of the default run
STUDY = "chaos"
TARGET = 3


def _start(args, log: Path) -> tuple[subprocess.Popen, float]:
    """`search run` in its own process group (so a kill takes everything it started)."""
    process = subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=ROOT,
                               env={**os.environ, **QUICK_HEARTBEAT}, stdout=log.open("w"),
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return process, time.time()


def _kill(process: subprocess.Popen) -> float:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return time.time()


def _building(cache: Path) -> bool:
    """Some process holds an image cache's build lock right now."""
    for lock in cache.glob("images-*.lock"):
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _wait(condition, process: subprocess.Popen, log: Path, timeout: float = 240, poll=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process.poll() is not None:
            raise AssertionError(f"search run ended early:\n{log.read_text()[-3000:]}")
        time.sleep(poll)
    raise AssertionError(f"timed out:\n{log.read_text()[-3000:]}")


def _finished(storage: str) -> int:
    try:
        trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return 0
    return sum(t.state == TrialState.COMPLETE for t in trials)


def chaos(folder: Path, csv: Path, seed: int = 21) -> dict:
    """Kill, damage, resume; returns the figures (the test asserts on what it leaves)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    runs, space = folder / "runs", folder / "light.yaml"
    space.write_text(LIGHT_SPACE)
    cache, storage = runs / "cache", f"sqlite:///{runs / 'optuna.db'}"
    args = ["run", "--trials", str(TARGET), "--study", STUDY, "--space", str(space),
            "--data", str(csv), "--heads", ",".join(HEADS), "--runs-dir", str(runs),
            "--no-progress", "--seed", str(seed)]
    start, kills, logs, restarts = time.time(), [], [], []

    def step(name: str, moment) -> None:
        log = folder / f"{len(logs)}-{name}.log"
        logs.append(log)
        process, began = _start(args, log)
        restarts.append(began)
        moment(process, log)
        time.sleep(rng.uniform(0.0, 0.3))
        kills.append((name, _kill(process)))

    def in_cache_build(process, log):
        _wait(lambda: _building(cache), process, log)

    def mid_trial_after_one(process, log):
        _wait(lambda: _finished(storage) >= 1 and mid_trial(storage, STUDY, process.pid),
              process, log, poll=0.2)
        time.sleep(rng.uniform(0.0, 2.0))

    step("cache-build", in_cache_build)  # the first image cache build, inside trial 0
    step("mid-trial", mid_trial_after_one)  # a trial that is not the first of its process
    (images,) = cache.glob("images-*.npy")
    size = images.stat().st_size
    os.truncate(images, size // 2)  # a full disk or an interrupted copy
    step("cache-rebuild", in_cache_build)  # the rebuild of the damaged cache, killed too
    log = folder / f"{len(logs)}-final.log"
    logs.append(log)
    process, began = _start(args, log)
    restarts.append(began)
    process.wait(timeout=600)
    end = time.time()
    text = log.read_text()
    assert process.returncode == 0, text[-3000:]

    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    lost = [t for t in trials if t.state == TrialState.FAIL]
    cleared = []  # seconds from a restart until the dead trial it found was marked FAIL
    work = 0.0  # seconds the killed trials had run
    for trial in lost:
        done, began = trial.datetime_complete.timestamp(), trial.datetime_start.timestamp()
        cleared.append(round(done - max(r for r in restarts if r <= done), 1))
        work += min((t for _, t in kills if t >= began), default=done) - began
    return {"kills": len(kills), "killed_at": [name for name, _ in kills],
            "finished": sum(t.state == TrialState.COMPLETE for t in trials), "target": TARGET,
            "trials_lost": len(lost), "seconds_to_clear_each_dead_trial": cleared,
            "seconds_of_work_lost": round(work, 1),
            "heartbeat": QUICK_HEARTBEAT, "wall_seconds": round(end - start),
            "image_cache": {"path": images, "bytes": size},
            "logs": logs, "runs": runs, "storage": storage,
            "waiting_lines": sum(path.read_text().count("waiting for ") for path in logs)}


def test_a_study_killed_repeatedly_with_a_damaged_cache_still_completes(tmp_path, tiny_csv):
    figures = chaos(tmp_path, tiny_csv)
    runs, logs = figures["runs"], figures["logs"]
    check_study(figures["storage"], STUDY, runs, TARGET)
    trials = optuna.load_study(study_name=STUDY, storage=figures["storage"]).get_trials()
    assert TrialState.RUNNING not in {t.state for t in trials}
    final = logs[-1].read_text()
    images = figures["image_cache"]["path"]
    damaged = [line for path in logs[-2:] for line in path.read_text().splitlines()
               if line.startswith("rebuilding ")]
    assert damaged and f"{images.name}: truncated (" in damaged[0]
    assert "mmap length" not in final and "Traceback" not in final
    assert images.stat().st_size == figures["image_cache"]["bytes"]
    assert not list((runs / "cache").glob("*.tmp.*"))
    print(f"\nchaos: {figures['kills']} kills ({', '.join(figures['killed_at'])}) survived; "
          f"{figures['finished']}/{figures['target']} trials finished; "
          f"{figures['trials_lost']} trial(s) lost mid-run and retried "
          f"({figures['seconds_of_work_lost']} s of their work); dead trials cleared "
          f"{figures['seconds_to_clear_each_dead_trial']} s after each restart (heartbeat "
          f"{figures['heartbeat']}); {figures['waiting_lines']} wait(s) for running trials; "
          f"{figures['wall_seconds']} s in all")

