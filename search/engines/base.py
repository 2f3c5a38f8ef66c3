"""What every engine shares: the flow around its own loop (`Engine.run`), the summary of the
best trial, the resume hint, a failed trial's one-line reason, and freeing a finished trial's
graphs. Engines subclass `Engine`; see `search.engines` for the list.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass

from search.formats import head_lines
from search.settings import mask
from search.study import edges as edges_lib
from search.study.trial_record import TrialRecord

ENGINES = ("optuna", "keras-tuner")
TUNERS = ("hyperband", "bayesian", "random")  # keras-tuner oracles


# Why a search stopped before its target (Outcome.why), and what each means for the exit code.
FAILED = "failed"  # trials kept failing, or a worker died: exit 1
TIMEOUT = "timeout"  # --timeout reached: a wall-clock budget is a target too, exit 0
CONVERGED = "converged"  # --until-converged: further trials are unlikely to matter, exit 0


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
    """The shared flow (`run`) around an engine's own loop (`search`)."""

    name = ""

    def __init__(self, session):
        self.session = session
        self.dropped: set[str] = set()  # run ids whose models `drop_models` deleted

    # --- what each engine provides --------------------------------------------------------
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

    def tracking_params(self) -> dict:
        """Extra parameters for the study's MLflow parent run."""
        return {}

    def start_tracking(self) -> None:
        """Find or create the study's MLflow parent run (before any worker starts)."""
        self.session.start_tracking(self.tracking_params())

    def search(self) -> Outcome:
        """Run trials until the study holds the target number of finished trials."""
        raise NotImplementedError

    def notes(self) -> list[str]:
        """Lines printed after the start-up line (e.g. why pruning is off)."""
        return []

    def next_steps(self) -> str:
        return ""

    def close(self) -> None:
        """Let go of what `open` took beyond the study (e.g. a Ray connection)."""

    def final_model_hint(self) -> str:
        """What to do with the budget a converged search leaves: the final model."""
        return (f"search best --study {self.session.study} --register NAME --refit "
                f"--ensemble 5 (or --register NAME --refit --ensemble 5 on this command)")

    # --- the shared flow ------------------------------------------------------------------
    def run(self) -> int:
        """Open or resume, search to --trials finished trials, summarise; the exit code."""
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> int:
        opts = self.session.options
        self.open()
        done = self.finished()
        print(f"{self.where()}: {done} finished trial(s), target {opts.trials}; "
              f"{self.session.describe()}", flush=True)
        for line in [*self.session.notes, *self.notes()]:
            print(line, flush=True)
        if done >= opts.trials:
            print(f"nothing to do: the study already has {done} finished trials "
                  f"(raise --trials to search further)")
            self.summary()
            return 0
        self.start_tracking()
        outcome = None
        try:
            outcome = self.search()
        except KeyboardInterrupt:
            print(f"\ninterrupted: running trials are marked FAIL and the study is saved "
                  f"({self.finished()} finished). Resume with: {resume_hint(opts)}",
                  file=sys.stderr)
            return 130
        finally:
            top = self.best()
            tracking = self.session.tracking
            tracking.tracker.finish_study_run(
                tracking.parent_run_id, {"best_value": top.score} if top else None)
        if outcome.stopped and outcome.why != CONVERGED:
            print(f"stopped: {outcome.stopped}", file=sys.stderr)
        self.summary()
        if outcome.why == CONVERGED and outcome.stopped:
            print(f"{outcome.stopped}; {opts.trials - outcome.finished} of --trials "
                  f"{opts.trials} left for the final model: {self.final_model_hint()}")
        return outcome.code

    def summary(self) -> None:
        """The best trial's per-head table, then what to do next."""
        top = self.best()
        if top is None:
            print("no completed trial yet")
            return
        weights = f" [weights: {top.weights_note}]" if top.weights_note else ""
        print(f"best trial #{top.number}: {self.objective_name()} = {top.score:.4f}{weights}")
        heads = top.heads
        columns = [c for c in ("accuracy", "balanced_accuracy", "majority")
                   if any(c in s for s in heads.values())]
        titles = {"accuracy": "accuracy", "balanced_accuracy": "balanced",
                  "majority": "majority"}
        test = top.test or {}
        rows = {head: [f"{s.get(c, float('nan')):.3f}" for c in columns]
                for head, s in heads.items()}
        print("\n".join(head_lines([(titles[c], 9) for c in columns], rows, test)))
        if test:
            print(f"  test rows: {top.test_rows}, mean test accuracy "
                  f"{top.test_mean:.4f} (held back from every trial: an honest figure for this "
                  f"champion)")
        for line in edges_lib.lines(self.edges()):
            print(line)
        disk = disk_usage(self.session)
        if disk:
            print(disk)
        if self.next_steps():
            print(self.next_steps())

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
