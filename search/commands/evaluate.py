"""`search evaluate`: a model scored on a labelled CSV, with bootstrap intervals."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import Command


class Evaluate(Command):
    """Score a model on a labelled CSV: per-head accuracy, balanced accuracy and majority
    baseline with 95% bootstrap intervals; the model's own label vocabulary is enforced."""

    name = "evaluate"
    help = "score a model on labelled data"
    tensorflow = True

    def add_arguments(self, p):
        opts.model_option(p)
        p.add_argument("--data", required=True, help="annotation CSV with the model's heads")
        p.add_argument("--bootstrap", type=int, default=1000,
                       help="bootstrap rounds (default: 1000)")
        p.add_argument("--json", help="also write the results to this JSON file")
        p.add_argument("--on-bad-images", choices=["error", "skip"], default="error")
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.serve.evaluate import evaluate

        return evaluate(opts.settings(args), args.model, args.data, rounds=args.bootstrap,
                        json_out=args.json, on_bad_images=args.on_bad_images)
