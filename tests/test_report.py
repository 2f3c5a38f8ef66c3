"""`search report` on a real study: page structure without a browser, then the page in headless
Chromium (no JavaScript errors, a rendered plot in every section)."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser

import optuna
import plotly.graph_objects as go
import pytest

from search import cli
from search.views import best_trial, figures, report

import tiny_study
from browser import chromium_path, console_errors, render_dom
from conftest import TINY_SPACE

SECTIONS = ["pareto-set", "pareto-pair", "parameters", "baselines", "history", "importance",
            "lr-schedule", "confusion"]
HEADS = ("gender", "imagequality", "age", "weight", "carryingbag", "footwear", "emotion",
         "bodypose")


class Outline(HTMLParser):
    """Per <section id>: its <h2> text and the classes of the plot <div>s inside it."""

    def __init__(self, page: str):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self._current = None
        self._in_h2 = False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._current = self.sections.setdefault(attrs["id"], {"h2": "", "plots": []})
        elif tag == "h2":
            self._in_h2 = True
        elif tag == "div" and self._current is not None \
                and "plotly-graph-div" in (attrs.get("class") or ""):
            self._current["plots"].append(attrs["class"])

    def handle_endtag(self, tag):
        if tag == "section":
            self._current = None
        elif tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2 and self._current is not None:
            self._current["h2"] += data


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_csv):
    return tiny_study.runs_dir(tmp_path_factory, tiny_csv)


@pytest.fixture(scope="module")
def page_path(runs):
    assert cli.main(["report", "--study", tiny_study.STUDY, "--runs-dir", str(runs)]) == 0
    return runs / f"report-{tiny_study.STUDY}.html"


@pytest.mark.e2e
def test_page_structure_without_a_browser(page_path, runs):
    page = page_path.read_text()
    outline = Outline(page)
    assert list(outline.sections) == SECTIONS
    for sid, section in outline.sections.items():
        assert section["h2"].strip(), sid
        assert len(section["plots"]) >= 1, sid
    assert len(outline.sections["confusion"]["plots"]) == len(HEADS)
    assert len(outline.sections["lr-schedule"]["plots"]) == 2  # schedule + LR range test curve
    assert "The bounds came from an LR range test" in page  # its record says so (issue 19)
    assert "<script src=" not in page and page.count("plotly.js v") == 1  # inlined once: offline
    assert f"<h1>Study {tiny_study.STUDY}</h1>" in page and "3 trial(s): 3 complete" in page
    assert str(runs / "optuna.db") in page
    assert "#0 tiny-baseline" in page  # the enqueued baseline is among the bars


@pytest.mark.e2e
@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
def test_page_renders_every_plot_without_errors(page_path):
    dom, log = render_dom(page_path)
    assert console_errors(log) == []
    outline = Outline(dom)
    assert list(outline.sections) == SECTIONS
    for sid, section in outline.sections.items():
        drawn = [c for c in section["plots"] if "js-plotly-plot" in c]  # set by Plotly.newPlot
        assert drawn and len(drawn) == len(section["plots"]), sid
    assert "main-svg" in dom


@pytest.mark.e2e
def test_pair_and_out(runs, tmp_path, capsys):
    out = tmp_path / "sub" / "r.html"
    assert cli.main(["report", "--study", "tiny", "--runs-dir", str(runs), "--out", str(out),
                     "--pair", "age,gender"]) == 0
    assert f"report: {out}" in capsys.readouterr().out
    assert Outline(out.read_text()).sections["pareto-pair"]["h2"] == "2. Trade-off: age vs gender"


@pytest.mark.e2e
@pytest.mark.parametrize("pair, message", [
    ("age", "--pair needs exactly two heads"),
    ("age,shoes", "--pair: unknown head(s) 'shoes'"),
    ("age,age", "--pair: a head is listed twice"),
])
def test_bad_pair_is_a_one_line_error(runs, capsys, pair, message):
    assert cli.main(["report", "--study", "tiny", "--runs-dir", str(runs), "--pair", pair]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.e2e
def test_without_mlflow_the_sections_say_why(runs, tmp_path):
    out = tmp_path / "r.html"
    assert cli.main(["report", "--study", "tiny", "--runs-dir", str(runs), "--out", str(out),
                     "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"]) == 0
    page = out.read_text()
    sections = Outline(page).sections
    assert all(len(sections[sid]["plots"]) == 1 for sid in ("lr-schedule", "confusion"))
    assert page.count("no MLflow store at ") == 2  # plotly's JSON writes "/" as "\\/"
    assert page.count("none.db (pass --tracking-uri)") == 2
    assert not (tmp_path / "none.db").exists()  # reading creates no empty store


@pytest.mark.e2e
def test_steps_per_epoch_from_the_logged_run(runs):
    from search.settings import Settings
    from search.space.config import TrialConfig

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{runs / 'optuna.db'}")
    run = best_trial.run_files(Settings.resolve(runs), study.best_trial.user_attrs["mlflow_run_id"])
    assert run.problem is None and run.lr_find_html
    assert set(run.confusion["confusion"]) == set(HEADS)
    config = TrialConfig.from_dict(run.config)
    assert best_trial.steps_per_epoch(config, run.metrics) == (128 // 32, True)  # 160 × 0.8
    assert best_trial.steps_per_epoch(config, {}) == (100, False)


def test_importances_need_two_trials_and_never_crash(monkeypatch):
    assert "at least 2 completed trials" in _note(report.importance(None, 1, "x"))

    def fail(study):
        raise RuntimeError("boom")

    # The real module: `optuna.importance` is a lazy proxy until first used, and patching the
    # proxy misses what report calls (it passed only after other tests had loaded it).
    import optuna.importance

    monkeypatch.setattr(optuna.importance, "get_param_importances", fail)
    assert "could not be computed: boom" in _note(report.importance(None, 3, "x"))


def _note(section) -> str:
    [fig] = section.figures
    return fig.layout.annotations[0].text


def test_a_figure_reads_back_from_its_html():
    fig = go.Figure([go.Scatter(x=[1e-5, 1e-3], y=[2.0, 1.0], name="loss"),
                     go.Scatter(x=[1e-4, 1e-4], y=[1, 2], name='base "lr"')])
    fig.update_layout(title="LR range test", xaxis_type="log")
    back = figures.from_html(fig.to_html(include_plotlyjs=True))
    assert [t.name for t in back.data] == ["loss", 'base "lr"']
    assert list(back.data[0].x) == [1e-5, 1e-3] and back.layout.xaxis.type == "log"
    with pytest.raises(ValueError):
        figures.from_html("<html>no plot</html>")


@pytest.mark.e2e
def test_report_and_pareto_do_not_import_tensorflow(runs):
    code = ("import sys; from search import cli; from search.study import pareto; "
            "from search.views import figures, report; "
            f"assert cli.main(['pareto', '--study', 'tiny', '--runs-dir', {str(runs)!r}]) == 0; "
            "assert 'tensorflow' not in sys.modules, 'imported tensorflow'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


def test_parallel_coordinates_encode_categories_logs_and_unset():
    fig = figures.parallel_coordinates(
        [{"width": 16, "base_lr": 1e-3}, {"width": 8, "base_lr": 1e-2}, {}],
        [{"age": 0.4}, {"age": 0.5}, {"age": 0.6}], [0.4, 0.5, 0.6],
        {"width": "categorical", "base_lr": "log"})
    width, lr, age = fig.data[0].dimensions
    assert list(width.ticktext) == ["8", "16", "unset"] and list(width.values) == [1, 0, 2]
    assert list(lr.values)[:2] == pytest.approx([-3, -2]) and lr.values[2] < -3
    assert lr.ticktext[0] == "0.001" and lr.ticktext[-1] == "unset"
    assert age.label == "age" and list(age.values) == [0.4, 0.5, 0.6]


@pytest.mark.e2e
def test_the_header_shows_the_champion_on_the_test_rows(tmp_path, tiny_csv):
    out = tmp_path / "report.html"
    runs = tmp_path / "runs"
    assert cli.main(["run", "--trials", "1", "--space", str(TINY_SPACE), "--data",
                     str(tiny_csv), "--study", "held", "--runs-dir", str(runs),
                     "--test-fraction", "0.25", "--no-progress"]) == 0
    assert cli.main(["report", "--study", "held", "--runs-dir", str(runs), "--out",
                     str(out)]) == 0
    page = out.read_text()
    assert "<table id='test'>" in page and "40 held-out test rows" in page
