"""What a verb of `search` is: a `Command` (its flags and its body) and the help texts they share.

Modelled on Optuna's CLI (`optuna.cli._BaseCommand`): `search.cli` builds one sub-parser per
command from `name`, `help`, the class docstring (the verb's description) and `epilog`, lets
the command add its flags, and calls `take_action` with the parsed arguments. A command
module imports only argparse-level modules at the top; what its body needs (TensorFlow,
Optuna, MLflow) it imports inside `take_action`, so `search --help` answers fast.
"""

from __future__ import annotations

import argparse

EPILOG = "Environment: SEARCH_RUNS_DIR, SEARCH_STORAGE, MLFLOW_TRACKING_URI, SEARCH_WEIGHTS_DIR."
# What `run` and `worker` exit with (search.engines.base.Outcome).
EXIT_CODES = ("Exit codes: 0 the study reached --trials (or had nothing to do), or the search "
              "converged (--until-converged), or --timeout was reached (a wall-clock budget "
              "is a target too); 1 it stopped early: trials kept failing (--max-failures) or "
              "a worker died (with --ray: was lost more often than Ray restarts it); 2 a "
              "usage or data error, before anything was written; 130 interrupted (Ctrl-C).")


class Command:
    """One verb: subclasses set `name` and `help`, and say what they do in their docstring."""

    name = ""
    help = ""  # its line in `search --help`
    epilog = EPILOG
    tensorflow = False  # its body loads Keras: `main` loads its backend first, quietly
    keras = False  # its body may load Keras (--refit, --register): it takes --backend too

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add this verb's flags to its sub-parser."""

    def take_action(self, args: argparse.Namespace) -> int:
        """Do the verb; the exit code. User mistakes raise `search.errors.UsageError`."""
        raise NotImplementedError


class TrialsCommand(Command):
    """A verb that runs trials (`run`, `worker`): it exits with an `Outcome`'s code and trains."""

    epilog = f"{EXIT_CODES} {EPILOG}"
    tensorflow = True
