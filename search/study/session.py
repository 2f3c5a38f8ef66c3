"""A session: what one search is about, resolved and validated once, before anything is written.

`Options` is what the user asked for (flags); `Session.build` turns them into the space with its
pins (less what cannot run here for want of weight files: search.model.missing_weights), the
validated annotation table, the seeded split (search.data.split) and the study's identity
(fingerprints of space, data and split, which a resumed study must match). Every engine,
worker, `search train` and `search lr-find` start from a Session; a trial reads its data,
split, tracking (search.track.study_run) and device (search.train.device) from it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from search.data import table as data_lib
from search.errors import UsageError
from search.model.missing_weights import without_missing_weights
from search.settings import Settings
from search.space import objectives
from search.space import space as space_lib
from search.space.config import OBJECTIVES
from search.study.options import Options
from search.track import study_run
from search.track.study_run import Tracking


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
        objectives.check(space, table.heads)
        train_rows, val_rows, test_rows = options.split.rows(table)
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
        return {"space_fingerprint": self.fingerprint or self.space.fingerprint(),
                "data_fingerprint": self.table.fingerprint(),
                "split": self.options.split.identity, "heads": ",".join(self.table.heads)}

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
        seeds = {**self.options.split.seeds, "trial": config.seed,
                 "weights_init": config.seed, "augmentation": config.seed,
                 "shuffle": config.seed, "views": "from the feature cache's key"}
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
        """The study's MLflow parent run, found or created, with the study's setup and
        `params` logged on it (search.track.study_run.start)."""
        self.runtime.tracking = study_run.start(self.settings, self.study, {
            "space": self.options.space, "data": str(self.csv),
            "storage": self.settings.storage, "objective": self.space.objective,
            "seed": self.options.seed, "sampler": self.space.sampler,
            "pruner": self.space.pruner, **(params or {})})
        return self.tracking

    def join_tracking(self, parent_run_id: str | None) -> Tracking:
        """The parent run the study recorded, which must exist (a worker joins a study's
        run, it never starts one)."""
        self.runtime.tracking = study_run.join(self.settings, self.study, parent_run_id)
        return self.tracking

    def use_device(self):
        """Choose precision and XLA for this process (imports TensorFlow)."""
        from search.train import device

        self.runtime.device = device.choose(self.options.precision, self.options.xla)
        return self.device


def resolve_data(settings: Settings, path: str | None) -> Path:
    """The CSV to use: --data, or the embedded synthetic dataset (generated on first use)."""
    if path:
        return Path(path)
    from search.data import synthetic

    settings.ensure()
    return synthetic.ensure_default(settings.runs_dir)
