"""What every engine is and shares: `Engine`, what the search loop (`search.engines.loop`)
asks of one; how a trial and a search ended; model retention; the resume hint; a failed
trial's one-line reason; freeing a finished trial's graphs.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass

from search.settings import mask
from search.study import edges as edges_lib
from search.study.trial_record import TrialRecord
from search.study.workers import Interrupts

ENGINES = ("optuna", "keras-tuner")
TUNERS = ("hyperband", "bayesian", "random")  # keras-tuner oracles


# Why a search stopped before its target (Outcome.why), and what each means for the exit code.
FAILED = "failed"  # trials kept failing, or a worker died: exit 1
TIMEOUT = "timeout"  # --timeout reached: a wall-clock budget is a target too, exit 0
CONVERGED = "converged"  # --until-converged: further trials are unlikely to matter, exit 0
EXHAUSTED = "exhausted"  # the engine has no new trial to propose (a finite space), exit 0


@dataclass(frozen=True)
class Ended:
    """How one trial ended, for the loop's failure count: surplus (it claimed no slot, was
    not trained, and is no failure), or failed with a reason."""

    failed: bool = False
    surplus: bool = False
    exhausted: bool = False  # nothing was proposed: the engine has no new trial (reason: why)
    reason: str | None = None


@dataclass
class Outcome:
    """How a search loop ended: finished trials in the study, and why it stopped before the
    target (None when it reached it), of which kind (`why`)."""

    finished: int
    stopped: str | None = None
    why: str = FAILED

    @property
    def code(self) -> int:
        """The exit code: 0 target reached, timeout or converged; 1 stopped early."""
        return 1 if self.stopped and self.why == FAILED else 0


class Engine:
    """What the search loop (`search.engines.loop`) asks of an engine, in the spirit of a
    keras-tuner oracle: its study, one trial when asked (`trial`: proposed, trained, told),
    and what to say about them. The defaults are those of an engine that runs in one process
    (no other workers to wait for or to clean up after)."""

    name = ""

    def __init__(self, session):
        self.session = session
        self.dropped: set[str] = set()  # run ids whose models `drop_models` deleted
        self.pool = None  # the workers of --workers, --gpus, --ray (search.study.workers)
        self.elsewhere = None  # --isolate: trains (trial id, config) in a fresh process
        self.interrupts = Interrupts()  # Ctrl-C between trials, once a worker installs it

    # --- the study ------------------------------------------------------------------------
    def open(self) -> None:
        """Create or resume this engine's state for the session's study."""
        raise NotImplementedError

    def where(self) -> str:
        """Where the study lives, for the start-up line."""
        raise NotImplementedError

    def finished(self) -> int:
        raise NotImplementedError

    def best(self) -> TrialRecord | None:
        """The best trial, whichever engine ran it (None before any completed)."""
        raise NotImplementedError

    def objective_name(self) -> str:
        """The name of what `best().score` is."""
        return self.session.space.objective

    def records(self) -> list[TrialRecord]:
        """The finished, scored trials, for the edge check (none: it says nothing)."""
        return []

    def edges(self) -> list[edges_lib.Edge]:
        """Levers whose best trials sit on the space's edge (search.study.edges)."""
        return edges_lib.find(self.session.space.params, self.records())

    def start_tracking(self) -> None:
        """Find or create the study's MLflow parent run (before any worker starts)."""
        raise NotImplementedError

    # --- the trials -----------------------------------------------------------------------
    def trial(self, bar) -> Ended:
        """Propose, train and record one trial; `bar` (tqdm) takes its line."""
        raise NotImplementedError

    def running(self) -> int:
        """Trials other workers are training now."""
        return 0

    def fail_dead(self, write) -> None:
        """Fail the trials of workers that died (their lines to `write`)."""

    def close_orphans(self) -> None:
        """Close the MLflow runs that dead workers left open."""

    def waiting_line(self, running: int) -> str:
        return f"waiting for {running} running trial(s)"

    def convergence(self):
        """The --until-converged verdict on the study now."""
        raise NotImplementedError

    # --- what it says ---------------------------------------------------------------------
    def notes(self) -> list[str]:
        """Lines printed after the start-up line (e.g. why pruning is off)."""
        return []

    def summary_notes(self) -> list[str]:
        """Lines printed before the best trial's table."""
        return []

    def next_steps(self) -> str:
        return ""

    def close(self) -> None:
        """Let go of what `open` took beyond the study (e.g. a Ray connection)."""

    def final_model_hint(self) -> str:
        """What to do with the budget a converged search leaves: the final model."""
        return (f"search best --study {self.session.study} --register NAME --refit "
                f"--ensemble 5 (or --register NAME --refit --ensemble 5 on this command)")

    # --- models kept ------------------------------------------------------------------------
    def keep_count(self) -> int | None:
        """How many of the best trials keep their model (None: all)."""
        wanted = self.session.options.keep_models
        if wanted is None:
            return self.session.space.keep_models
        return None if wanted == "all" else int(wanted)

    def drop_models(self, rows: list[TrialRecord]) -> None:
        """Delete the logged models of trials outside the best `keep_count` by objective
        and outside each head's best (so `best-<head>` aliases still have a model)."""
        keep = self.keep_count()
        tracking = self.session.tracking
        if keep is None or tracking is None or len(rows) <= keep:
            return
        ranked = sorted(rows, key=lambda r: r.score, reverse=True)
        kept = {r.run_id for r in ranked[:keep]}
        for head in {h for r in rows for h in r.accuracy}:
            kept.add(max(rows, key=lambda r: r.accuracy.get(head, -1.0)).run_id)
        gone = [r.run_id for r in rows if r.run_id not in kept and r.run_id not in self.dropped]
        self.dropped.update(tracking.tracker.drop_models(gone))


def disk_usage(session) -> str:
    """One line: the study's models and other artifacts on local disk, and the cache."""
    from pathlib import Path
    from urllib.parse import urlparse

    parts = []
    tracking = session.tracking
    if tracking is not None:
        tracker = tracking.tracker
        location = urlparse(tracker.client.get_experiment(tracker.experiment_id)
                            .artifact_location)
        if location.scheme == "file":
            parts.append(f"{_size(Path(location.path))} in {location.path} (models and run "
                         f"files of this study)")
    cache = session.settings.cache_dir
    if cache.is_dir():
        parts.append(f"{_size(cache)} in {cache} (decoded images and cached features, "
                     f"shared by studies; safe to delete)")
    return ("disk: " + "; ".join(parts)) if parts else ""


def _size(folder) -> str:
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return f"{total / 2**20:,.0f} MB" if total >= 2**20 else f"{total / 2**10:,.0f} kB"


def resume_hint(opts) -> str:
    """This command line (passwords masked) when it is one; else a description of it."""
    args = sys.argv[1:]
    if args[:1] == ["run"]:
        return "search " + shlex.join(mask(a) for a in args)
    return f"the same `search run` command (study {opts.study!r}, --trials {opts.trials})"


def reason(exc: BaseException) -> str:
    """One masked line for a failed trial: what a user reads in the log and the study."""
    from search.study.workers import TrialProcessError

    text = str(exc) if isinstance(exc, TrialProcessError) else f"{type(exc).__name__}: {exc}"
    return mask(" ".join(text.split()))[:2000]


def free_trial_graphs() -> None:
    """Let a finished trial's TensorFlow graphs go. TensorFlow keeps every graph-mode
    `custom_gradient` in a global registry for ever (Keras' optimizer all-reduces gradients
    through one), and each entry pins the whole traced train step: about 35 MB per trial with
    8 heads (tensorflow/tensorflow#80895). Nothing traced by the finished trial runs again, so
    its entries can go; clearing the Keras session then frees the graphs. The registry is
    private: if a TensorFlow release drops it, say so once (memory then grows per trial)."""
    import keras

    from search import backend

    if not backend.is_tensorflow():  # nothing of the kind elsewhere
        keras.backend.clear_session()
        return
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if registry is None:
        _warn_once("TensorFlow's gradient registry is gone (private API); finished trials' "
                   "graphs stay in memory, about 35 MB per trial: use --isolate for long runs")
    else:
        for name in [n for n in registry if n.startswith("CustomGradient-")]:
            del registry[name]
    keras.backend.clear_session()  # and gc.collect()


_WARNED: set[str] = set()


def _warn_once(text: str) -> None:
    if text not in _WARNED:
        _WARNED.add(text)
        print(f"warning: {text}", file=sys.stderr)
