"""README.md and docs/*.md say what the code does: every `search VERB` they name is a verb of the
parser (search.cli.build_parser), every flag on such a command line is a flag of that verb,
every flag they name on its own is a flag of a verb the same page names, every repository path
they name exists, every page README links exists (and every docs page is linked), README stays a
front door (<= 200 lines) and its test command is the one .ci/run runs.

No TensorFlow: building the parser imports argparse-level modules only. Fast tier."""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from search.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 200
# A path that names a file or folder of this repository: these roots, then a relative path.
REPO_PATH = re.compile(r"(?<![\w./-])((?:spaces|bench|search|docs|deploy|tests|dashboards|\.ci)"
                       r"/[\w./-]*)")
# `search VERB` where a shell runs it: at the start of a code span or line (after `VAR=x `
# assignments), after `&&`, `||`, `|`, `;` or `(`, or as `.../bin/search`.
COMMAND = re.compile(r"(?:^\s*(?:[A-Za-z_]\w*=\S*\s+)*|(?:&&|\|\||[;|(])\s*|/bin/)"
                     r"search\s+([a-z][a-z-]*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def verb_flags(parser: argparse.ArgumentParser | None = None) -> dict[str, set[str]]:
    """{verb: its option strings}, from the parser `search` runs."""
    parser = parser or build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    common = {o for a in parser._actions for o in a.option_strings}
    return {verb: common | {o for a in p._actions for o in a.option_strings}
            for verb, p in sub.choices.items()}


@dataclass
class Page:
    """What one markdown page names: command lines, flags on their own, paths, links, verbs."""

    path: Path
    commands: list[tuple[str, list[str], str]] = field(default_factory=list)  # verb, flags, text
    flags: list[tuple[str, str]] = field(default_factory=list)  # flag, the text naming it
    paths: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    verbs: set[str] = field(default_factory=set)  # named as `search VERB` or `VERB`


def command_lines(text: str) -> list[tuple[str, list[str], str]]:
    """(verb, flags, the command) for each `search VERB ...` in a shell line or code span; a
    command ends at a comment, `&&`, `|` or `;`."""
    found = []
    for match in COMMAND.finditer(text):
        rest = text[match.end():]
        rest = re.split(r"\s#|&&|\|\||(?<!\|)\|(?!\|)|;", rest, maxsplit=1)[0]
        found.append((match.group(1), FLAG.findall(rest), f"search {match.group(1)}{rest}"))
    return found


def read_page(path: Path, verbs: set[str]) -> Page:
    page = Page(path)
    text = path.read_text()
    fenced = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
    page.links = LINK.findall(SPAN.sub("", fenced.sub("", text)))
    for block in fenced.findall(text):
        joined = block.replace("\\\n", " ")  # shell line continuations
        for line in joined.splitlines():
            if line.lstrip().startswith("#"):
                continue
            page.commands += command_lines(line)
            page.paths += REPO_PATH.findall(line.split(" #")[0])
    prose = fenced.sub("", text)
    for paragraph in re.split(r"\n\s*\n", prose):
        for span in SPAN.findall(" ".join(paragraph.split())):
            span = span.strip()
            page.paths += REPO_PATH.findall(span)
            if span in verbs:
                page.verbs.add(span)
            if COMMAND.search(span):
                page.commands += command_lines(span)
            elif span.split()[0] in verbs and FLAG.search(span):  # `best --register`
                page.commands += command_lines(f"search {span}")
            elif span.startswith("--"):  # a flag named on its own: `--refit`, `--ensemble K`
                page.flags += [(f, span) for f in FLAG.findall(span)]
    page.verbs |= {verb for verb, _, _ in page.commands if verb in verbs}
    return page


def pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def problems(path: Path, flags: dict[str, set[str]]) -> list[str]:
    """Every place where `path` says something about the command line or the tree that is not
    so, one line each."""
    verbs = set(flags)
    page = read_page(path, verbs)
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    found = []
    for verb, named, text in page.commands:
        if verb not in verbs:
            found.append(f"{where}: `search {verb}` is no verb ({text.strip()!r})")
            continue
        found += [f"{where}: {flag} is no flag of `search {verb}` ({text.strip()!r})"
                  for flag in named if flag not in flags[verb]]
    for flag, text in page.flags:
        owners = [v for v in sorted(page.verbs) if flag in flags[v]]
        if not owners:
            named = ", ".join(sorted(page.verbs)) or "none"
            found.append(f"{where}: {flag} ({text!r}) is a flag of no verb this page names "
                         f"({named})")
    for name in page.paths:
        name = name.rstrip(".,:;")
        if not (ROOT / name).exists():
            found.append(f"{where}: {name} does not exist")
    for link in page.links:
        if "://" not in link and not (path.parent / link).exists():
            found.append(f"{where}: the link {link} leads nowhere")
    return found


def test_every_command_flag_and_path_the_docs_name_is_real():
    flags = verb_flags()
    found = [line for path in pages() for line in problems(path, flags)]
    assert not found, "\n".join(found)


def test_the_check_reads_the_pages_it_checks():
    """The parse finds what the pages hold, so an empty parse cannot pass for clean docs."""
    verbs = set(verb_flags())
    readme = read_page(README, verbs)
    assert {"run", "best", "predict"} <= {verb for verb, _, _ in readme.commands}
    assert "spaces/hvc.yaml" in readme.paths
    every = [read_page(p, verbs) for p in pages()]
    assert sum(len(p.flags) for p in every) > 50
    assert {v for p in every for v in p.verbs} == verbs, "a verb no page shows"


@pytest.mark.parametrize("line, verb, flag", [
    ("search best --study hvc --refit --ensembel 3", "best", "--ensembel"),
    ("`search pull models:/x@champion --out m --ref`", "pull", "--ref"),
    ("SEARCH_WEIGHTS_DIR=w search run --data a.csv \\\n    --test-fraktion 0.2", "run",
     "--test-fraktion"),
])
def test_a_flag_the_verb_lacks_is_reported(tmp_path, line, verb, flag):
    page = tmp_path / "page.md"
    fence = "```bash\n" if not line.startswith("`") else ""
    page.write_text(f"# p\n\n{fence}{line}\n{'```' if fence else ''}\n")
    [problem] = problems(page, verb_flags())
    assert f"{flag} is no flag of `search {verb}`" in problem


def test_a_lone_flag_no_named_verb_has_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("Use `search pull` with `--out DIR`, and `--keep-models K`.\n\n"
                    "Then `--refit`, `--no-such-flag`.\n")
    found = problems(page, verb_flags())
    assert len(found) == 3, found  # --keep-models is run's, --refit best's: not pull's
    assert all("a flag of no verb this page names (pull)" in f for f in found)


def test_a_verb_a_path_or_a_link_that_is_not_there_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("`search deploy --now`, `spaces/nowhere.yaml`, [x](nowhere.md), "
                    "[y](https://example.org/a.md), `search run --trials 3`, `bench/README.md`\n")
    found = problems(page, verb_flags())
    assert [f.split(": ", 1)[1] for f in found] == [
        "`search deploy` is no verb ('search deploy --now')",
        "spaces/nowhere.yaml does not exist",
        "the link nowhere.md leads nowhere"]


def test_every_docs_page_is_linked_from_readme():
    links = set(LINK.findall(README.read_text()))
    for path in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{path.name}" in links, f"README does not link docs/{path.name}"


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_readme_tests_command_is_what_ci_runs():
    """.ci/run ends with README's test command (its lines joined): the two must not drift."""
    script = (ROOT / ".ci" / "run").read_text()
    tail = script[script.index("python3 -m venv"):].replace("\\\n", " ")
    ci = " ".join(shlex.split(tail.splitlines()[0], posix=False))
    readme = [" ".join(shlex.split(line, posix=False)) for line in README.read_text().splitlines()]
    assert ci in readme, f"README does not show .ci/run's command: {ci}"
