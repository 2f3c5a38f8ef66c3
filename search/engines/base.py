"""What every engine shares: the flow around its own loop (`Engine.run`), the summary of the
best trial, the resume hint, a failed trial's one-line reason, and freeing a finished trial's
graphs. Engines subclass `Engine`; see `search.engines` for the list.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field

from search.settings import mask

ENGINES = ("optuna", "keras-tuner")
TUNERS = ("hyperband", "bayesian", "random")  # keras-tuner oracles


@dataclass
class Outcome:
    """How a search loop ended: trials this process ran, finished trials in the study, and
    why it stopped before the target (None when it reached it)."""

    ran: int
    finished: int
    stopped: str | None = None


@dataclass
class Best:
    """The best trial as the summary shows it, whichever engine ran it."""

    number: int
    value: float
    objective: str
    heads: dict[str, dict[str, float]] = field(default_factory=dict)  # accuracy, ... per head
    weights: str | None = None  # what a pretrained trial's weights resolved to


class Engine:
    """The shared flow (`run`) around an engine's own loop (`search`)."""

    name = ""

    def __init__(self, session):
        self.session = session

    # --- what each engine provides --------------------------------------------------------
    def open(self) -> None:
        """Create or resume this engine's state for the session's study."""
        raise NotImplementedError

    def where(self) -> str:
        """Where the study lives, for the start-up line."""
        raise NotImplementedError

    def finished(self) -> int:
        raise NotImplementedError

    def best(self) -> Best | None:
        raise NotImplementedError

    def tracking_params(self) -> dict:
        """Extra parameters for the study's MLflow parent run."""
        return {}

    def start_tracking(self) -> None:
        """Find or create the study's MLflow parent run (before any worker starts)."""
        self.session.open_tracking(create=True, params=self.tracking_params())

    def search(self) -> Outcome:
        """Run trials until the study holds the target number of finished trials."""
        raise NotImplementedError

    def notes(self) -> list[str]:
        """Lines printed after the start-up line (e.g. why pruning is off)."""
        return []

    def next_steps(self) -> str:
        return ""

    # --- the shared flow ------------------------------------------------------------------
    def run(self) -> int:
        """Open or resume, search to --trials finished trials, summarise; the exit code."""
        opts = self.session.options
        self.open()
        done = self.finished()
        print(f"{self.where()}: {done} finished trial(s), target {opts.trials}; "
              f"{self.session.describe()}", flush=True)
        for line in self.notes():
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
                tracking.parent_run_id, {"best_value": top.value} if top else None)
        if outcome.stopped:
            print(f"stopped: {outcome.stopped}", file=sys.stderr)
        self.summary()
        return 1 if outcome.stopped and outcome.finished == 0 else 0

    def summary(self) -> None:
        """The best trial's per-head table, then what to do next."""
        top = self.best()
        if top is None:
            print("no completed trial yet")
            return
        weights = f" [weights: {top.weights}]" if top.weights else ""
        print(f"best trial #{top.number}: {top.objective} = {top.value:.4f}{weights}")
        columns = [c for c in ("accuracy", "balanced_accuracy", "majority")
                   if any(c in s for s in top.heads.values())]
        titles = {"accuracy": "accuracy", "balanced_accuracy": "balanced",
                  "majority": "majority"}
        print(f"  {'head':<14}" + "".join(f"{titles[c]:>9}" for c in columns))
        for head, s in top.heads.items():
            print(f"  {head:<14}" + "".join(f"{s.get(c, float('nan')):>9.3f}" for c in columns))
        if self.next_steps():
            print(self.next_steps())


def resume_hint(opts) -> str:
    """This command line (passwords masked) when it is one; else a description of it."""
    args = sys.argv[1:]
    if args[:1] == ["run"]:
        return "search " + shlex.join(mask(a) for a in args)
    return f"the same `search run` command (study {opts.study!r}, --trials {opts.trials})"


def reason(exc: BaseException) -> str:
    """One masked line for a failed trial: what a user reads in the log and the study."""
    from search.workers import TrialProcessError

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
