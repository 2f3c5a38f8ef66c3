"""The CLI answers fast, without TensorFlow, and user mistakes exit 2 with one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from search import cli

from conftest import ROOT, TINY_SPACE


def test_import_and_help_do_not_import_tensorflow():
    code = ("import sys, search.cli\n"
            "try:\n    search.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout and "predict" in result.stdout


def test_every_command_has_help(capsys):
    for command in ("run", "lr-find", "best", "pull", "predict", "dashboard", "mlflow-ui"):
        try:
            cli.main([command, "--help"])
        except SystemExit as exc:
            assert exc.code == 0
        assert "--storage" in capsys.readouterr().out


def test_bad_space_is_one_line_exit_2_and_creates_nothing(tmp_path, tiny_csv, capsys):
    space = tmp_path / "bad.yaml"
    space.write_text("params:\n  widht: 3\n")
    runs = tmp_path / "runs"
    code = cli.main(["run", "--space", str(space), "--data", str(tiny_csv),
                     "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2
    assert "widht" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (runs / "optuna.db").exists() and not (runs / "mlflow.db").exists()


def test_missing_data_and_unknown_study(tmp_path, capsys):
    runs = tmp_path / "runs"
    code = cli.main(["run", "--space", str(TINY_SPACE), "--data", str(tmp_path / "no.csv"),
                     "--runs-dir", str(runs)])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    assert not (runs / "optuna.db").exists()
    assert cli.main(["best", "--study", "nope", "--runs-dir", str(runs)]) == 2
    assert "search run" in capsys.readouterr().err


def test_passwords_are_masked_in_errors(tmp_path, capsys):
    code = cli.main(["best", "--runs-dir", str(tmp_path),
                     "--storage", "postgresql+psycopg2://me:s3cret@127.0.0.1:1/db"])
    err = capsys.readouterr().err
    assert code == 2 and "s3cret" not in err and "me:***@" in err


def test_a_pin_that_makes_every_config_invalid_is_refused_before_anything_is_written(
        tmp_path, tiny_csv, capsys):
    """The space plus the command line's pins is checked as the space alone is: no study, no
    MLflow store, no failed trials (issue 21)."""
    runs = tmp_path / "runs"
    for command in ("run", "worker", "lr-find"):
        code = cli.main([command, "--image-size", "3", "--epochs", "1", "--space",
                         str(TINY_SPACE), "--data", str(tiny_csv), "--runs-dir", str(runs)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.strip() == (f"search {command}: error: the space with image_size=3, epochs=1 "
                               f"pinned can produce an invalid config: image_size must be at "
                               f"least 32x32, got 3x3")
    assert not (runs / "optuna.db").exists() and not (runs / "mlflow.db").exists()


def test_run_help_states_the_exit_codes(capsys):
    for command in ("run", "worker"):
        try:
            cli.main([command, "--help"])
        except SystemExit:
            pass
        out = " ".join(capsys.readouterr().out.split())
        assert "Exit codes: 0 the study reached --trials" in out
        assert "--timeout was reached" in out and "1 it stopped early" in out
        assert "130 interrupted" in out


@pytest.mark.e2e
def test_a_timeout_is_a_target_reached_exit_0(tmp_path, tiny_csv, capsys):
    """--timeout is a wall-clock budget: reaching it is not a failure (exit 0), even with no
    trial finished; before, a stop with no finished trial exited 1 whatever the reason."""
    code = cli.main(["run", "--trials", "2", "--timeout", "0", "--space", str(TINY_SPACE),
                     "--data", str(tiny_csv), "--runs-dir", str(tmp_path / "runs"),
                     "--no-progress"])
    assert code == 0
    assert "stopped: timeout of 0 s reached" in capsys.readouterr().err


def test_every_command_module_is_a_verb_of_the_parser():
    """A module added under search/commands/ but missing from cli.COMMANDS would never run."""
    import pkgutil

    import search.commands

    modules = {m.name for m in pkgutil.iter_modules(search.commands.__path__)}
    listed = [command.__module__.rsplit(".", 1)[1] for command in cli.COMMANDS]
    assert sorted(listed) == sorted(modules - {"base", "options"})
    names = [command.name for command in cli.COMMANDS]
    assert len(set(names)) == len(names)
    assert all(command.__doc__ and command.help for command in cli.COMMANDS)
