"""Every benchmark script still imports and says how it is run, and every `search` name it
imports, at the top or inside a function, still exists: moving a module cannot silently break
what the issues measure with."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys

import pytest

from conftest import ROOT

BENCH = ROOT / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name != "benchlib.py")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_bench_script_imports_and_has_a_main(path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    assert module.__doc__ and module.__doc__.strip(), f"{path.name} says nothing about itself"
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"


@pytest.mark.parametrize("path", [*SCRIPTS, BENCH / "benchlib.py"], ids=lambda p: p.name)
def test_every_search_name_a_bench_script_imports_exists(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "search":
                    importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "search":
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or importlib.util.find_spec(
                    f"{node.module}.{alias.name}"), f"{path.name}: {node.module}.{alias.name}"
