"""`search`: the command line. The parser is assembled from `COMMANDS`, one per verb
(search.commands, one module each, in Optuna's CLI style); `main` parses and dispatches.

Importing this module must not import TensorFlow (so `--help` and user errors answer fast):
every command imports what it needs inside its body. User mistakes raise `UsageError`,
caught in `main`: one line on stderr, exit code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys

from search import __version__, backend
from search.commands.base import EPILOG
from search.commands.best import Best
from search.commands.dashboard import Dashboard
from search.commands.eda import Eda
from search.commands.evaluate import Evaluate
from search.commands.export import Export
from search.commands.lr_find import LrFind
from search.commands.mlflow_ui import MlflowUi
from search.commands.pareto import Pareto
from search.commands.predict import Predict
from search.commands.pull import Pull
from search.commands.report import Report
from search.commands.run import Run
from search.commands.studies import Studies
from search.commands.train import Train
from search.commands.worker import Worker
from search.errors import UsageError

# In the order `search --help` lists them.
COMMANDS = (Run, Worker, LrFind, Studies, Best, Pareto, Report, Pull, Predict, Evaluate, Train,
            Export, Eda, Dashboard, MlflowUi)
DEBUG_HELP = "show tracebacks, and the libraries' own log lines"
BACKEND_HELP = ("the Keras 3 backend that trains and predicts (default: $KERAS_BACKEND, else "
                "tensorflow); jax and torch need their package installed, not TensorFlow")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="search", epilog=EPILOG,
        description="Hyperparameter and architecture search for multi-head Keras image "
                    "classifiers, with Optuna studies and MLflow tracking.")
    parser.add_argument("--version", action="version", version=f"search {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (cls() for cls in COMMANDS):
        p = sub.add_parser(command.name, help=command.help, description=type(command).__doc__,
                           epilog=command.epilog)
        p.set_defaults(action=command)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=DEBUG_HELP)
        if command.tensorflow or command.keras:
            p.add_argument("--backend", choices=backend.NAMES, default=None, help=BACKEND_HELP)
        command.add_arguments(p)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = getattr(args, "action", None)
    if command is None:
        parser.print_help()
        return 2
    from search import console

    try:
        keras = command.tensorflow or command.keras
        chosen = backend.select(getattr(args, "backend", None)) if keras else None
        console.quiet(args.debug, tensorflow=command.tensorflow and chosen == "tensorflow")
        return int(command.take_action(args) or 0)
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
