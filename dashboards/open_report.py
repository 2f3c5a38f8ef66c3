"""Write a study's HTML report (`search report`) and open it in the default browser.

    python dashboards/open_report.py --study hvc [--runs-dir runs] [--pair age,gender]

Any `search report` flag works; the file is written first, so it stays for sharing.
"""

import sys
import webbrowser
from pathlib import Path

from search import cli
from search.settings import Settings
from search.views.report import default_out


def main(argv: list[str]) -> int:
    args = cli.build_parser().parse_args(["report", *argv])
    code = cli.main(["report", *argv])
    if code == 0:
        out = Path(args.out) if args.out else default_out(Settings.resolve(args.runs_dir),
                                                          args.study)
        webbrowser.open(out.resolve().as_uri())
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
