"""The synthetic default dataset: format, determinism, idempotence, learnability of every head."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from search.data import figures, synthetic
from search.data.synthetic import HEADS, ensure_default, generate
from search.errors import DataError

COLUMNS = ["filename", "gender", "imagequality", "age", "weight", "carryingbag", "footwear",
           "emotion", "bodypose", "image_path"]


@pytest.fixture(scope="module")
def default_csv(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn") / "data", n=3000, size=48, seed=0)


@pytest.fixture(scope="module")
def default_df(default_csv):
    return pd.read_csv(default_csv, keep_default_na=False)


def test_vocabularies_are_the_real_ones_in_order():
    assert HEADS == {
        "gender": ("male", "female"),
        "imagequality": ("Average", "Good", "Bad"),
        "age": ("15-25", "25-35", "35-45", "45-55", "55+"),
        "weight": ("normal-healthy", "slightly-overweight", "over-weight", "underweight"),
        "carryingbag": ("None", "Daily/Office/Work Bag", "Grocery/Home/Plastic Bag"),
        "footwear": ("Normal", "CantSee", "Fancy"),
        "emotion": ("Neutral", "Happy", "Angry/Serious", "Sad"),
        "bodypose": ("Front-Frontish", "Side", "Back"),
    }


def test_csv_format_and_labels(default_csv, default_df):
    df = default_df
    assert list(df.columns) == COLUMNS
    assert default_csv.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert len(df) == 3000
    for head, vocab in HEADS.items():
        assert set(df[head]) == set(vocab), head  # every class present, nothing else
    assert (df["carryingbag"] == "None").mean() > 0.4  # "None" is a label, not a missing value
    assert df["filename"].str.match(r"^synthetic/\d{6}\.png$").all()
    assert df["image_path"].str.match(r"^images/\d{6}\.png$").all()
    assert all((default_csv.parent / p).is_file() for p in df["image_path"])


def test_class_frequencies_are_imbalanced_like_real_data(default_df):
    share = {h: default_df[h].value_counts(normalize=True) for h in HEADS}
    assert 0.60 <= share["emotion"]["Neutral"] <= 0.75
    assert 0.50 <= share["gender"]["male"] <= 0.62
    majority = {head: vocab[0] for head, vocab in HEADS.items()} | {"age": "25-35"}
    assert {head: s.idxmax() for head, s in share.items()} == majority


@pytest.mark.parametrize("size", [48, 32])
def test_images_are_square_rgb_with_black_padding(tmp_path, default_csv, size):
    csv = default_csv if size == 48 else generate(tmp_path / "s", n=20, size=size, seed=0)
    for rel in pd.read_csv(csv, keep_default_na=False)["image_path"][:20]:
        with Image.open(csv.parent / rel) as im:
            assert im.mode == "RGB" and im.size == (size, size)
            a = np.asarray(im)
        assert a[:, 0].max() == 0 and a[:, -1].max() == 0  # padded left/right like the real crops
        assert a[:, size // 2].max() > 0


def test_tiny_dataset_still_has_every_class(tmp_path):
    df = pd.read_csv(generate(tmp_path, n=12, size=16, seed=5), keep_default_na=False)
    for head, vocab in HEADS.items():
        assert set(df[head]) == set(vocab), head


def test_deterministic_by_seed(tmp_path):
    a = generate(tmp_path / "a", n=40, seed=0)
    b = generate(tmp_path / "b", n=40, seed=0)
    c = generate(tmp_path / "c", n=40, seed=1)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()

    def pixels(csv, i):
        return np.asarray(Image.open(csv.parent / f"images/{i:06d}.png")).tobytes()

    for i in (0, 7, 39):
        assert pixels(a, i) == pixels(b, i)
    assert any(pixels(a, i) != pixels(c, i) for i in (0, 7, 39))


def test_idempotent_and_regenerates_on_new_settings(tmp_path):
    out = tmp_path / "d"
    csv = generate(out, n=30, seed=3)
    files = (csv, out / "images" / "000000.png", out / ".synthetic.json")
    stamps = {p: p.stat().st_mtime_ns for p in files}
    assert generate(out, n=30, seed=3) == csv
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    generate(out, n=10, seed=3)  # different settings: replaced, no stale images left behind
    assert len(pd.read_csv(csv, keep_default_na=False)) == 10
    assert len(list((out / "images").iterdir())) == 10
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temp dirs left


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real_draw = figures.draw

    def failing_draw(*args):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real_draw(*args)

    monkeypatch.setattr(figures, "draw", failing_draw)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "d", n=20)
    assert list(tmp_path.iterdir()) == []


def test_refuses_a_directory_that_is_not_synthetic(tmp_path):
    (tmp_path / "annotations.csv").write_text("mine\n")
    with pytest.raises(DataError, match="not a synthetic dataset"):
        generate(tmp_path, n=5)
    assert (tmp_path / "annotations.csv").read_text() == "mine\n"


def test_ensure_default_location(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(synthetic, "generate",
                        lambda out_dir, **kw: seen.setdefault("out", out_dir))
    ensure_default(tmp_path)
    assert seen["out"] == tmp_path / "data" / "synthetic"


def test_import_does_not_load_tensorflow():
    code = "import sys, search.data.synthetic; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def _features(csv, paths):
    """12x12 colour thumbnails plus one high-frequency energy number (for image quality)."""
    x = np.stack([np.asarray(Image.open(csv.parent / p)) for p in paths]).astype(np.float32)
    thumbs = x.reshape(len(x), 12, 4, 12, 4, 3).mean((2, 4)).reshape(len(x), -1)
    energy = np.abs(np.diff(x, axis=2)).mean((1, 2, 3))[:, None]
    return np.hstack([thumbs, energy])


def test_every_head_is_learnable_by_a_linear_classifier(default_csv, default_df):
    """Ridge regression on one-hot targets beats the majority class on a held-out 20%."""
    df = default_df
    f = _features(default_csv, df["image_path"])
    n_train = int(0.8 * len(df))
    mu, sd = f[:n_train].mean(0), f[:n_train].std(0) + 1e-6
    f = np.hstack([(f - mu) / sd, np.ones((len(f), 1))])
    gram = f[:n_train].T @ f[:n_train] + 10.0 * np.eye(f.shape[1])
    report = {}
    for head, vocab in HEADS.items():
        y = df[head].map({v: i for i, v in enumerate(vocab)}).to_numpy()
        w = np.linalg.solve(gram, f[:n_train].T @ np.eye(len(vocab))[y[:n_train]])
        acc = ((f[n_train:] @ w).argmax(1) == y[n_train:]).mean()
        majority = (y[n_train:] == np.bincount(y[:n_train]).argmax()).mean()
        report[head] = (round(float(acc), 3), round(float(majority), 3))
    print(report)
    for head, (acc, majority) in report.items():
        assert acc >= majority + 0.05, (head, acc, majority)


@pytest.mark.parametrize("damage", ["image", "truncate", "csv", "marker"])
def test_a_damaged_or_half_copied_dataset_is_regenerated(tmp_path, damage, capsys):
    """Issue 21: the marker written last lists what a whole generation holds; a dataset that
    lost an image, has one cut short, another CSV or no marker is generated again."""
    out = tmp_path / "d"
    csv = generate(out, n=12, seed=3)
    whole = {p.name: p.read_bytes() for p in [csv, *(out / "images").iterdir()]}
    image = out / "images" / "000007.png"
    if damage == "image":
        image.unlink()
    elif damage == "truncate":
        os.truncate(image, image.stat().st_size // 2)
    elif damage == "csv":
        csv.write_text(csv.read_text().replace("male", "female", 1))
    else:  # an interrupted copy: the marker is the last file a finished run writes
        (out / ".synthetic.json").unlink()
    capsys.readouterr()
    assert generate(out, n=12, seed=3) == csv
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"regenerating {out}: ")
    if damage == "image":
        assert lines[0].endswith("11 of 12 images")
    assert {p.name: p.read_bytes() for p in [csv, *(out / "images").iterdir()]} == whole
    assert generate(out, n=12, seed=3) == csv and capsys.readouterr().err == ""


def test_a_killed_generation_s_temp_folder_is_removed_by_the_next(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "d"
    stale = tmp_path / (synthetic._temp_prefix(out, dead.pid) + "abc")
    live = tmp_path / (synthetic._temp_prefix(out) + "def")  # this process: still writing
    for folder in (stale, live):
        (folder / "images").mkdir(parents=True)
    generate(out, n=4)
    assert not stale.exists() and live.exists()
