"""`search train`: one trial's exact config retrained outside the search."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import Command


class Train(Command):
    """Retrain one trial's exact config outside the search (longer, other data, all rows),
    log it to MLflow and optionally register it."""

    name = "train"
    help = "retrain one trial's config"
    tensorflow = True

    def add_arguments(self, p):
        p.add_argument("--from-trial", required=True, metavar="STUDY:NUMBER")
        p.add_argument("--data", help="annotation CSV (default: the study's)")
        p.add_argument("--epochs", type=int, help="override the trial's epochs")
        p.add_argument("--all-data", action="store_true",
                       help="train on the train and validation rows (validation scores then "
                            "include seen rows; the study's --test-fraction rows stay held out)")
        p.add_argument("--seed", type=int, help="split seed (default: the study's)")
        p.add_argument("--val-fraction", type=float,
                       help="validation share of the rows (default: the study's)")
        p.add_argument("--register", metavar="NAME", help="register the retrained model")
        p.add_argument("--alias", default="retrained", help="alias for --register")
        p.add_argument("--exact", action="store_true",
                       help="deterministic kernels (TensorFlow op determinism): with no other "
                            "override, reproduces the trial's validation scores also on a GPU "
                            "(on a CPU they replay without it); slower")
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.final.retrain import retrain

        return retrain(opts.settings(args), args.from_trial, data=args.data,
                       epochs=args.epochs, all_data=args.all_data, register=args.register,
                       alias=args.alias, seed=args.seed, val_fraction=args.val_fraction,
                       exact=args.exact)
