"""The package order (search/__init__.py, setup.cfg's import-linter contract) holds: no
package of search/ imports one above it, at the top of a module or inside a function."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import search

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"  # import-linter, from the `test` extra


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)


def _rows() -> list[str]:
    """setup.cfg's layers, highest first, each row as written ("engines | serve")."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    rows = cfg["importlinter:contract:layers"]["layers"].splitlines()
    return [" ".join(row.split()) for row in rows if row.strip()]


def test_the_package_order_is_kept():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_import_inside_a_function_that_climbs_breaks_it(tmp_path):
    """The contract sees lazy imports: a function in space/ importing the CLI fails it."""
    shutil.copytree(ROOT / "search", tmp_path / "search",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    with (tmp_path / "search" / "space" / "param.py").open("a") as f:
        f.write("\n\ndef _climbs():\n    from search import cli\n\n    return cli\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    assert "search.space is not allowed to import search.cli" in done.stdout


def test_the_docstring_names_the_same_order():
    """search/__init__.py's table, lowest first, is the contract's layers read upward."""
    table = [line.strip().split("  ")[0] for line in search.__doc__.splitlines()
             if line.startswith("    ") and line.strip()]
    assert table == list(reversed(_rows()))
