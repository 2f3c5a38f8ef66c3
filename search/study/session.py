"""A session: what one search is about, resolved and validated once, before anything is written.

`Options` is what the user asked for (flags); `Session.build` turns them into the space with its
pins, the validated annotation table, the seeded train/validation(/test) split and the study's
identity (fingerprints of space, data and split, which a resumed study must match). Every
engine, worker, `search train` and `search lr-find` start from a Session; a trial reads its
data, split and tracking from it. No Optuna study, no TensorFlow here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from search.data import table as data_lib
from search.errors import UsageError
from search.settings import Settings, mask
from search.space import space as space_lib
from search.space.config import OBJECTIVES


@dataclass
class Options:
    """The flags of `search run` / `search worker` (and the subset other commands use)."""

    study: str = "default"
    space: str = "spaces/default.yaml"
    data: str | None = None
    heads: tuple[str, ...] = data_lib.DEFAULT_HEADS
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


@dataclass
class Tracking:
    """The MLflow side of a session: the tracker and the study's parent run."""

    tracker: object  # search.track.tracking.Tracker
    parent_run_id: str


@dataclass
class Runtime:
    """What one process adds to a session: its MLflow tracking, its device choice and its
    in-memory caches. The only mutable part, set by the session's own methods
    (`start_tracking` / `join_tracking`, `use_device`) and by the caches' owner."""

    tracking: Tracking | None = None
    device: object | None = None  # search.train.device.DeviceChoice of this process
    caches: dict = field(default_factory=dict)  # e.g. cached features in memory (training)


@dataclass(frozen=True)
class Session:
    """Everything the trials of one study share, frozen once built (`build`); a variant is a
    copy (`with_train_rows`). The process's tracking, device and caches live in `runtime`,
    shared by such copies."""

    settings: Settings
    options: Options
    space: space_lib.Space
    csv: Path
    table: data_lib.Table
    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    log_models: bool = True
    notes: tuple[str, ...] = ()  # said once when a search starts
    fingerprint: str = ""  # of the space as declared (before weights were checked)
    runtime: Runtime = field(default_factory=Runtime)

    @property
    def tracking(self) -> Tracking | None:
        return self.runtime.tracking

    @property
    def device(self):
        return self.runtime.device

    @property
    def caches(self) -> dict:
        return self.runtime.caches

    @classmethod
    def build(cls, settings: Settings, options: Options) -> "Session":
        """Load and check space, flags and data; raises UsageError before writing anything."""
        space = space_lib.load(options.space)
        if not options.baselines:
            space = dataclasses.replace(space, enqueue=())
        if options.objective:
            if options.objective not in OBJECTIVES:
                raise UsageError(f"--objective must be one of "
                                 f"{', '.join(OBJECTIVES)}")
            space = dataclasses.replace(space, objective=options.objective,
                                        source={**space.source, "objective": options.objective})
        space = space.pin(**(options.pins or {}))
        if space.objectives and options.isolate:
            raise UsageError("--isolate does not support multi-objective spaces yet; "
                             "drop --isolate or the space's `objectives`")
        if space.objectives and options.until_converged is not None:
            raise UsageError("--until-converged needs a single objective (it compares the best "
                             "value's gain with its validation noise); this space has "
                             "`objectives`: drop one or the other")
        fingerprint = space.fingerprint()
        space, notes = without_missing_weights(space)
        return cls.on_data(settings, options, space, notes=tuple(notes), fingerprint=fingerprint)

    @classmethod
    def on_data(cls, settings: Settings, options: Options, space: space_lib.Space, *,
                notes: tuple[str, ...] = (), fingerprint: str = "",
                log_models: bool = True) -> "Session":
        """A session for a given space: read and check the data, split it."""
        csv = resolve_data(settings, options.data)
        table = data_lib.read_table(csv, options.heads, on_bad_images=options.on_bad_images)
        check_objectives(space, table.heads)
        check_pruner_heads(space, table.heads)
        strata = None
        if options.stratify:
            if options.stratify not in table.heads:
                raise UsageError(f"--stratify {options.stratify!r} is not one of the heads "
                                 f"{', '.join(table.heads)}")
            strata = table.frame[options.stratify].to_numpy()
        rows = np.arange(len(table))
        test_rows = np.zeros(0, np.int64)
        if options.test_fraction is not None:
            if not 0 < options.test_fraction <= 0.5:
                raise UsageError(f"--test-fraction must be in (0, 0.5], got "
                                 f"{options.test_fraction:g}")
            rest, test = data_lib.split(len(table), val_fraction=options.test_fraction,
                                        seed=options.seed + TEST_SEED, strata=strata)
            rows, test_rows = rows[rest], rows[test]
            strata = None if strata is None else strata[rest]
        train, val = data_lib.split(len(rows), val_fraction=options.val_fraction,
                                    seed=options.seed, strata=strata)
        train_rows, val_rows = rows[train], rows[val]
        if len(test_rows):
            check_classes(table, train_rows)
        return cls(settings=settings, options=options, space=space, csv=csv, table=table,
                   train_rows=train_rows, val_rows=val_rows, test_rows=test_rows,
                   log_models=log_models, notes=notes, fingerprint=fingerprint)

    @property
    def study(self) -> str:
        return self.options.study

    @property
    def objective_key(self) -> str:
        """The per-epoch log key a trial is ranked and pruned by."""
        return f"val_{self.space.objective}"

    def identity(self) -> dict:
        """What a resumed study must match: space, data, split and heads."""
        opts = self.options
        split = f"{opts.val_fraction}:{opts.seed}:{opts.stratify or 'plain'}"
        if opts.test_fraction is not None:
            split += f":test={opts.test_fraction}"
        return {"space_fingerprint": self.fingerprint or self.space.fingerprint(),
                "data_fingerprint": self.table.fingerprint(),
                "split": split, "heads": ",".join(self.table.heads)}

    def check_identity(self, stored: dict, what: str) -> None:
        """Refuse to mix setups in one study: `stored` is the identity the study was started
        with (values None when it has none yet)."""
        mine = self.identity()
        differs = [k for k in mine if stored.get(k) is not None and stored.get(k) != mine[k]]
        if differs:
            detail = "; ".join(f"{k}: study has {stored.get(k)!r}, now {mine[k]!r}"
                               for k in differs)
            raise UsageError(f"{what} {self.study!r} was started with a different setup "
                             f"({detail}). Use another --study name, or the same space, data "
                             f"and flags.")

    def seeds(self, config, sampler: int | None = None) -> dict:
        """Every seed a trial of `config` uses here, with the engine's `sampler` seed in this
        process: what an exact replay needs."""
        seeds = {"split": self.options.seed, "trial": config.seed,
                 "weights_init": config.seed, "augmentation": config.seed,
                 "shuffle": config.seed, "views": "from the feature cache's key"}
        if len(self.test_rows):
            seeds["test_split"] = self.options.seed + TEST_SEED
        if sampler is not None:
            seeds["sampler"] = sampler
        return seeds

    def with_train_rows(self, rows: np.ndarray) -> "Session":
        """This session training on `rows` instead (a refit on train + validation rows): a
        copy, so the caller's session keeps its split; its runtime (tracking, caches) is shared."""
        return dataclasses.replace(self, train_rows=rows)

    def describe(self) -> str:
        """'data X (N train / M validation images, heads: ...)' for the start-up line."""
        test = f" / {len(self.test_rows)} test" if len(self.test_rows) else ""
        return (f"data {self.csv} ({len(self.train_rows)} train / {len(self.val_rows)} "
                f"validation{test} images, heads: {', '.join(self.table.heads)})")

    def start_tracking(self, params: dict | None = None) -> Tracking:
        """The MLflow tracker and the study's parent run, found or created (the process that
        starts a study does this before any worker starts), with the study's setup and
        `params` logged on it."""
        tracker = self._tracker()
        parent = tracker.study_run(self.study, {
            "space": self.options.space, "data": str(self.csv),
            "storage": self.settings.storage, "objective": self.space.objective,
            "seed": self.options.seed, "sampler": self.space.sampler,
            "pruner": self.space.pruner, **(params or {})})
        self.runtime.tracking = Tracking(tracker, parent)
        return self.tracking

    def join_tracking(self, parent_run_id: str | None) -> Tracking:
        """The MLflow tracker and the parent run the study recorded, which must exist: a
        worker joins a study's run, it never starts one."""
        from mlflow.exceptions import MlflowException

        tracker = self._tracker()
        try:
            tracker.client.get_run(parent_run_id or "none")
        except MlflowException:
            raise UsageError(f"study {self.study!r} has no MLflow parent run {parent_run_id} in "
                             f"{mask(self.settings.tracking_uri)}: pass the --tracking-uri "
                             f"(or MLFLOW_TRACKING_URI) of the `search run` that started "
                             f"it") from None
        self.runtime.tracking = Tracking(tracker, parent_run_id)
        return self.tracking

    def _tracker(self):
        from search.track.tracking import Tracker

        return Tracker(self.settings.tracking_uri, self.study, self.settings.artifact_root)

    def use_device(self):
        """Choose precision and XLA for this process (imports TensorFlow)."""
        from search.train import device

        self.runtime.device = device.choose(self.options.precision, self.options.xla)
        return self.device


METRICS = ("mean_accuracy", "mean_balanced_accuracy", "params", "train_seconds")
TEST_SEED = 7919  # the test split's seed is --seed plus this: independent of the validation's


def check_classes(table: data_lib.Table, train_rows: np.ndarray) -> None:
    """With rows held back for testing, every class must still be in the training rows."""
    missing = [(h, label) for h, labels in table.vocab.items() for label in labels
               if not (table.frame[h].iloc[train_rows] == label).any()]
    if missing:
        shown = ", ".join(f"{h}={label!r}" for h, label in missing[:5])
        raise UsageError(f"--test-fraction leaves no training row with {shown}; lower "
                         f"--test-fraction, change --seed, or use --stratify on that head")


def check_objectives(space: space_lib.Space, heads) -> None:
    """A multi-objective space may only name metrics a trial reports, or heads of the data:
    checked before any trial trains, not after the first one."""
    unknown = [name for name, _ in space.objectives if name not in METRICS and name not in heads]
    if unknown:
        raise UsageError(f"{space.name}: objectives names {', '.join(map(repr, unknown))}, which "
                         f"is neither a metric ({', '.join(METRICS)}) nor a head of the data "
                         f"({', '.join(heads)})")


def check_pruner_heads(space: space_lib.Space, heads) -> None:
    """`pruner: {name: heads, heads: [...]}` may only name heads of the data."""
    watched = space.pruner.get("heads") if space.pruner["name"] == "heads" else None
    unknown = [h for h in watched or () if h not in heads]
    if unknown:
        raise UsageError(f"{space.name}: pruner heads names {', '.join(map(repr, unknown))}, "
                         f"which {'is not a head' if len(unknown) == 1 else 'are not heads'} "
                         f"of the data ({', '.join(heads)})")


def without_missing_weights(space: space_lib.Space) -> tuple[space_lib.Space, list[str]]:
    """The space without what can only fail or mislead here for want of ImageNet weights
    (no local file, no download): baselines that need them are dropped, and a sampled choice
    of pretrained backbones under `weights: auto` (which would train them from random
    weights) is pinned to the from-scratch net. Each with one line saying why."""
    from search.model import weights

    notes = []
    how = ("put the Keras *_no_top.h5 files in a folder named by SEARCH_WEIGHTS_DIR "
           "(or connect to the internet)")
    kept = []
    for entry in space.enqueue:
        config = entry["config"]
        if config.get("backbone") == "pretrained" and config.get("weights") in (
                "imagenet", "auto") and not weights.available(config["family"],
                                                              config.get("alpha", 0.35)):
            notes.append(f"skipped baseline {entry['name']}: no ImageNet weights for "
                         f"{config['family']} here; {how}")
        else:
            kept.append(entry)
    space = dataclasses.replace(space, enqueue=tuple(kept))
    space, note = _without_missing_nets(space, how)
    notes += note
    params = {p.name: p for p in space.params}
    backbone, chosen = params.get("backbone"), params.get("weights")
    if backbone is None or backbone.distribution is None or chosen is None \
            or chosen.value != "auto":
        return space, notes
    options = {name: (p.distribution.choices if p.distribution is not None else [p.value])
               for name, p in params.items() if name in ("family", "alpha")}
    families = options.get("family", ["mobilenet_v2"])
    pairs = [(f, a) for f in families for a in options.get("alpha", [0.35])]
    if "family_alpha" in params:
        from search.space.param import family_alpha

        nets = params["family_alpha"]
        pairs = [family_alpha(c) for c in (nets.distribution.choices if nets.distribution
                                           is not None else [nets.value])]
        families = sorted({f for f, _ in pairs})
    if any(weights.available(f, a) for f, a in pairs):
        return space, notes
    notes.append(f"pretrained backbones left out: no ImageNet weights for "
                 f"{', '.join(families)} here (weights: auto would train them from random "
                 f"weights); {how}")
    return space.pin(backbone="separable"), notes


def _without_missing_nets(space: space_lib.Space, how: str) -> tuple[space_lib.Space, list]:
    """A sampled `family_alpha` without the choices whose ImageNet weights cannot be had
    here (under weights imagenet or auto), with one line naming them: such a trial could
    only fail or train a "pretrained" net from random weights. When no choice has weights,
    the key is left as it is, for the backbone rule below (or the trial's own error)."""
    import optuna.distributions as od

    from search.model import weights
    from search.space.param import Param, family_alpha

    params = {p.name: p for p in space.params}
    nets, chosen = params.get("family_alpha"), params.get("weights")
    if nets is None or nets.distribution is None or (
            chosen is not None and chosen.value not in ("imagenet", "auto")):
        return space, []
    choices = list(nets.distribution.choices)
    kept = [c for c in choices if weights.available(*family_alpha(c))]
    if not kept or kept == choices:
        return space, []
    missing = [c for c in choices if c not in kept]
    narrowed = (Param(name=nets.name, value=kept[0], when=nets.when) if len(kept) == 1 else
                Param(name=nets.name, distribution=od.CategoricalDistribution(kept),
                      when=nets.when))
    space = dataclasses.replace(space, params=tuple(
        narrowed if p.name == nets.name else p for p in space.params))
    return space, [f"family_alpha choice(s) {', '.join(missing)} left out: no ImageNet "
                   f"weights for them here; {how}"]


def resolve_data(settings: Settings, path: str | None) -> Path:
    """The CSV to use: --data, or the embedded synthetic dataset (generated on first use)."""
    if path:
        return Path(path)
    from search.data import synthetic

    settings.ensure()
    return synthetic.ensure_default(settings.runs_dir)
