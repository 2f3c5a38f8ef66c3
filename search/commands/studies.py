"""`search studies`: one table of every study in the storage."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import Command


class Studies(Command):
    """Every study in the storage, one row each: trials complete, pruned, failed (surplus
    trials are not failures) and running, the best score, each head's best validation
    accuracy, the registered model aliased 'champion' that is one of its trials, when it
    started and its last update. Reads the storage read-only, so it runs beside workers."""

    name = "studies"
    help = "one table of every study in the storage"

    def add_arguments(self, p):
        p.add_argument("--sort", default="study", metavar="COLUMN",
                       help="study, complete, pruned, failed, running, best, a head name (its "
                            "best accuracy), champion, started or updated; names sort A-Z, "
                            "numbers highest and times newest first (default: %(default)s)")
        opts.format_option(p)
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.study.catalog import studies

        return studies(opts.settings(args), args.sort, args.format)
