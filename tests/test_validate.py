"""Annotation CSV validation: every user mistake is one clear DataError before anything is
written; odd but usable files (BOM, CRLF, spaces, odd image modes) load."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search import cli
from search.commands import options as cli_options
from search.data.table import read_table
from search.data.validate import scan_images
from search.errors import DataError
from search.settings import Settings
from search.study.session import Options, Session

HEADS = ("gender", "bodypose")
GOOD = """image_path,gender,bodypose
img/0.jpg,male,Front
img/1.jpg,female,Back
img/2.jpg,male,Back
img/3.jpg,female,Front
"""


def save_image(path: Path, mode="RGB", size=(8, 8), fmt="JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = {"1": 1, "L": 128, "P": 3, "I;16": 4000}.get(mode, (200,) * len(mode))
    Image.new(mode, size, color).save(path, fmt)
    return path


def jpeg_bytes() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(
        out, "JPEG")
    return out.getvalue()


@pytest.fixture
def folder(tmp_path):
    for i in range(4):
        save_image(tmp_path / "img" / f"{i}.jpg")
    return tmp_path


def write(folder: Path, text: str | bytes, name="labels.csv") -> Path:
    path = folder / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def error(csv, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_table(csv, HEADS, **kwargs)
    return str(info.value)


# --- files that load -------------------------------------------------------------------------


def test_good_csv_loads_with_sorted_vocab(folder):
    table = read_table(write(folder, GOOD), HEADS)
    assert len(table) == 4
    assert table.vocab == {"gender": ("female", "male"), "bodypose": ("Back", "Front")}
    assert table.paths[1] == str(folder / "img" / "1.jpg")
    assert table.labels()["gender"].tolist() == [1, 0, 1, 0]


def test_bom_crlf_blank_lines_and_stray_spaces_are_fine(folder):
    text = GOOD.replace(",male,", ", male ,").replace("image_path,gender", "image_path, gender ")
    csv = write(folder, b"\xef\xbb\xbf" + text.replace("\n", "\r\n\r\n").encode())
    table = read_table(csv, HEADS)
    assert table.vocab["gender"] == ("female", "male")
    assert list(table.frame["gender"]) == ["male", "female", "male", "female"]


def test_none_and_na_stay_labels_and_extra_columns_are_fine(folder):
    text = GOOD.replace("image_path,", "note,image_path,").replace("\nimg", "\nx,img")
    text = text.replace(",male,Front", ",None,Front").replace(",female,Back", ",NA,Back")
    table = read_table(write(folder, text), HEADS)
    assert table.vocab["gender"] == ("NA", "None", "female", "male")


# --- files that do not ------------------------------------------------------------------------


def test_missing_file_and_folder(tmp_path):
    assert "does not exist; pass the annotation CSV with --data" in error(tmp_path / "no.csv")
    assert "is a folder, not a file" in error(tmp_path)


@pytest.mark.parametrize("content, expected", [
    (bytes(range(256)) * 4, "is not a UTF-8 CSV file"),
    (jpeg_bytes(), "it looks like a JPEG image"),
    (b"image_path,gender\x00\nx,y\n", "it contains NUL bytes"),
    (b"", "is empty; expected a header line with image_path"),
    (b" \r\n\n", "is empty"),
    (b"image_path,gender,bodypose\r\n", "has a header but no rows"),
])
def test_not_a_usable_csv(tmp_path, content, expected):
    assert expected in error(write(tmp_path, content))


def test_missing_columns_name_the_column_and_the_header(folder):
    message = error(write(folder, GOOD.replace("bodypose", "pose")))
    assert "missing column(s) bodypose; the header has 'image_path', 'gender', 'pose'" in message
    message = error(write(folder, GOOD.replace("image_path,", "file,")))
    assert "missing column(s) image_path" in message
    assert "must be comma-separated" in error(write(folder, GOOD.replace(",", ";")))


def test_repeated_header_and_ragged_row(folder):
    assert "'gender' appear more than once" in error(
        write(folder, GOOD.replace("bodypose", "gender")))
    message = error(write(folder, GOOD.replace("img/2.jpg,male,Back", "img/2.jpg,male,Back,x")))
    assert "1 row(s) do not have the header's 3 fields: line 4: 4 fields" in message


def test_empty_label_cell_names_line_column_and_count(folder):
    message = error(write(folder, GOOD.replace("img/1.jpg,female,", "img/1.jpg, ,")))
    assert message.endswith("1 empty cell(s): line 3 gender=''; fill them in or delete those rows")


def test_single_class_head(folder):
    message = error(write(folder, GOOD.replace("female", "male")))
    assert "single class cannot be learned: gender ('male'); drop them with --heads" in message


def test_label_outside_a_given_vocabulary(folder):
    vocab = {"gender": ["female", "male"], "bodypose": ["Front", "Side"]}
    message = error(write(folder, GOOD), vocab=vocab)
    assert ("2 label(s) not in the vocabulary: line 3 bodypose='Back', line 4 bodypose='Back'; "
            "the known labels are bodypose: Front, Side") in message
    assert "no labels for head(s) bodypose" in error(write(folder, GOOD),
                                                     vocab={"gender": ["female", "male"]})
    one_class = {"gender": ["male"], "bodypose": ["Front", "Back"]}
    table = read_table(write(folder, GOOD.replace("female", "male")), HEADS, vocab=one_class)
    assert table.vocab["gender"] == ("male",)  # evaluation data may hold a single class


BAD_IMAGES = {
    "do not exist": lambda p: p.unlink(),
    "are empty (0 bytes)": lambda p: p.write_bytes(b""),
    "cannot be decoded (corrupt or truncated)": lambda p: p.write_bytes(jpeg_bytes()[:-300]),
    "are not images": lambda p: p.write_text("just some text\n"),
    "are folders or other non-files": lambda p: (p.unlink(), p.mkdir()),
}


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_bad_image_is_named_with_line_and_fix(folder, kind):
    BAD_IMAGES[kind](folder / "img" / "2.jpg")
    message = error(write(folder, GOOD))
    assert f"1 image file(s) {kind}: line 4 image_path='img/2.jpg'" in message
    assert "or drop them with --on-bad-images skip" in message


def test_truncated_jpeg_is_caught_quickly(tmp_path):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes())
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(jpeg_bytes()[:-2])  # only the end-of-image marker is missing
    assert scan_images([str(good), str(cut)]) == [None, "cannot be decoded (corrupt or truncated)"]


def test_skip_drops_unreadable_rows_and_says_so(folder, capsys):
    (folder / "img" / "0.jpg").unlink()
    (folder / "img" / "1.jpg").write_bytes(b"")
    csv = write(folder, GOOD)
    table = read_table(csv, HEADS, on_bad_images="skip")
    assert table.frame["image_path"].tolist() == ["img/2.jpg", "img/3.jpg"]
    assert capsys.readouterr().err == (
        f"{csv}: skipping 2 of 4 rows with unreadable images: 1 image file(s) do not exist: "
        f"line 2 image_path='img/0.jpg'; 1 image file(s) are empty (0 bytes): "
        f"line 3 image_path='img/1.jpg'\n")
    for i in (2, 3):
        (folder / "img" / f"{i}.jpg").unlink()
    assert "every row is unreadable" in error(write(folder, GOOD), on_bad_images="skip")


def test_many_bad_rows_are_counted_and_the_first_few_shown(tmp_path):
    rows = "".join(f"img/{i}.jpg,{'male' if i % 2 else 'female'},Back\n" for i in range(12))
    message = error(write(tmp_path, "image_path,gender,bodypose\n" + rows))
    assert "12 image file(s) do not exist: line 2 image_path='img/0.jpg'" in message
    assert "line 6 image_path='img/4.jpg' (and 7 more)" in message


def test_paths_outside_the_csv_folder(folder):
    outside = save_image(folder.parent / f"{folder.name}-outside.jpg")
    for value in ("../" + outside.name, str(outside)):
        csv = write(folder, GOOD.replace("img/0.jpg", value))
        assert f"1 image path(s) are absolute or lead outside the CSV's folder {folder}: " \
               f"line 2 image_path={value!r}" in error(csv)
        assert read_table(csv, HEADS, allow_outside=True).paths[0] == str(outside)


def test_symlinks_out_of_the_csv_folder_are_outside(folder):
    """A symlink (the image, or a folder on the way) is judged by where it leads: images read
    through it would not be the folder's. One that stays inside is fine."""
    outside = save_image(folder.parent / f"{folder.name}-elsewhere" / "x.jpg")
    (folder / "img" / "link.jpg").symlink_to(outside)
    (folder / "linked").symlink_to(outside.parent, target_is_directory=True)
    (folder / "img" / "inside.jpg").symlink_to("1.jpg")
    for value in ("img/link.jpg", "linked/x.jpg"):
        message = error(write(folder, GOOD.replace("img/0.jpg", value)))
        assert (f"1 image path(s) are absolute or lead outside the CSV's folder {folder}: "
                f"line 2 image_path={value!r}") in message
    assert len(read_table(write(folder, GOOD.replace("img/0.jpg", "img/inside.jpg")), HEADS)) == 4


def test_duplicate_images_warn_or_fail(folder, capsys):
    csv = write(folder, GOOD.replace("img/3.jpg", "./img/1.jpg"))
    assert len(read_table(csv, HEADS)) == 4
    assert ("warning: " f"{csv}: 1 row(s) repeat an earlier image: "
            "line 5 image_path='./img/1.jpg' (as line 3)") in capsys.readouterr().err
    assert "delete the repeats" in error(csv, duplicates="error")


@pytest.mark.parametrize("mode, size, fmt", [
    ("L", (8, 8), "JPEG"), ("CMYK", (8, 8), "JPEG"), ("RGB", (10, 6), "PNG"), ("P", (8, 8), "PNG"),
    ("RGBA", (8, 8), "PNG"), ("LA", (8, 8), "PNG"), ("1", (8, 8), "PNG"), ("RGB", (50, 20), "JPEG"),
])
def test_odd_images_validate(tmp_path, mode, size, fmt):
    save_image(tmp_path / "img" / "0.jpg", mode, size, fmt)  # PNG named .jpg is fine
    save_image(tmp_path / "img" / "1.jpg")
    csv = write(tmp_path, "image_path,gender\nimg/0.jpg,male\nimg/1.jpg,female\n")
    assert len(read_table(csv, ("gender",))) == 2


def test_odd_images_load_as_rgb_at_the_target_size(tmp_path):
    pytest.importorskip("tensorflow")
    from search.data.table import load_images

    kinds = [("L", (8, 8), "JPEG"), ("CMYK", (8, 8), "JPEG"), ("RGB", (10, 6), "PNG"),
             ("P", (8, 8), "PNG"), ("RGBA", (8, 8), "PNG"), ("RGB", (50, 20), "JPEG")]
    rows = []
    for i, (mode, size, fmt) in enumerate(kinds):
        save_image(tmp_path / "img" / f"{i}.jpg", mode, size, fmt)
        rows.append(f"img/{i}.jpg,{'ab'[i % 2]}\n")
    table = read_table(write(tmp_path, "image_path,gender\n" + "".join(rows)), ("gender",))
    images = load_images(table, (32, 32))
    assert images.shape == (len(kinds), 32, 32, 3) and images.dtype == np.uint8


# --- nothing is written before the data is valid ---------------------------------------------


@pytest.mark.parametrize("damage", ["missing column", "missing image", "not a csv"])
def test_run_with_bad_data_exits_2_and_writes_nothing(folder, capsys, damage):
    csv = write(folder, GOOD.replace("gender", "sex") if damage == "missing column" else GOOD)
    if damage == "missing image":
        (folder / "img" / "1.jpg").unlink()
    if damage == "not a csv":
        csv.write_bytes(jpeg_bytes())
    runs = folder / "runs"
    code = cli.main(["run", "--data", str(csv), "--heads", "gender,bodypose", "--runs-dir",
                     str(runs), "--trials", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("search run: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    assert {"missing column": "missing column(s) gender",
            "missing image": "1 image file(s) do not exist: line 3 image_path='img/1.jpg'",
            "not a csv": "looks like a JPEG image"}[damage] in err
    assert not (runs / "optuna.db").exists() and not (runs / "mlflow.db").exists()


def test_on_bad_images_flag_reaches_read_table(folder, capsys):
    (folder / "img" / "1.jpg").unlink()
    args = cli.build_parser().parse_args(
        ["run", "--data", str(write(folder, GOOD)), "--heads", "gender,bodypose",
         "--on-bad-images", "skip"])
    options = cli_options.options(args)
    assert options.on_bad_images == "skip" and Options().on_bad_images == "error"
    runner = Session.build(Settings.resolve(folder / "runs"), options)
    assert len(runner.table) == 3 and "skipping 1 of 4 rows" in capsys.readouterr().err
    assert not (folder / "runs").exists()


def test_real_data_validates(hvc_csv):
    """The real table reads whole, `None` a label; how long it takes is bench/validate.py's
    business (no wall-clock limit in a unit test)."""
    table = read_table(hvc_csv)
    assert len(table) == 5600 and "None" in table.vocab["carryingbag"]


def test_report_mode_keeps_bad_image_rows_and_words_them_as_run_does(folder):
    """`eda`'s way through validate.check: every other check as for `run`, image rows kept,
    and bad_images_message the exact line `run` stops on (issue 21)."""
    import pandas as pd

    from search.data import validate

    (folder / "img" / "2.jpg").unlink()
    (folder / "img" / "2.jpg").mkdir()
    csv = write(folder, GOOD)
    frame, _ = validate.check(csv, HEADS, on_bad_images="report")
    assert frame.at[4, "image_path"] == "img/2.jpg"
    problems = pd.Series(validate.scan_images(frame["path"].tolist()), index=frame.index)
    assert validate.bad_images_message(frame, problems, csv) == error(csv)
    assert validate.bad_images_message(frame, problems.where(problems.isna()), csv) is None
