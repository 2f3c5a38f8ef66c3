"""How readable the package's structure is, by the measures a reviewer takes by hand.

- import cycles between modules of `search/` (each is two rooms leaning on each other);
- modules over 300 lines;
- repeated code: 6-line windows (stripped, blank and comment lines dropped) that occur in more
  than one place;
- the path of one trial: the `search` modules on the call stack when a real `search run`
  (tiny synthetic data, 1 trial) first enters the function that trains a trial, how many there
  are, and how often the path climbs back up the import layers (a call into a module that sits
  above the caller in the import graph); and the `search` calls on the stack when that run
  first reaches Keras' `Model.fit`;
- modules per package, and the longest chain of imports inside the package;
- pairs of packages that import each other (issue 29: 0; setup.cfg's import-linter contract
  holds the order) and the package-level order: each package's depth in the graph of imports
  between the packages of `search/` (top-level modules count as packages of their own);
- trial/study user-attribute reads by string outside the trial-record module (issue 19: 0);
- attributes of a session assigned after it is built, outside search/study/session.py (issue 19: 0).

    .venv/bin/python bench/structure.py [--no-record] [--label before]

No baseline run: the record is compared with an earlier record of the same script (the
"before" of a refactor) in RESULTS.md.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
import traceback
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "search"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

WINDOW = 6
LIMIT = 300
# The function that trains one trial; the first one found is traced.
TRIAL_ENTRY = (("search.engines.trial", "run"),)
FIT = ("keras.src.backend.tensorflow.trainer", "fit")  # Keras 3's Model.fit on TensorFlow
RECORD_MODULES = {"search.study.trial_record"}  # the one home of the trial record (issue 19)


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module → package modules it imports (anywhere in the file, lazy imports included)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            edges[name] |= {t for t in targets if t in mods and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def layers(edges: dict[str, set[str]]) -> dict[str, int]:
    """Import depth: 0 for modules importing nothing of the package, else 1 + the deepest
    import (modules of a cycle share the cycle's depth)."""
    depth: dict[str, int] = {}

    def visit(v, trail):
        if v in depth:
            return depth[v]
        if v in trail:
            return 0
        d = 1 + max((visit(w, trail | {v}) for w in edges[v]), default=-1)
        depth[v] = d
        return d

    for v in edges:
        visit(v, frozenset())
    return depth


def package_edges(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """package → packages it imports: `search.train.clr` is `train`, `search.cli` is `cli`;
    the root `search` (the version) is no package."""
    def package(module: str) -> str:
        return module.split(".")[1] if "." in module else ""

    out: dict[str, set[str]] = defaultdict(set)
    for module, targets in edges.items():
        if package(module):
            out[package(module)] |= {package(t) for t in targets
                                     if package(t) and package(t) != package(module)}
    return dict(sorted(out.items()))


def package_pairs(pkg_edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Pairs of packages that import each other."""
    return sorted({tuple(sorted((a, b))) for a, targets in pkg_edges.items() for b in targets
                   if a in pkg_edges.get(b, ())})


def package_order(pkg_edges: dict[str, set[str]]) -> list[list[str]]:
    """The packages by import depth, lowest first. Packages that import each other, directly
    or round a loop, are one group ("{a, b}"): a depth inside a loop would depend on where one
    starts reading it."""
    nodes = set(pkg_edges) | {t for ts in pkg_edges.values() for t in ts}
    full = {n: set(pkg_edges.get(n, ())) for n in sorted(nodes)}
    group = {n: n for n in full}
    for loop in cycles(full):
        for n in loop:
            group[n] = "{" + ", ".join(loop) + "}"
    condensed: dict[str, set[str]] = defaultdict(set)
    for n, targets in full.items():
        condensed[group[n]] |= {group[t] for t in targets if group[t] != group[n]}
    depth = layers(dict(condensed))
    return [sorted(g for g in depth if depth[g] == d) for d in range(max(depth.values()) + 1)]


def long_modules(mods: dict[str, Path]) -> list[tuple[str, int]]:
    sizes = [(m, len(p.read_text().splitlines())) for m, p in mods.items()]
    return sorted([(m, n) for m, n in sizes if n > LIMIT], key=lambda x: -x[1])


def repeated_windows(mods: dict[str, Path]) -> tuple[int, list[str]]:
    """(windows seen in more than one place, a few examples as file:line pairs)."""
    seen = defaultdict(list)
    for name, path in mods.items():
        lines = [(i + 1, line.strip()) for i, line in enumerate(path.read_text().splitlines())]
        code = [(n, s) for n, s in lines if s and not s.startswith("#")]
        for k in range(len(code) - WINDOW + 1):
            block = tuple(s for _, s in code[k:k + WINDOW])
            if sum(len(s) > 12 for s in block) < WINDOW - 1:
                continue  # mostly brackets and short lines: not a meaningful repeat
            seen[block].append(f"{path.relative_to(ROOT)}:{code[k][0]}")
    repeats = {b: places for b, places in seen.items() if len(places) > 1}
    examples = [" = ".join(places[:2]) for places in list(repeats.values())[:5]]
    return len(repeats), examples


def trial_path(edges: dict[str, set[str]]) -> list[str]:
    """The search modules on the stack (outermost first) when a trial first trains."""
    from search import cli
    from search.data import synthetic

    captured: list[list[str]] = []
    entries = {(m, f) for m, f in TRIAL_ENTRY}

    def profile(frame, event, arg):
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if (module, frame.f_code.co_name) == FIT and not FIT_CALLS:
            FIT_CALLS.extend(f"{e.name}" for e in traceback.extract_stack(frame)
                             if PACKAGE in Path(e.filename).resolve().parents)
        if captured:
            return
        if (module, frame.f_code.co_name) in entries:
            stack = traceback.extract_stack(frame)
            names = []
            for entry in stack:
                path = Path(entry.filename).resolve()
                if PACKAGE in path.parents:
                    mod = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                    mod = mod.removesuffix(".__init__")
                    if not names or names[-1] != mod:
                        names.append(mod)
            captured.append(names)

    with tempfile.TemporaryDirectory() as tmp:
        csv = synthetic.generate(Path(tmp) / "data", n=64, size=32, seed=1)
        space = ROOT / "tests" / "tiny_space.yaml"
        sys.setprofile(profile)
        try:
            cli.main(["run", "--trials", "1", "--space", str(space), "--data", str(csv),
                      "--runs-dir", str(Path(tmp) / "runs"), "--no-progress",
                      "--no-baselines"])
        finally:
            sys.setprofile(None)
    return captured[0] if captured else []


FIT_CALLS: list[str] = []  # the search functions on the stack at the first Model.fit


def packages(mods: dict[str, Path]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for name, path in mods.items():
        out[".".join(name.split(".")[:-1]) if path.name != "__init__.py" else name] += 1
    return dict(sorted(out.items()))


def longest_chain(edges: dict[str, set[str]], depth: dict[str, int]) -> list[str]:
    """The deepest import chain: from the deepest module down to one that imports nothing."""
    if not depth:
        return []
    chain = [max(depth, key=depth.get)]
    while edges[chain[-1]]:
        below = [w for w in edges[chain[-1]] if depth.get(w, 0) < depth[chain[-1]]]
        if not below:
            break
        chain.append(max(below, key=depth.get))
    return chain


def attr_reads(mods: dict[str, Path]) -> list[str]:
    """`x.user_attrs[...]` / `x.user_attrs.get(...)` / `set_user_attr(...)` by a string
    outside the record module: places where a trial's or study's record is a bag of strings."""
    out = []
    for name, path in mods.items():
        if name in RECORD_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            key = None
            if isinstance(node, ast.Subscript) and _is_attrs(node.value):
                key = node.slice
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and (node.func.attr == "set_user_attr"
                       or (node.func.attr == "get" and _is_attrs(node.func.value)))
                  and node.args):
                key = node.args[0]
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                out.append(f"{path.relative_to(ROOT)}:{node.lineno} {key.value}")
    return out


def _is_attrs(node) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "user_attrs"


def session_writes(mods: dict[str, Path]) -> list[str]:
    """`<...>session.<field> = ...` outside search/study/session.py: a session changed after it is
    built."""
    out = []
    for name, path in mods.items():
        if name == "search.study.session":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            for t in targets:
                if isinstance(t, ast.Attribute):
                    owner = t.value
                    owner_name = owner.id if isinstance(owner, ast.Name) else (
                        owner.attr if isinstance(owner, ast.Attribute) else "")
                    if owner_name == "session":
                        out.append(f"{path.relative_to(ROOT)}:{node.lineno} session.{t.attr}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--label", default="", help="a word for the record, e.g. before/after")
    ap.add_argument("--no-trace", action="store_true", help="skip the traced trial")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    mods = modules()
    edges = import_graph(mods)
    found = cycles(edges)
    longs = long_modules(mods)
    repeats, examples = repeated_windows(mods)
    depth = layers(edges)
    path = [] if args.no_trace else trial_path(edges)
    climbs = sum(depth.get(b, 0) > depth.get(a, 0) for a, b in zip(path, path[1:]))
    chain = longest_chain(edges, depth)
    reads = attr_reads(mods)
    writes = session_writes(mods)
    pkg_edges = package_edges(edges)
    pairs = package_pairs(pkg_edges)

    lines = [
        f"modules: {len(mods)}, lines: {sum(len(p.read_text().splitlines()) for p in mods.values())}",
        f"import cycles: {len(found)}" + "".join(f"\n  {' <-> '.join(c)}" for c in found),
        f"modules over {LIMIT} lines: {len(longs)}"
        + "".join(f"\n  {m} ({n})" for m, n in longs),
        f"repeated {WINDOW}-line windows: {repeats}" + "".join(f"\n  {e}" for e in examples),
    ]
    lines += [
        f"pairs of packages that import each other: {len(pairs)}"
        + "".join(f"\n  {a} <-> {b}" for a, b in pairs),
        "package order, lowest first (import depth): "
        + " -> ".join(" | ".join(row) for row in package_order(pkg_edges)),
        "modules per package: " + ", ".join(f"{p} {n}" for p, n in packages(mods).items()),
        f"longest import chain: {len(chain)} modules\n  " + " -> ".join(chain),
        f"user-attribute strings read or written outside the record module: {len(reads)}"
        + "".join(f"\n  {r}" for r in reads[:12]) + ("\n  ..." if len(reads) > 12 else ""),
        f"session fields assigned after it is built: {len(writes)}"
        + "".join(f"\n  {w}" for w in writes[:12]) + ("\n  ..." if len(writes) > 12 else ""),
    ]
    if FIT_CALLS:
        lines.append(f"search calls on the stack at the first Model.fit: {len(FIT_CALLS)}")
    if path:
        lines.append(f"trial path: {len(set(path))} modules, {climbs} climb(s) up the import "
                     f"layers\n  " + " -> ".join(f"{m}[{depth.get(m, 0)}]" for m in path))
    text = "\n".join(lines)
    print(text)
    if not args.no_record:
        from benchlib import record

        record(f"structure{' (' + args.label + ')' if args.label else ''}",
               ["```", text, "```"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
