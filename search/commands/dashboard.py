"""`search dashboard`: optuna-dashboard on the study storage, read-only."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import Command


class Dashboard(Command):
    """Start optuna-dashboard on the study storage, read-only (loopback by default).

    Read-only, so the dashboard can watch a running `search run` without locking or slowing
    it; notes and other edits made in the dashboard are refused."""

    name = "dashboard"
    help = "start optuna-dashboard on the study storage, read-only (loopback by default)"

    def add_arguments(self, p):
        opts.server_options(p, port=8080)
        p.add_argument("--study", help="print the address of this study's page (the "
                                       "dashboard serves every study of the storage)")
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.views.servers import dashboard

        return dashboard(opts.settings(args), args.host, args.port, args.study)
