"""`search`: the command line. A table of commands, one function each.

Importing this module must not import TensorFlow (so `--help` and user errors answer fast):
every command imports what it needs inside its function. User mistakes raise `UsageError`,
caught in `main`: one line on stderr, exit code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from search import __version__
from search.config import BACKBONES, FAMILIES
from search.engines import ENGINES, TUNERS
from search.errors import UsageError
from search.formats import FORMAT_HELP, FORMATS

EPILOG = "Environment: SEARCH_RUNS_DIR, SEARCH_STORAGE, MLFLOW_TRACKING_URI, SEARCH_WEIGHTS_DIR."
# What `run` and `worker` exit with (search.engines.base.Outcome).
EXIT_CODES = ("Exit codes: 0 the study reached --trials (or had nothing to do), or the search "
              "converged (--until-converged), or --timeout was reached (a wall-clock budget "
              "is a target too); 1 it stopped early: trials kept failing (--max-failures) or "
              "a worker died (with --ray: was lost more often than Ray restarts it); 2 a "
              "usage or data error, before anything was written; 130 interrupted (Ctrl-C).")
MIN_TRIALS = 20  # --until-converged's default (search.convergence.MIN_TRIALS, not imported:
# importing Optuna here would slow --help)
# Commands that load TensorFlow: it is imported up front, quietly (search.console).
TENSORFLOW_COMMANDS = ("run", "worker", "lr-find", "predict", "evaluate", "train", "export")


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("state")
    g.add_argument("--runs-dir", help="local state folder (default: ./runs or $SEARCH_RUNS_DIR)")
    g.add_argument("--storage", help="Optuna storage URL (default: sqlite in runs/, or "
                                     "$SEARCH_STORAGE); e.g. postgresql+psycopg2://u:p@host/db")
    g.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite in runs/, or "
                                          "$MLFLOW_TRACKING_URI)")


def _format_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="table", help=FORMAT_HELP)


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
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the train/validation split; the sampler's seed is derived from "
                        "it, the study name and the trials the study holds, so a resumed "
                        "study continues its draws and two studies do not share them, while "
                        "the same command on the same study state draws the same trials "
                        "(default: %(default)s)")
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
    g.add_argument("--backbone", choices=BACKBONES)
    g.add_argument("--family", choices=FAMILIES, help="pretrained family")
    g.add_argument("--weights", help="imagenet | none | path to a *_no_top.h5 file")
    g.add_argument("--batch-size", type=int)


def _default_space() -> str:
    """spaces/default.yaml in the current folder (a project's own), else the one shipped with
    the package (also in a wheel install, where no spaces/ folder is next to the source)."""
    here = os.path.join(os.getcwd(), "spaces", "default.yaml")
    if os.path.isfile(here):
        return here
    from search.space import bundled

    return str(bundled())


def _trial_options(p: argparse.ArgumentParser) -> None:
    """The flags `run` and `worker` share: how many trials, and how each one runs."""
    p.add_argument("--trials", type=int, default=10,
                   help="finished trials the study should hold, over all workers "
                        "(default: %(default)s)")
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
    p.add_argument("--test-fraction", type=float, metavar="F",
                   help="hold back a seeded share F in (0, 0.5] of the rows that no trial trains "
                        "or validates on; the champion's accuracy there is reported beside "
                        "its validation figure (default: none)")
    p.add_argument("--keep-models", metavar="K|all",
                   help="keep the models of the K best trials (and of each head's best), "
                        "delete the others' (default: the space's keep_models, else 5)")
    p.add_argument("--isolate", action="store_true",
                   help="train each trial in a fresh process (frees all its memory, GPU "
                        "included; costs a TensorFlow start per trial)")
    p.add_argument("--until-converged", type=int, nargs="?", const=MIN_TRIALS,
                   metavar="MIN_TRIALS",
                   help="stop starting trials once the best value has risen by no more than "
                        "its validation noise over the last MIN_TRIALS/2 complete trials, "
                        "after at least MIN_TRIALS of them (default: %(const)s); the remaining "
                        "--trials budget is left for the final model. Exit code 0. Optuna, "
                        "single objective only")


def _final_options(p: argparse.ArgumentParser) -> None:
    """The final-model flags (search.final_model), shared by the commands that build one."""
    g = p.add_argument_group("final model (candidates compared on the held-out rows; the best "
                             "gets alias 'champion')")
    g.add_argument("--refit", action="store_true",
                   help="also retrain the best trial's config on the train + validation rows "
                        "for its best number of epochs per stage (the --test-fraction rows "
                        "stay held out); alias 'refit'")
    g.add_argument("--ensemble", type=int, metavar="K",
                   help="also build the mean of the K best kept models' probabilities (alias "
                        "'ensemble') and a per-head ensemble, each head from the kept trial "
                        "best at it (alias 'per-head'); K from 2 to the number of kept models")


def _run_options(args, **extra):
    if args.trials < 1:
        raise UsageError("--trials must be at least 1")
    if args.until_converged is not None and args.until_converged < 2:
        raise UsageError(f"--until-converged MIN_TRIALS must be at least 2, got "
                         f"{args.until_converged}")
    return _options(args, trials=args.trials, timeout=args.timeout,
                    until_converged=args.until_converged,
                    objective=args.objective, baselines=not args.no_baselines,
                    precision=args.precision, xla=args.xla, verbose=1 if args.keras_progress
                    else 0, max_failures=args.max_failures, progress=not args.no_progress,
                    isolate=args.isolate, test_fraction=args.test_fraction,
                    keep_models=_keep_models(args.keep_models), **extra)


def _keep_models(text: str | None):
    if text is None or text == "all":
        return text
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--keep-models must be a whole number >= 1 or 'all', got {text!r}")
    return int(text)


def _options(args, **extra):
    from search.data import DEFAULT_HEADS
    from search.session import Options

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
    from search import engines
    from search.session import Session

    options = _run_options(args, workers=args.workers, gpus=args.gpus, ray=args.ray,
                           gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial)
    if args.ray is not None or args.gpus_per_trial is not None:
        from search.ray_workers import check_options  # no Ray import unless it is asked for

        check_options(options, _settings(args))
    final = args.refit or args.ensemble is not None
    if final and not args.register:
        raise UsageError("--refit and --ensemble build a model to register: add --register "
                         "NAME (or run `search best --register NAME ...` after the search)")
    if final and args.ensemble is not None and args.ensemble < 2:
        raise UsageError(f"--ensemble K needs K >= 2 kept models, got {args.ensemble}")
    if args.engine == "keras-tuner":
        from search.engines.keras_tuner import KerasTunerEngine, check_options

        if args.register:
            raise UsageError("--register after the search reads an Optuna study: with "
                             "--engine keras-tuner, drop it")
        check_options(options)
        return KerasTunerEngine(Session.build(_settings(args), options), args.tuner).run()
    code = engines.create(args.engine, Session.build(_settings(args), options)).run()
    if code != 0 or not args.register:
        return code
    from search.results import best  # what the search learnt, on the budget it left

    return best(_settings(args), args.study, args.register, "table", refit=args.refit,
                ensemble=args.ensemble)


def cmd_worker(args) -> int:
    """Join a study that `search run` started, from this or another machine, with the same
    --study, storage, tracking URI, data, space and pin flags. All workers share the trials
    until the study holds --trials finished ones. Put the storage URL in $SEARCH_STORAGE
    rather than --storage to keep its password out of `ps`."""
    from search.engines.optuna import work

    return work(_settings(args), _run_options(args))


def cmd_lr_find(args) -> int:
    """LR range test for one config of a space: suggested base/max LR and a plotly curve."""
    from search.lr_find import lr_find

    return lr_find(_settings(args), _options(args), num_steps=args.steps,
                   min_lr=args.min_lr, max_lr=args.max_lr, out=args.out)


def cmd_studies(args) -> int:
    """Every study in the storage, one row each: trials complete, pruned, failed (surplus
    trials are not failures) and running, the best score, each head's best validation
    accuracy, the registered model aliased 'champion' that is one of its trials, when it
    started and its last update. Reads the storage read-only, so it runs beside workers."""
    from search.studies import studies

    return studies(_settings(args), args.sort, args.format)


def cmd_best(args) -> int:
    """Show the best trial; with --register, register its model and set alias 'champion'
    (and 'best-<head>' on each head's best). With --format csv or json, stdout holds only the
    data (json: the champion's per-head validation accuracy, each head's best trial, test
    scores, and the registered versions); registration lines go to stderr. --refit and
    --ensemble K build final-model candidates beside the best trial, score them on the
    validation and test rows, and give 'champion' to the best on the held-out rows."""
    from search.results import best

    if args.refit or args.ensemble is not None:  # they train and load models: TensorFlow
        from search import console

        console.quiet(args.debug)
    return best(_settings(args), args.study, args.register, args.format,
                refit=args.refit, ensemble=args.ensemble)


def cmd_pareto(args) -> int:
    """The trials no other trial beats on every head: a table of the non-dominated COMPLETE
    trials by per-head validation accuracy (works while the study is still running)."""
    from search.pareto import pareto

    return pareto(_settings(args), args.study, args.heads, args.format)


def cmd_report(args) -> int:
    """Write one self-contained HTML report of a study: Pareto set, head trade-offs, parameters
    against per-head accuracy, baselines, progress, importances, the best trial's learning-rate
    schedule and confusion matrices."""
    from search.views.report import report

    return report(_settings(args), args.study, out=args.out, pair=args.pair)


def cmd_pull(args) -> int:
    """Download a registered model (model.keras + labels.json) into a folder."""
    from search.results import pull

    return pull(_settings(args), args.model_uri, args.out)


def cmd_predict(args) -> int:
    """Predict every head for images (files, folders, or the image_path column of a CSV): one
    JSON line per image on stdout, or --out FILE (CSV for .csv: image, error, then a label and
    a probability column per head). An image that cannot be read gets a row with the reason
    and the batch goes on; the exit code is then 1."""
    from search.results import predict

    return predict(_settings(args), args.model, args.images, table=args.csv, out=args.out,
                   fmt=args.format, batch_size=args.batch_size, progress=not args.no_progress)


def cmd_eda(args) -> int:
    """Look at an annotation CSV before searching: class balance, head-vs-head tables with
    suspicious combinations, image sizes, black side padding, duplicate and unreadable images.
    Prints a summary and writes one self-contained plotly HTML file."""
    from pathlib import Path

    from search import eda
    from search.views import eda_page
    from search.data import DEFAULT_HEADS
    from search.settings import Settings

    heads = tuple(h.strip() for h in args.heads.split(",")) if args.heads else DEFAULT_HEADS
    report = eda.analyse(args.data, heads)
    out = Path(args.out) if args.out else (Settings.resolve(args.runs_dir).runs_dir
                                           / f"eda-{Path(args.data).stem}.html")
    print(eda.summary_text(report))
    print(f"report: {eda_page.render_html(report, out)}")
    return 0


def cmd_evaluate(args) -> int:
    """Score a model on a labelled CSV: per-head accuracy, balanced accuracy and majority
    baseline with 95% bootstrap intervals; the model's own label vocabulary is enforced."""
    from search.evaluate import evaluate

    return evaluate(_settings(args), args.model, args.data, rounds=args.bootstrap,
                    json_out=args.json, on_bad_images=args.on_bad_images)


def cmd_train(args) -> int:
    """Retrain one trial's exact config outside the search (longer, other data, all rows),
    log it to MLflow and optionally register it."""
    from search.retrain import retrain

    return retrain(_settings(args), args.from_trial, data=args.data, epochs=args.epochs,
                   all_data=args.all_data, register=args.register, alias=args.alias,
                   seed=args.seed, val_fraction=args.val_fraction, exact=args.exact)


def cmd_export(args) -> int:
    """Write a model as an artifact TensorFlow or Keras loads without `search` or MLflow:
    savedmodel (TF Serving: uint8 images of any HxW in, per-head probabilities out), tflite
    or keras (standard layers only); labels.json beside it. Preprocessing is inside."""
    from search.export import run

    return run(_settings(args), args.model, args.format, args.out)


def cmd_dashboard(args) -> int:
    """Start optuna-dashboard on the study storage, read-only (loopback by default).

    Read-only, so the dashboard can watch a running `search run` without locking or slowing
    it; notes and other edits made in the dashboard are refused."""
    from search.servers import dashboard

    return dashboard(_settings(args), args.host, args.port, args.study)


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
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks, and the libraries' own log lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, func, help_, epilog=EPILOG):
        p = sub.add_parser(name, help=help_, description=func.__doc__, epilog=epilog)
        p.set_defaults(func=func)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks, and the libraries' own log lines")
        return p

    p = add("run", cmd_run, "run or resume a search", f"{EXIT_CODES} {EPILOG}")
    _search_options(p)
    _trial_options(p)
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes on this machine (default: %(default)s)")
    p.add_argument("--gpus", metavar="0,1,...|all",
                   help="one worker per GPU, each seeing only its own (no GPU: CPU workers)")
    g = p.add_argument_group("on a Ray cluster (pip install -e '.[ray]'; README, 'On a cluster')")
    g.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run the --workers K as Ray tasks: on the cluster at ADDRESS (auto, "
                        "HOST:6379, ray://HOST:10001) or, without one, on a Ray instance "
                        "started on this machine for this run. A lost worker is restarted by "
                        "Ray (3 times at most), its trial failed by the heartbeat and retried. "
                        "Nodes beyond this machine need PostgreSQL storage and an MLflow "
                        "tracking server, `search` installed and the data at the same path")
    g.add_argument("--gpus-per-trial", type=float, metavar="G",
                   help="GPUs Ray gives each worker (0.5: two trials share a GPU, memory "
                        "growth on; default: none, CPU workers)")
    g.add_argument("--cpus-per-trial", type=float, default=1.0, metavar="C",
                   help="CPUs Ray reserves for each worker (default: %(default)g)")
    p.add_argument("--engine", choices=ENGINES, default="optuna",
                   help="who proposes trials (default: %(default)s); keras-tuner keeps its "
                        "state in runs/keras-tuner/STUDY and needs --no-baselines")
    p.add_argument("--tuner", choices=TUNERS, default="hyperband",
                   help="keras-tuner oracle (default: %(default)s); hyperband's max_epochs is "
                        "the space's epochs upper bound")
    p.add_argument("--register", metavar="NAME",
                   help="after the search, `search best --register NAME` (with --refit and "
                        "--ensemble K: the final model) on this study")
    _final_options(p)
    _common(p)

    p = add("worker", cmd_worker, "join a running study from this or another machine",
            f"{EXIT_CODES} {EPILOG}")
    _search_options(p)
    _trial_options(p)
    _common(p)

    p = add("lr-find", cmd_lr_find, "LR range test for a config of the space")
    _search_options(p)
    p.add_argument("--steps", type=int, default=100, help="sweep length in batches")
    p.add_argument("--min-lr", type=float, default=1e-6)
    p.add_argument("--max-lr", type=float, default=1.0)
    p.add_argument("--out", help="HTML file for the curve (default: runs/lr_find-<study>.html)")
    _common(p)

    p = add("studies", cmd_studies, "one table of every study in the storage")
    p.add_argument("--sort", default="study", metavar="COLUMN",
                   help="study, complete, pruned, failed, running, best, a head name (its best "
                        "accuracy), champion, started or updated; names sort A-Z, numbers "
                        "highest and times newest first (default: %(default)s)")
    _format_option(p)
    _common(p)

    p = add("best", cmd_best, "show the best trial; register its model")
    p.add_argument("--study", default="default")
    p.add_argument("--register", metavar="NAME", help="registered model name")
    _final_options(p)
    _format_option(p)
    _common(p)

    p = add("pareto", cmd_pareto, "the Pareto-optimal trials across heads")
    p.add_argument("--study", default="default")
    p.add_argument("--heads", help="comma-separated heads to compare (default: all heads)")
    _format_option(p)
    p.add_argument("--json", dest="format", action="store_const", const="jsonl",
                   help="deprecated, kept for scripts: one JSON object per line (--format "
                        "json prints one JSON document instead)")
    _common(p)

    p = add("report", cmd_report, "write an HTML report of a study")
    p.add_argument("--study", default="default")
    p.add_argument("--out", help="HTML file (default: runs/report-<study>.html)")
    p.add_argument("--pair", metavar="HEAD1,HEAD2", help="heads of the 2-D Pareto plot "
                   "(default: the two with the widest accuracy spread)")
    _common(p)

    p = add("pull", cmd_pull, "download a registered model")
    p.add_argument("model_uri", help="e.g. models:/NAME@champion")
    p.add_argument("--out", required=True, help="folder to write model.keras and labels.json")
    _common(p)

    p = add("predict", cmd_predict, "predict images with a model",
            "Exit codes: 0 every image predicted; 1 some image could not be read (its row "
            "says why); 2 a usage error (a path not found, no model there), before anything "
            f"is written. {EPILOG}")
    p.add_argument("--model", required=True, help="models:/NAME@ALIAS or a pulled folder")
    p.add_argument("images", nargs="*", help="image files or folders of images")
    p.add_argument("--csv", metavar="FILE", help="also every image_path of this CSV (relative "
                                                 "to it, as for --data)")
    p.add_argument("--out", metavar="FILE", help="write the rows here (default: stdout)")
    p.add_argument("--format", choices=["jsonl", "csv"],
                   help="row format (default: csv for an --out ending .csv, else jsonl)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="images read and predicted at a time (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar with --out")
    _common(p)

    p = add("evaluate", cmd_evaluate, "score a model on labelled data")
    p.add_argument("--model", required=True, help="models:/NAME@ALIAS or a pulled folder")
    p.add_argument("--data", required=True, help="annotation CSV with the model's heads")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds (default: 1000)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--on-bad-images", choices=["error", "skip"], default="error")
    _common(p)

    p = add("train", cmd_train, "retrain one trial's config")
    p.add_argument("--from-trial", required=True, metavar="STUDY:NUMBER")
    p.add_argument("--data", help="annotation CSV (default: the study's)")
    p.add_argument("--epochs", type=int, help="override the trial's epochs")
    p.add_argument("--all-data", action="store_true",
                   help="train on the train and validation rows (validation scores then "
                        "include seen rows; the study's --test-fraction rows stay held out)")
    p.add_argument("--seed", type=int, help="split seed (default: the study's)")
    p.add_argument("--val-fraction", type=float,
                   help="validation share of the rows (default: the study's)")
    p.add_argument("--register", metavar="NAME", help="register the retrained model")
    p.add_argument("--alias", default="retrained", help="alias for --register")
    p.add_argument("--exact", action="store_true",
                   help="deterministic kernels (TensorFlow op determinism): with no other "
                        "override, reproduces the trial's validation scores also on a GPU "
                        "(on a CPU they replay without it); slower")
    _common(p)

    p = add("export", cmd_export, "write a model for TF Serving, TFLite or plain Keras")
    p.add_argument("--model", required=True, help="models:/NAME@ALIAS or a pulled folder")
    p.add_argument("--format", required=True, choices=("savedmodel", "tflite", "keras"),
                   help="savedmodel: a TF SavedModel folder; tflite: model.tflite; keras: "
                        "model.keras of standard layers (not for crop: auto models)")
    p.add_argument("out", help="new or empty folder to write the artifact and labels.json")
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
        if name == "dashboard":
            p.add_argument("--study", help="print the address of this study's page (the "
                                           "dashboard serves every study of the storage)")
        _common(p)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from search import console

    console.quiet(args.debug, tensorflow=args.command in TENSORFLOW_COMMANDS)
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
