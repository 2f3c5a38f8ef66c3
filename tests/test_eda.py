"""`search eda`: the numbers on a hand-built dataset, the HTML in a real browser, the real data."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from search import cli
from search.data import eda
from search.data.table import DEFAULT_HEADS, read_table
from search.errors import DataError
from search.views import eda_page

from browser import chromium_path, console_errors, render_dom

HEADS = ("gender", "emotion", "bodypose")
ROWS = [  # image, gender, emotion, bodypose
    ("0.png", "male", "Neutral", "Front"),
    ("1.png", "female", "Happy", "Back"),  # suspicious: no face from the back
    ("2.png", "male", "Neutral", "Back"),
    ("3.png", "male", "Sad", "Front"),
    ("4.png", "female", "Neutral", "Back"),  # same bytes as 0.png
    ("gone.png", "male", "Neutral", "Front"),  # missing
    ("text.png", "female", "Angry", "Back"),  # not an image; suspicious too
]


def person(left: int, right: int, width=32, height=16) -> Image.Image:
    """A bright figure with exactly `left` and `right` black columns beside it."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[2:-2, left:width - right] = (200, 150, 100)
    return Image.fromarray(pixels)


@pytest.fixture
def dataset(tmp_path) -> Path:
    images = tmp_path / "img"
    images.mkdir()
    for i, (left, right) in enumerate([(5, 7), (3, 3), (0, 10), (8, 8)]):
        person(left, right).save(images / f"{i}.png")
    shutil.copy(images / "0.png", images / "4.png")
    (images / "text.png").write_text("not an image")
    lines = ["image_path," + ",".join(HEADS)] + [f"img/{r[0]}," + ",".join(r[1:]) for r in ROWS]
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def test_numbers(dataset):
    report = eda.analyse(dataset, HEADS)
    assert report.counts()["emotion"].to_dict() == {"Neutral": 4, "Happy": 1, "Sad": 1,
                                                     "Angry": 1}
    assert report.majority()["gender"] == ("male", 4 / 7)
    [(rule, lines)] = report.flags
    assert (rule.head, rule.other) == ("bodypose", "emotion") and lines == [3, 8]
    assert report.duplicates() == [[2, 6]]
    assert report.unreadable().to_dict() == {7: "do not exist", 8: "are not images"}
    readable = report.images.dropna(subset=["sha1"])
    assert readable[["pad_left", "pad_right"]].astype(int).values.tolist() == [
        [5, 7], [3, 3], [0, 10], [8, 8], [5, 7]]
    assert set(readable["width"]) == {32} and set(readable["format"]) == {"PNG"}
    assert eda.cross_table(report.frame, "bodypose", "emotion").loc["Back", "Neutral"] == 2


def test_association_and_pairs():
    frame = pd.DataFrame({"a": list("xxyy") * 10, "b": list("ppqq") * 10, "c": list("mnmn") * 10})
    assoc = eda.association(frame, ("a", "b", "c"))
    assert assoc.loc["a", "b"] == pytest.approx(1.0) and assoc.loc["a", "c"] == pytest.approx(0)
    rules = (eda.Rule("c", "m", "a", ("x",), "why"),)
    assert eda.pick_pairs(assoc, rules, top=1) == [("c", "a"), ("a", "b")]


def test_summary_and_html(dataset, tmp_path):
    report = eda.analyse(dataset, HEADS)
    text = eda.summary_text(report)
    assert "emotion" in text and "0.571 (Neutral)" in text
    assert "suspicious: 2 row(s) with bodypose=Back and emotion not Neutral" in text
    assert "exact duplicate images: 1 group(s); lines 2=6" in text
    assert "unreadable images: 2; 1 do not exist: lines 7; 1 are not images: lines 8" in text
    page = eda_page.render_html(report, tmp_path / "out" / "eda.html").read_text()
    assert page.count('class="plotly-graph-div"') >= 4
    assert "<script src=" not in page and len(page) > 1_000_000  # plotly.js inlined: offline


def test_cli_writes_the_report_under_runs(dataset, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli.main(["eda", "--data", str(dataset), "--heads", ",".join(HEADS),
                     "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"report: {runs / 'eda-labels.html'}" in out and "majority baseline" in out
    assert (runs / "eda-labels.html").is_file()
    assert cli.main(["eda", "--data", str(dataset), "--runs-dir", str(runs)]) == 2
    assert ("missing column(s) imagequality, age, weight, carryingbag, footwear"  # default heads
            in capsys.readouterr().err)
    with pytest.raises(DataError, match="does not exist"):
        eda.analyse(tmp_path / "nothing.csv", HEADS)


def test_eda_does_not_import_tensorflow(dataset, tmp_path):
    code = ("import sys; from search.cli import main; "
            f"assert main(['eda', '--data', {str(dataset)!r}, '--heads', {','.join(HEADS)!r}, "
            f"'--out', {str(tmp_path / 'e.html')!r}]) == 0; "
            "assert 'tensorflow' not in sys.modules, 'eda imported tensorflow'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)


@pytest.mark.e2e
@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
def test_html_renders_in_a_browser_without_errors(dataset, tmp_path):
    html = eda_page.render_html(eda.analyse(dataset, HEADS), tmp_path / "eda.html")
    dom, log = render_dom(html)
    assert dom.count('class="plotly-graph-div') >= 4 and "main-svg" in dom
    assert console_errors(log) == []


def test_paths_outside_the_folder_are_refused_as_by_run(dataset, tmp_path, capsys):
    """eda and run share validate.resolve_paths: absolute paths, `..` and symlinks (an image's,
    or a folder's on the way) leading out of the CSV's folder stop both with the same line."""
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    outside.mkdir()
    person(1, 1).save(outside / "x.png")
    (tmp_path / "img" / "link.png").symlink_to(outside / "x.png")
    (tmp_path / "linked").symlink_to(outside, target_is_directory=True)
    text = dataset.read_text()
    for value in (str(outside / "x.png"), f"../{outside.name}/x.png", "img/link.png",
                  "linked/x.png"):
        dataset.write_text(text.replace("img/0.png", value))
        expected = (f"1 image path(s) are absolute or lead outside the CSV's folder {tmp_path}: "
                    f"line 2 image_path={value!r}")
        with pytest.raises(DataError) as info:
            eda.analyse(dataset, HEADS)
        assert expected in str(info.value)
        assert cli.main(["eda", "--data", str(dataset), "--heads", ",".join(HEADS),
                         "--out", str(tmp_path / "e.html")]) == 2
        assert expected in capsys.readouterr().err
        with pytest.raises(DataError) as info:
            read_table(dataset, HEADS)
        assert expected in str(info.value)


def test_inside_symlink_reads_and_a_folder_is_unreadable(dataset, tmp_path):
    (tmp_path / "img" / "inside.png").symlink_to("1.png")
    (tmp_path / "img" / "folder.png").mkdir()
    text = dataset.read_text()
    dataset.write_text(text.replace("img/0.png", "img/inside.png")
                       .replace("img/gone.png", "img/folder.png"))
    report = eda.analyse(dataset, HEADS)
    assert report.images.at[2, "pad_left"] == 3  # 1.png's figure, read through the link
    assert report.unreadable().to_dict() == {7: "are folders or other non-files",
                                             8: "are not images"}
    assert "1 are folders or other non-files: lines 7" in eda.summary_text(report)


@pytest.fixture(scope="module")
def real(hvc_csv):
    return eda.analyse(hvc_csv, DEFAULT_HEADS)


def test_real_data(real):
    assert len(real.frame) == 5600 and real.seconds > 0  # its time: bench/validate.py
    label, share = real.majority()["emotion"]
    assert label == "Neutral" and 0.65 < share < 0.8
    assert "None" in real.counts()["carryingbag"]
    assert real.unreadable().empty
    assert set(real.images["width"]) == {224} and set(real.images["height"]) == {224}
    assert 40 < real.images["pad_left"].median() < 90
    [(rule, lines)] = real.flags
    assert 0 < len(lines) < 100  # a few bodypose=Back rows with a visible emotion


def test_eda_and_run_share_one_validation_path(dataset, tmp_path, capsys):
    """Issue 21: what `run` refuses about a CSV, `eda` refuses with the same line (an empty
    label cell here), and the image problems `run` stops on (a folder as image_path) eda
    lists with the very line run would stop on, instead of a plain exit 0."""
    text = dataset.read_text()
    (tmp_path / "img" / "folder.png").mkdir()
    dataset.write_text(text.replace("img/gone.png", "img/folder.png"))
    report = eda.analyse(dataset, HEADS)
    with pytest.raises(DataError) as refused:
        read_table(dataset, HEADS)
    assert report.refused == str(refused.value)
    assert "1 image file(s) are folders or other non-files: line 7 image_path='img/folder.png'" \
        in report.refused
    assert "`search run` stops on them (exit 2) unless --on-bad-images skip" in \
        eda.summary_text(report)

    dataset.write_text(text.replace("img/1.png,female,Happy", "img/1.png,,Happy"))
    assert cli.main(["eda", "--data", str(dataset), "--heads", ",".join(HEADS),
                     "--out", str(tmp_path / "e.html")]) == 2
    eda_err = capsys.readouterr().err
    with pytest.raises(DataError) as refused:
        read_table(dataset, HEADS)
    assert "1 empty cell(s): line 3 gender=''" in eda_err
    assert eda_err.strip() == f"search eda: error: {refused.value}"
