"""`search mlflow-ui`: the MLflow UI on the tracking store."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import Command


class MlflowUi(Command):
    """Start the MLflow UI on the tracking store (loopback by default)."""

    name = "mlflow-ui"
    help = "start the MLflow UI on the tracking store (loopback by default)"

    def add_arguments(self, p):
        opts.server_options(p, port=5000)
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.views.servers import mlflow_ui

        return mlflow_ui(opts.settings(args), args.host, args.port)
