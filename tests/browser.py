"""Open an HTML file or a URL in headless Chromium: the DOM after scripts ran, and the console
log.

For tests of the HTML reports (plotly must render offline, without JavaScript errors) and of
optuna-dashboard's pages. CI installs Debian's `chromium`; tests skip when it is absent.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000")


def chromium_path() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render_dom(html_path, timeout: float = 120) -> tuple[str, str]:
    """(DOM after the page's scripts ran, Chromium's stderr with console messages such as
    'Uncaught ...'). The page is opened as a file:// URL with a throwaway profile."""
    return render_url(Path(html_path).resolve().as_uri(), timeout)


def render_url(url: str, timeout: float = 120) -> tuple[str, str]:
    """render_dom for any URL, e.g. a local server's single-page app: virtual time does not
    run while the page's own requests are pending, so the DOM is the one after they answered."""
    browser = chromium_path()
    if browser is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                              capture_output=True, text=True, timeout=timeout, check=False)
    return done.stdout, done.stderr


def page_text(dom: str) -> str:
    """The visible words of a DOM: tags, scripts and styles dropped, spaces collapsed."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.DOTALL)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def console_errors(log: str) -> list[str]:
    """Console lines of a render_dom log that report a JavaScript error."""
    return [line for line in log.splitlines()
            if ":CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
