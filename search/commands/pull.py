"""`search pull`: a registered model downloaded into a folder."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import Command


class Pull(Command):
    """Download a registered model (model.keras + labels.json + config.json) into a folder."""

    name = "pull"
    help = "download a registered model"

    def add_arguments(self, p):
        p.add_argument("model_uri", help="e.g. models:/NAME@champion")
        p.add_argument("--out", required=True,
                       help="folder to write model.keras, labels.json and config.json into")
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.final.results import pull

        return pull(opts.settings(args), args.model_uri, args.out)
