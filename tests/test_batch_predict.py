"""`search predict` over folders and CSVs: one row per image, a corrupt file reported in its row
without stopping the batch, CSV and JSON lines, the same probabilities as one-by-one calls."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search import cli
from search.errors import UsageError
from search.serve import batch_predict
from search.space.config import TrialConfig
from search.track import registry

VOCAB = {"gender": ("female", "male"), "age": ("15-25", "25-35", "35-45")}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A model as `search pull` writes it (untrained weights: rows, not accuracy, are tested)."""
    from search.model import assembly as model_lib

    folder = tmp_path_factory.mktemp("pulled")
    config = TrialConfig(width=8, depth=2, image_size=(32, 32), neck_units=8, head_units=0)
    model_lib.export(model_lib.build(config, VOCAB), config).save(folder / registry.MODEL_FILE)
    (folder / registry.LABELS_FILE).write_text(json.dumps({h: list(v) for h, v in VOCAB.items()}))
    return folder


@pytest.fixture
def images(tmp_path) -> Path:
    """Five images of three sizes and formats, one corrupt file, one file that is no image."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 30), (40, 30), (64, 64), (20, 50), (40, 30)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(
            folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    (folder / "5.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_a_folder_to_csv_reports_the_corrupt_image_and_goes_on(model_folder, images, tmp_path,
                                                               capsys):
    out = tmp_path / "preds.csv"
    code = cli.main(["predict", "--model", str(model_folder), str(images), "--out", str(out),
                     "--batch-size", "2"])
    assert code == 1  # one image could not be read: the exit code says so
    err = capsys.readouterr().err
    assert "1 of 6 image(s) could not be read" in err
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["image"]).name for r in rows] == [f"{i}.{e}" for i, e in
                                                      zip(range(6), "jpg png jpg png jpg jpg".split())]
    assert list(rows[0]) == ["image", "error", "gender", "gender_probability", "age",
                             "age_probability"]
    bad = rows[5]
    assert bad["error"].startswith("cannot read image") and bad["gender"] == ""
    good = rows[:5]
    assert all(r["error"] == "" for r in good)
    net, vocab = registry.load(str(model_folder))
    arrays = [np.asarray(Image.open(r["image"]).convert("RGB")) for r in good]
    expected = registry.predict_arrays(net, vocab, arrays)  # one call, all sizes mixed
    for row, want in zip(good, expected):
        for head in VOCAB:
            assert row[head] == want[head]["label"]
            assert float(row[f"{head}_probability"]) == pytest.approx(want[head]["probability"],
                                                                      abs=1e-4)


def test_a_csv_of_images_to_json_lines_on_stdout(model_folder, images, tmp_path, capsys):
    table = tmp_path / "sub" / "list.csv"
    table.parent.mkdir()
    table.write_text("image_path,gender\n../images/0.jpg,male\n../images/3.png,female\n")
    assert cli.main(["predict", "--model", str(model_folder), "--csv", str(table)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(r["image"]).name for r in lines] == ["0.jpg", "3.png"]
    assert all(r["gender"]["label"] in VOCAB["gender"] for r in lines)


def test_bad_arguments_are_one_line_before_any_model_loads(model_folder, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, says in ((["missing.jpg"], "not found: missing.jpg"),
                       ([str(empty)], "holds no image files"),
                       ([], "nothing to predict"),
                       (["--csv", str(tmp_path / "none.csv")], "no such file")):
        assert cli.main(["predict", "--model", str(tmp_path / "no-model"), *args]) == 2
        assert says in capsys.readouterr().err
    listing = tmp_path / "list.csv"
    listing.write_text("path\nx.jpg\n")
    with pytest.raises(UsageError, match="no image_path column"):
        batch_predict.image_paths([], str(listing))


def test_the_library_call_writes_rows_in_order_and_counts_failures(model_folder, images):
    net, vocab = registry.load(str(model_folder))
    paths = batch_predict.image_paths([str(images)])
    seen = []

    class Stream(io.StringIO):
        def write(self, text):
            seen.append(text)
            return super().write(text)

    summary = batch_predict.predict(net, vocab, paths, Stream(), "jsonl", batch_size=4)
    assert (summary.images, summary.failed) == (6, 1)
    assert len(seen) == 6 and json.loads(seen[-1])["error"].startswith("cannot read image")
