"""`search report`: one self-contained HTML report of a study."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import Command


class Report(Command):
    """Write one self-contained HTML report of a study: Pareto set, head trade-offs, parameters
    against per-head accuracy, baselines, progress, importances, the best trial's learning-rate
    schedule and confusion matrices."""

    name = "report"
    help = "write an HTML report of a study"

    def add_arguments(self, p):
        opts.study_option(p)
        p.add_argument("--out", help="HTML file (default: runs/report-<study>.html)")
        p.add_argument("--pair", metavar="HEAD1,HEAD2", help="heads of the 2-D Pareto plot "
                       "(default: the two with the widest accuracy spread)")
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.views.report import report

        return report(opts.settings(args), args.study, out=args.out, pair=args.pair)
