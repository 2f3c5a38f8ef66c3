"""`search pareto`: the trials no other trial beats on every head."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import Command


class Pareto(Command):
    """The trials no other trial beats on every head: a table of the non-dominated COMPLETE
    trials by per-head validation accuracy (works while the study is still running)."""

    name = "pareto"
    help = "the Pareto-optimal trials across heads"

    def add_arguments(self, p):
        opts.study_option(p)
        p.add_argument("--heads", help="comma-separated heads to compare (default: all heads)")
        opts.format_option(p)
        p.add_argument("--json", dest="format", action="store_const", const="jsonl",
                       help="deprecated, kept for scripts: one JSON object per line (--format "
                            "json prints one JSON document instead)")
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.study.pareto import pareto

        return pareto(opts.settings(args), args.study, args.heads, args.format)
