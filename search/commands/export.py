"""`search export`: a model as an artifact that loads without `search` or MLflow."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import Command


class Export(Command):
    """Write a model as an artifact TensorFlow or Keras loads without `search` or MLflow:
    savedmodel (TF Serving: uint8 images of any HxW in, per-head probabilities out), tflite
    or keras (standard layers only); labels.json beside it. Preprocessing is inside."""

    name = "export"
    help = "write a model for TF Serving, TFLite or plain Keras"
    tensorflow = True

    def add_arguments(self, p):
        opts.model_option(p)
        p.add_argument("--format", required=True, choices=("savedmodel", "tflite", "keras"),
                       help="savedmodel: a TF SavedModel folder; tflite: model.tflite; keras: "
                            "model.keras of standard layers (not for crop: auto models)")
        p.add_argument("out", help="new or empty folder to write the artifact and labels.json")
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.serve.export import run

        return run(opts.settings(args), args.model, args.format, args.out)
