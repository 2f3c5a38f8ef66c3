"""`search best`: the best trial of a study; registers its model (or a final model)."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import Command


class Best(Command):
    """Show the best trial; with --register, register its model and set alias 'champion'
    (and 'best-<head>' on each head's best). With --format csv or json, stdout holds only the
    data (json: the champion's per-head validation accuracy, each head's best trial, test
    scores, and the registered versions); registration lines go to stderr. --refit and
    --ensemble K build final-model candidates beside the best trial, score them on the
    validation and test rows, and give 'champion' to the best on the held-out rows."""

    name = "best"
    keras = True  # --refit, --ensemble and --register train or load models
    help = "show the best trial; register its model"

    def add_arguments(self, p):
        opts.study_option(p)
        p.add_argument("--register", metavar="NAME", help="registered model name")
        opts.final_options(p)
        opts.format_option(p)
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.final.results import best

        if args.refit or args.ensemble is not None:  # they train and load models: TensorFlow
            from search import console

            console.quiet(args.debug)
        return best(opts.settings(args), args.study, args.register, args.format,
                    refit=args.refit, ensemble=args.ensemble)
