"""`search eda`: a look at an annotation CSV before searching."""

from __future__ import annotations

from search.commands import options as opts
from search.commands.base import Command


class Eda(Command):
    """Look at an annotation CSV before searching: class balance, head-vs-head tables with
    suspicious combinations, image sizes, black side padding, duplicate and unreadable images.
    Prints a summary and writes one self-contained plotly HTML file."""

    name = "eda"
    help = "summarise a dataset; write an HTML report"

    def add_arguments(self, p):
        p.add_argument("--data", required=True, help="annotation CSV with image_path and one "
                                                     "column per head")
        p.add_argument("--heads", help=opts.HEADS_HELP)
        p.add_argument("--out", help="HTML file (default: runs/eda-<csv name>.html)")
        p.add_argument("--runs-dir", help=opts.RUNS_DIR_HELP)

    def take_action(self, args) -> int:
        from pathlib import Path

        from search.data import eda
        from search.settings import Settings
        from search.views import eda_page

        report = eda.analyse(args.data, opts.heads(args))
        out = Path(args.out) if args.out else (Settings.resolve(args.runs_dir).runs_dir
                                               / f"eda-{Path(args.data).stem}.html")
        print(eda.summary_text(report))
        print(f"report: {eda_page.render_html(report, out)}")
        return 0
