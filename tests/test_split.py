"""The split record (search.data.split): its identity is the text studies stored before it
existed, read back into the same split; its rows are seeded and checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.data.split import TEST_SEED, Split
from search.data.table import Table
from search.errors import UsageError


def _table(n: int = 40) -> Table:
    frame = pd.DataFrame({"image_path": [f"{i}.png" for i in range(n)],
                          "gender": ["male", "female"] * (n // 2)})
    return Table(csv_path=Path("annotations.csv"), frame=frame, heads=("gender",),
                 vocab={"gender": ("male", "female")})


@pytest.mark.parametrize("text", ["0.2:0:plain", "0.3:7:gender", "0.2:0:plain:test=0.2"])
def test_identities_stored_by_older_studies_read_back_unchanged(text):
    assert Split.parse(text).identity == text


def test_no_stored_split_is_the_default_and_seeds_name_the_test_split():
    assert Split.parse(None) == Split()
    assert Split().seeds == {"split": 0}
    assert Split(seed=3, test_fraction=0.2).seeds == {"split": 3, "test_split": 3 + TEST_SEED}


def test_rows_are_disjoint_seeded_and_checked():
    table = _table()
    train, val, test = Split(test_fraction=0.25, stratify="gender").rows(table)
    assert len(np.intersect1d(train, val)) == len(np.intersect1d(train, test)) == 0
    assert sorted(np.concatenate([train, val, test])) == list(range(len(table)))
    again = Split(test_fraction=0.25, stratify="gender").rows(table)
    assert all((a == b).all() for a, b in zip((train, val, test), again))
    other = Split(seed=1, test_fraction=0.25, stratify="gender").rows(table)
    assert not (other[1] == val).all()
    with pytest.raises(UsageError, match="--stratify 'age' is not one of the heads"):
        Split(stratify="age").rows(table)
    with pytest.raises(UsageError, match=r"--test-fraction must be in \(0, 0.5\]"):
        Split(test_fraction=0.7).rows(table)
