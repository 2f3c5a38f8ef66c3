"""Output formats of the reading commands: what scripts parse must stay clean."""

import csv
import io
import json
from datetime import datetime

from search import formats


def test_json_carries_nan_as_null_and_times_as_iso():
    when = datetime(2026, 12, 1, 18, 30, 5, 123)
    data = json.loads(formats.json_text({"best": float("nan"), "at": when, "heads": (1.0, 2)}))
    assert data == {"best": None, "at": "2026-12-01T18:30:05", "heads": [1.0, 2]}


def test_csv_has_one_header_and_empty_cells_for_missing():
    text = formats.csv_text(["study", "best"], [["a,b", None], ["c", float("nan")], ["d", 0.5]])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [["study", "best"], ["a,b", ""], ["c", ""], ["d", "0.5"]]


def test_table_aligns_names_left_and_numbers_right():
    text = formats.table_text(["study", "trials"], [["hvc", "12"], ["a-long-name", "3"]],
                              left=("study",))
    lines = text.splitlines()
    assert lines[0] == "study        trials"
    assert lines[1] == "hvc              12"
    assert lines[2] == "a-long-name       3"
