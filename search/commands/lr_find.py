"""`search lr-find`: an LR range test for one config of a space."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import Command


class LrFind(Command):
    """LR range test for one config of a space: suggested base/max LR and a plotly curve."""

    name = "lr-find"
    help = "LR range test for a config of the space"
    tensorflow = True

    def add_arguments(self, p):
        opts.search_options(p)
        p.add_argument("--steps", type=int, default=100, help="sweep length in batches")
        p.add_argument("--min-lr", type=float, default=1e-6)
        p.add_argument("--max-lr", type=float, default=1.0)
        p.add_argument("--out", help="HTML file for the curve (default: "
                                     "runs/lr_find-<study>.html)")
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.train.lr_find import lr_find

        return lr_find(opts.settings(args), opts.options(args), num_steps=args.steps,
                       min_lr=args.min_lr, max_lr=args.max_lr, out=args.out)
