"""The flags several verbs share, and how they become `Settings` and `Options`.

One home for each group, so `run`, `worker` and `lr-find` describe a study with the same
words and read it the same way. Nothing heavy is imported at the top (see search.commands.base).
"""

from __future__ import annotations

import argparse
import os

from search.errors import UsageError
from search.formats import FORMAT_HELP, FORMATS
from search.space.config import BACKBONES, FAMILIES, OBJECTIVES
from search.study.options import DEFAULTS, MIN_TRIALS, Options

MODEL_HELP = "models:/NAME@ALIAS or a pulled folder"
RUNS_DIR_HELP = "local state folder (default: ./runs or $SEARCH_RUNS_DIR)"
HEADS_HELP = "comma-separated label columns (default: the 8 attributes)"


def state_options(p: argparse.ArgumentParser) -> None:
    """Where the state lives: every verb that reads a study, a run or a model."""
    g = p.add_argument_group("state")
    g.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    g.add_argument("--storage", help="Optuna storage URL (default: sqlite in runs/, or "
                                     "$SEARCH_STORAGE); e.g. postgresql+psycopg2://u:p@host/db")
    g.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite in runs/, or "
                                          "$MLFLOW_TRACKING_URI)")


def settings(args):
    """The state flags resolved against the environment (search.settings)."""
    from search.settings import Settings

    return Settings.resolve(args.runs_dir, args.storage, args.tracking_uri)


def format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="table", help=FORMAT_HELP)


def study_option(p: argparse.ArgumentParser) -> None:
    """--study for the verbs that read one study."""
    p.add_argument("--study", default=DEFAULTS.study)


def model_option(p: argparse.ArgumentParser) -> None:
    """--model for the verbs that load one model."""
    p.add_argument("--model", required=True, help=MODEL_HELP)


def server_options(p: argparse.ArgumentParser, port: int) -> None:
    """--host and --port of a web UI started on the state."""
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    p.add_argument("--port", type=int, default=port)


def search_options(p: argparse.ArgumentParser) -> None:
    """What a study is about: its name, space, data and split, and pinned space values."""
    p.add_argument("--study", default=DEFAULTS.study, help="study name (default: %(default)s)")
    p.add_argument("--space", default=default_space(), help="search space YAML "
                   "(default: spaces/default.yaml)")
    p.add_argument("--data", help="annotation CSV with image_path and one column per head "
                                  "(default: a synthetic dataset generated into runs/)")
    p.add_argument("--heads", help=HEADS_HELP)
    p.add_argument("--seed", type=int, default=DEFAULTS.seed,
                   help="seeds the train/validation split; the sampler's seed is derived from "
                        "it, the study name and the trials the study holds, so a resumed "
                        "study continues its draws and two studies do not share them, while "
                        "the same command on the same study state draws the same trials "
                        "(default: %(default)s)")
    p.add_argument("--val-fraction", type=float, default=DEFAULTS.val_fraction,
                   help="validation share of the rows (default: %(default)s)")
    p.add_argument("--stratify", help="head to stratify the split on (default: plain seeded "
                                      "random split)")
    p.add_argument("--on-bad-images", choices=["error", "skip"], default=DEFAULTS.on_bad_images,
                   help="missing, empty or corrupt image files: stop with a list (default), or "
                        "skip those rows and say how many")
    g = p.add_argument_group("pin a space value (overrides the YAML)")
    g.add_argument("--image-size", type=int, help="square input size in px")
    g.add_argument("--epochs", type=int)
    g.add_argument("--backbone", choices=BACKBONES)
    g.add_argument("--family", choices=FAMILIES, help="pretrained family")
    g.add_argument("--weights", help="imagenet | none | path to a *_no_top.h5 file")
    g.add_argument("--batch-size", type=int)


def default_space() -> str:
    """spaces/default.yaml in the current folder (a project's own), else the one shipped with
    the package (also in a wheel install, where no spaces/ folder is next to the source)."""
    here = os.path.join(os.getcwd(), "spaces", "default.yaml")
    if os.path.isfile(here):
        return here
    from search.space.space import bundled

    return str(bundled())


def trial_options(p: argparse.ArgumentParser) -> None:
    """The flags `run` and `worker` share: how many trials, and how each one runs."""
    p.add_argument("--trials", type=int, default=DEFAULTS.trials,
                   help="finished trials the study should hold, over all workers "
                        "(default: %(default)s)")
    p.add_argument("--timeout", type=float, help="stop starting new trials after S seconds")
    p.add_argument("--objective", choices=OBJECTIVES,
                   help="override the space's objective")
    p.add_argument("--no-baselines", action="store_true",
                   help="do not enqueue the space's baseline configs first")
    p.add_argument("--precision", default=DEFAULTS.precision,
                   choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"])
    p.add_argument("--xla", default=DEFAULTS.xla, choices=["auto", "on", "off"])
    p.add_argument("--max-failures", type=int, default=DEFAULTS.max_failures,
                   help="stop after this many failed trials in a row (default: %(default)s)")
    p.add_argument("--keras-progress", action="store_true", help="show Keras progress per epoch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--test-fraction", type=float, metavar="F",
                   help="hold back a seeded share F in (0, 0.5] of the rows that no trial trains "
                        "or validates on; the champion's accuracy there is reported beside "
                        "its validation figure (default: none)")
    p.add_argument("--keep-models", metavar="K|all",
                   help="keep the models of the K best trials (and of each head's best), "
                        "delete the others' (default: the space's keep_models, else all)")
    p.add_argument("--isolate", action="store_true",
                   help="train each trial in a fresh process (frees all its memory, GPU "
                        "included; costs a TensorFlow start per trial)")
    p.add_argument("--until-converged", type=int, nargs="?", const=MIN_TRIALS,
                   metavar="MIN_TRIALS",
                   help="stop starting trials once the best value has risen by no more than "
                        "its validation noise over the last MIN_TRIALS/2 complete trials, "
                        "after at least MIN_TRIALS of them (default: %(const)s); the remaining "
                        "--trials budget is left for the final model (search best --refit "
                        "--ensemble K; search run also takes --register NAME --refit --ensemble "
                        "K). Exit code 0. Optuna, single objective only")


def final_options(p: argparse.ArgumentParser) -> None:
    """The final-model flags (search.final.candidates), shared by the commands that build one."""
    g = p.add_argument_group("final model (candidates compared on the held-out rows; the best "
                             "gets alias 'champion')")
    g.add_argument("--refit", action="store_true",
                   help="also retrain the best trial's config on the train + validation rows "
                        "for its best number of epochs per stage (the --test-fraction rows "
                        "stay held out); alias 'refit'")
    g.add_argument("--ensemble", type=int, metavar="K",
                   help="also build the mean of the K best kept models' probabilities (alias "
                        "'ensemble') and a per-head ensemble, each head from the kept trial "
                        "best at it (alias 'per-head'); K of 2 or more, at most the kept models")


def run_options(args, **extra):
    """`Options` for the verbs that run trials (search_options + trial_options), checked."""
    if args.trials < 1:
        raise UsageError("--trials must be at least 1")
    if args.until_converged is not None and args.until_converged < 2:
        raise UsageError(f"--until-converged MIN_TRIALS must be at least 2, got "
                         f"{args.until_converged}")
    return options(args, trials=args.trials, timeout=args.timeout,
                   until_converged=args.until_converged,
                   objective=args.objective, baselines=not args.no_baselines,
                   precision=args.precision, xla=args.xla, verbose=1 if args.keras_progress
                   else 0, max_failures=args.max_failures, progress=not args.no_progress,
                   isolate=args.isolate, test_fraction=args.test_fraction,
                   keep_models=keep_models(args.keep_models), **extra)


def keep_models(text: str | None):
    if text is None or text == "all":
        return text
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--keep-models must be a whole number >= 1 or 'all', got {text!r}")
    return int(text)


def warm_start(studies: str | None, top: int | None) -> dict:
    """--warm-start and --warm-start-top as Options fields, checked."""
    if studies is None:
        if top is not None:
            raise UsageError("--warm-start-top N sets how many configs --warm-start queues: "
                             "add --warm-start STUDY, or drop it")
        return {}
    names = tuple(dict.fromkeys(n.strip() for n in studies.split(",")))
    if not all(names):
        raise UsageError(f"--warm-start takes study names separated by commas, got "
                         f"{studies!r}")
    if top is not None and top < 1:
        raise UsageError(f"--warm-start-top must be at least 1, got {top}")
    return {"warm_start": names, "warm_start_top": DEFAULTS.warm_start_top if top is None else top}


def heads(args) -> tuple[str, ...]:
    """--heads as a tuple of column names (default: the 8 attributes)."""
    return tuple(h.strip() for h in args.heads.split(",")) if args.heads else DEFAULTS.heads


def options(args, **extra):
    """`Options` (search.study.options) from search_options; `extra` adds the verb's own fields."""
    pins = {"image_size": args.image_size, "epochs": args.epochs, "backbone": args.backbone,
            "family": args.family, "weights": args.weights, "batch_size": args.batch_size}
    return Options(study=args.study, space=args.space, data=args.data, heads=heads(args),
                   seed=args.seed, val_fraction=args.val_fraction, stratify=args.stratify,
                   on_bad_images=args.on_bad_images, pins=pins, **extra)
