"""The page every view writes: one self-contained HTML file, plotly.js inlined once in <head>
(it works offline and is shared as one file), a title, a header, a table of contents, then one
<section id=…> with a numbered <h2> each, holding plotly figures and/or HTML (tables, notes).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;margin:0 2em 3em;color:#222}
header{border-bottom:1px solid #ccc;margin-bottom:1em}nav a{margin-right:1em}
section{margin-top:2em}.figs{display:grid;gap:8px}
#confusion .figs{grid-template-columns:repeat(auto-fill,minmax(420px,1fr))}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}
code{background:#f3f3f3;padding:0 .3em}"""


@dataclass
class Section:
    id: str
    title: str
    figures: list = field(default_factory=list)  # plotly figures
    text: str = ""  # a paragraph, escaped
    html: str = ""  # markup placed as is (a table), after the text


def render(title: str, head_html: str, sections: list[Section]) -> str:
    """The whole page as a string (see the module docstring)."""
    from plotly.offline import get_plotlyjs

    nav = "".join(f"<a href='#{s.id}'>{i}. {html.escape(s.title)}</a>"
                  for i, s in enumerate(sections, 1))
    body = []
    for i, s in enumerate(sections, 1):
        plots = "".join(f"<div>{f.to_html(full_html=False, include_plotlyjs=False)}</div>"
                        for f in s.figures)
        text = f"<p>{html.escape(s.text)}</p>" if s.text else ""
        body.append(f"<section id='{s.id}'><h2>{i}. {html.escape(s.title)}</h2>{text}"
                    f"{s.html}<div class='figs'>{plots}</div></section>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<header><h1>{html.escape(title)}</h1>{head_html}<nav>{nav}</nav></header>"
            f"{''.join(body)}</body></html>")


def write(path, head_html: str, sections: list[Section], title: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(title, head_html, sections), encoding="utf-8")
    return path


def table(header: list[str], rows: list) -> str:
    """An HTML table of plain values (escaped)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
