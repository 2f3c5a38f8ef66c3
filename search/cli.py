"""`search`: the command line. A table of commands, one function each.

Importing this module must not import TensorFlow (so `--help` and user errors answer fast):
every command imports what it needs inside its function. User mistakes raise `UsageError`,
caught in `main`: one line on stderr, exit code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from search import __version__
from search.errors import UsageError

EPILOG = "Environment: SEARCH_RUNS_DIR, SEARCH_STORAGE, MLFLOW_TRACKING_URI, SEARCH_WEIGHTS_DIR."


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("state")
    g.add_argument("--runs-dir", help="local state folder (default: ./runs or $SEARCH_RUNS_DIR)")
    g.add_argument("--storage", help="Optuna storage URL (default: sqlite in runs/, or "
                                     "$SEARCH_STORAGE); e.g. postgresql+psycopg2://u:p@host/db")
    g.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite in runs/, or "
                                          "$MLFLOW_TRACKING_URI)")


def _settings(args):
    from search.settings import Settings

    return Settings.resolve(args.runs_dir, args.storage, args.tracking_uri)


def _search_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", default="default", help="study name (default: %(default)s)")
    p.add_argument("--space", default=_default_space(), help="search space YAML "
                   "(default: spaces/default.yaml)")
    p.add_argument("--data", help="annotation CSV with image_path and one column per head "
                                  "(default: a synthetic dataset generated into runs/)")
    p.add_argument("--heads", help="comma-separated label columns (default: the 8 attributes)")
    p.add_argument("--seed", type=int, default=0, help="sampler and split seed (default: 0)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="validation share of the rows (default: %(default)s)")
    p.add_argument("--stratify", help="head to stratify the split on (default: plain seeded "
                                      "random split)")
    p.add_argument("--on-bad-images", choices=["error", "skip"], default="error",
                   help="missing, empty or corrupt image files: stop with a list (default), or "
                        "skip those rows and say how many")
    g = p.add_argument_group("pin a space value (overrides the YAML)")
    g.add_argument("--image-size", type=int, help="square input size in px")
    g.add_argument("--epochs", type=int)
    g.add_argument("--backbone", choices=["separable", "pretrained"])
    g.add_argument("--family", help="pretrained family, e.g. mobilenet_v2")
    g.add_argument("--weights", help="imagenet | none | path to a *_no_top.h5 file")
    g.add_argument("--batch-size", type=int)


def _default_space() -> str:
    here = os.path.join(os.getcwd(), "spaces", "default.yaml")
    if os.path.isfile(here):
        return here
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "spaces", "default.yaml")


def _options(args, **extra):
    from search.data import DEFAULT_HEADS
    from search.runner import Options

    pins = {"image_size": args.image_size, "epochs": args.epochs, "backbone": args.backbone,
            "family": args.family, "weights": args.weights, "batch_size": args.batch_size}
    heads = tuple(h.strip() for h in args.heads.split(",")) if args.heads else DEFAULT_HEADS
    return Options(study=args.study, space=args.space, data=args.data, heads=heads,
                   seed=args.seed, val_fraction=args.val_fraction, stratify=args.stratify,
                   on_bad_images=args.on_bad_images, pins=pins, **extra)


# ---------------------------------------------------------------------------------------------
# Commands


def cmd_run(args) -> int:
    """Run (or resume) a search until the study has --trials finished trials."""
    from search.runner import Runner

    if args.trials < 1:
        raise UsageError("--trials must be at least 1")
    options = _options(args, trials=args.trials, timeout=args.timeout,
                       objective=args.objective, baselines=not args.no_baselines,
                       precision=args.precision, xla=args.xla, verbose=1 if args.keras_progress
                       else 0, max_failures=args.max_failures, progress=not args.no_progress)
    return Runner(_settings(args), options).run()


def cmd_lr_find(args) -> int:
    """LR range test for one config of a space: suggested base/max LR and a plotly curve."""
    from search.lr_find import lr_find

    return lr_find(_settings(args), _options(args), num_steps=args.steps,
                   min_lr=args.min_lr, max_lr=args.max_lr, out=args.out)


def cmd_best(args) -> int:
    """Show the best trial; with --register, register its model and set alias 'champion'."""
    from search.results import best

    return best(_settings(args), args.study, args.register)


def cmd_pull(args) -> int:
    """Download a registered model (model.keras + labels.json) into a folder."""
    from search.results import pull

    return pull(_settings(args), args.model_uri, args.out)


def cmd_predict(args) -> int:
    """Predict every head for images: one JSON line per image."""
    from search.results import predict

    return predict(_settings(args), args.model, args.images)


def cmd_eda(args) -> int:
    """Look at an annotation CSV before searching: class balance, head-vs-head tables with
    suspicious combinations, image sizes, black side padding, duplicate and unreadable images.
    Prints a summary and writes one self-contained plotly HTML file."""
    from pathlib import Path

    from search import eda
    from search.data import DEFAULT_HEADS
    from search.settings import Settings

    heads = tuple(h.strip() for h in args.heads.split(",")) if args.heads else DEFAULT_HEADS
    report = eda.analyse(args.data, heads)
    out = Path(args.out) if args.out else (Settings.resolve(args.runs_dir).runs_dir
                                           / f"eda-{Path(args.data).stem}.html")
    print(eda.summary_text(report))
    print(f"report: {eda.render_html(report, out)}")
    return 0


def cmd_dashboard(args) -> int:
    """Start optuna-dashboard on the study storage (loopback by default)."""
    from search.servers import dashboard

    return dashboard(_settings(args), args.host, args.port)


def cmd_mlflow_ui(args) -> int:
    """Start the MLflow UI on the tracking store (loopback by default)."""
    from search.servers import mlflow_ui

    return mlflow_ui(_settings(args), args.host, args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="search", epilog=EPILOG,
        description="Hyperparameter and architecture search for multi-head Keras image "
                    "classifiers, with Optuna studies and MLflow tracking.")
    parser.add_argument("--version", action="version", version=f"search {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, func, help_):
        p = sub.add_parser(name, help=help_, description=func.__doc__, epilog=EPILOG)
        p.set_defaults(func=func)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks for errors")
        return p

    p = add("run", cmd_run, "run or resume a search")
    _search_options(p)
    p.add_argument("--trials", type=int, default=10,
                   help="finished trials the study should hold (default: %(default)s)")
    p.add_argument("--timeout", type=float, help="stop starting new trials after S seconds")
    p.add_argument("--objective", choices=["mean_accuracy", "mean_balanced_accuracy"],
                   help="override the space's objective")
    p.add_argument("--no-baselines", action="store_true",
                   help="do not enqueue the space's baseline configs first")
    p.add_argument("--precision", default="auto",
                   choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"])
    p.add_argument("--xla", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--max-failures", type=int, default=5,
                   help="stop after this many failed trials in a row (default: %(default)s)")
    p.add_argument("--keras-progress", action="store_true", help="show Keras progress per epoch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(p)

    p = add("lr-find", cmd_lr_find, "LR range test for a config of the space")
    _search_options(p)
    p.add_argument("--steps", type=int, default=100, help="sweep length in batches")
    p.add_argument("--min-lr", type=float, default=1e-6)
    p.add_argument("--max-lr", type=float, default=1.0)
    p.add_argument("--out", help="HTML file for the curve (default: runs/lr_find-<study>.html)")
    _common(p)

    p = add("best", cmd_best, "show the best trial; register its model")
    p.add_argument("--study", default="default")
    p.add_argument("--register", metavar="NAME", help="registered model name")
    _common(p)

    p = add("pull", cmd_pull, "download a registered model")
    p.add_argument("model_uri", help="e.g. models:/NAME@champion")
    p.add_argument("--out", required=True, help="folder to write model.keras and labels.json")
    _common(p)

    p = add("predict", cmd_predict, "predict images with a model")
    p.add_argument("--model", required=True, help="models:/NAME@ALIAS or a pulled folder")
    p.add_argument("images", nargs="+", help="image files")
    _common(p)

    p = add("eda", cmd_eda, "summarise a dataset; write an HTML report")
    p.add_argument("--data", required=True, help="annotation CSV with image_path and one column "
                                                 "per head")
    p.add_argument("--heads", help="comma-separated label columns (default: the 8 attributes)")
    p.add_argument("--out", help="HTML file (default: runs/eda-<csv name>.html)")
    p.add_argument("--runs-dir", help="local state folder (default: ./runs or $SEARCH_RUNS_DIR)")

    for name, func in (("dashboard", cmd_dashboard), ("mlflow-ui", cmd_mlflow_ui)):
        p = add(name, func, func.__doc__.splitlines()[0].lower().rstrip("."))
        p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
        p.add_argument("--port", type=int, default=8080 if name == "dashboard" else 5000)
        _common(p)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        if args.debug:
            raise
        from search.settings import mask

        print(f"search {args.command}: error: {mask(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
