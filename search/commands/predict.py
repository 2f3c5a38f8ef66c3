"""`search predict`: every head predicted for images, one row each."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import EPILOG, Command


class Predict(Command):
    """Predict every head for images (files, folders, or the image_path column of a CSV): one
    JSON line per image on stdout, or --out FILE (CSV for .csv: image, error, then a label and
    a probability column per head). An image that cannot be read gets a row with the reason
    and the batch goes on; the exit code is then 1."""

    name = "predict"
    help = "predict images with a model"
    epilog = ("Exit codes: 0 every image predicted; 1 some image could not be read (its row "
              "says why); 2 a usage error (a path not found, no model there), before anything "
              f"is written. {EPILOG}")
    tensorflow = True

    def add_arguments(self, p):
        opts.model_option(p)
        p.add_argument("images", nargs="*", help="image files or folders of images")
        p.add_argument("--csv", metavar="FILE", help="also every image_path of this CSV "
                                                     "(relative to it, as for --data)")
        p.add_argument("--out", metavar="FILE", help="write the rows here (default: stdout)")
        p.add_argument("--format", choices=["jsonl", "csv"],
                       help="row format (default: csv for an --out ending .csv, else jsonl)")
        p.add_argument("--batch-size", type=int, default=64,
                       help="images read and predicted at a time (default: %(default)s)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar with --out")
        opts.state_options(p)

    def take_action(self, args) -> int:
        from search.final.results import predict

        return predict(opts.settings(args), args.model, args.images, table=args.csv,
                       out=args.out, fmt=args.format, batch_size=args.batch_size,
                       progress=not args.no_progress)
