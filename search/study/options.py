"""The options of a search: what the user asked for (the flags of `search run` and `search
worker`, and the subset other commands use), with every default in one place. The parser
(search.commands.options) takes its defaults from `DEFAULTS`; `Session.build` turns the
options into a session. Light on purpose: `search --help` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from search.data import DEFAULT_HEADS

# --until-converged's default: complete trials before its rule may fire (search.study.convergence;
# Optuna's Terminator default)
MIN_TRIALS = 20


@dataclass
class Options:
    """The flags of `search run` / `search worker` (and the subset other commands use)."""

    study: str = "default"
    space: str = "spaces/default.yaml"
    data: str | None = None
    heads: tuple[str, ...] = DEFAULT_HEADS
    trials: int = 10
    timeout: float | None = None
    seed: int = 0
    val_fraction: float = 0.2
    stratify: str | None = None
    objective: str | None = None
    pins: dict | None = None
    baselines: bool = True
    precision: str = "auto"
    xla: str = "auto"
    verbose: int = 0
    max_failures: int = 5
    progress: bool = True
    on_bad_images: str = "error"
    workers: int = 1  # local worker processes (search.study.workers)
    gpus: str | None = None  # "0,1" or "all": one worker per GPU
    ray: str | None = None  # --ray: "local" (start one), "auto", "HOST:6379", "ray://HOST:10001"
    gpus_per_trial: float | None = None  # --gpus-per-trial: each Ray worker's GPUs (0.5: two/GPU)
    cpus_per_trial: float = 1.0  # --cpus-per-trial: each Ray worker's CPUs
    isolate: bool = False  # each trial in a fresh process
    test_fraction: float | None = None  # rows held back from every trial (--test-fraction)
    keep_models: int | str | None = None  # overrides the space's keep_models
    until_converged: int | None = None  # min complete trials before search.study.convergence stops
    warm_start: tuple[str, ...] = ()  # earlier studies whose best configs run first
    warm_start_top: int = 5  # how many of their best distinct configs (--warm-start-top)

    @property
    def split(self):
        """The split these flags ask for (search.data.split.Split)."""
        from search.data.split import Split

        return Split(self.val_fraction, self.seed, self.stratify, self.test_fraction)


DEFAULTS = Options()
