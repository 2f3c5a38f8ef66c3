"""How a study's rows are split into train, validation and held-back test rows, as one record.

`Split` is the four flags that decide it (--val-fraction, --seed, --stratify, --test-fraction)
and `rows` applies them to a table. Its `identity` is the text a study stores (a resumed study
must match it; `search best` and `search train --from-trial` rebuild the split from it):
'0.2:0:plain', then ':test=F' with --test-fraction. Kept in that form so that studies made
before still read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search.data.table import Table, split
from search.errors import UsageError

TEST_SEED = 7919  # the test split's seed is --seed plus this: independent of the validation's


@dataclass(frozen=True)
class Split:
    val_fraction: float = 0.2
    seed: int = 0
    stratify: str | None = None  # a head whose classes keep their shares in every part
    test_fraction: float | None = None  # rows held back from every trial (None: none)

    @property
    def identity(self) -> str:
        text = f"{self.val_fraction}:{self.seed}:{self.stratify or 'plain'}"
        return text if self.test_fraction is None else f"{text}:test={self.test_fraction}"

    @classmethod
    def parse(cls, text: str | None) -> "Split":
        """The split a study stored (`identity`); None (older studies): the default."""
        parts = (text or "0.2:0:plain").split(":")
        fraction, seed, strata = (parts[:3] + ["plain"])[:3]
        test = [float(p.removeprefix("test=")) for p in parts[3:] if p.startswith("test=")]
        return cls(val_fraction=float(fraction), seed=int(seed),
                   stratify=None if strata == "plain" else strata,
                   test_fraction=test[0] if test else None)

    @property
    def seeds(self) -> dict:
        """The seeds it uses, for a trial's record of every seed."""
        seeds = {"split": self.seed}
        if self.test_fraction is not None:
            seeds["test_split"] = self.seed + TEST_SEED
        return seeds

    def rows(self, table: Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, validation, test) row indices of `table`; the same for the same table and
        split, in any process. UsageError for a stratify head the table lacks, a test
        fraction out of range, or test rows that leave a class without training rows."""
        strata = None
        if self.stratify:
            if self.stratify not in table.heads:
                raise UsageError(f"--stratify {self.stratify!r} is not one of the heads "
                                 f"{', '.join(table.heads)}")
            strata = table.frame[self.stratify].to_numpy()
        rows = np.arange(len(table))
        test_rows = np.zeros(0, np.int64)
        if self.test_fraction is not None:
            if not 0 < self.test_fraction <= 0.5:
                raise UsageError(f"--test-fraction must be in (0, 0.5], got "
                                 f"{self.test_fraction:g}")
            rest, test = split(len(table), val_fraction=self.test_fraction,
                               seed=self.seed + TEST_SEED, strata=strata)
            rows, test_rows = rows[rest], rows[test]
            strata = None if strata is None else strata[rest]
        train, val = split(len(rows), val_fraction=self.val_fraction, seed=self.seed,
                           strata=strata)
        train_rows, val_rows = rows[train], rows[val]
        if len(test_rows):
            _check_classes(table, train_rows)
        return train_rows, val_rows, test_rows


def _check_classes(table: Table, train_rows: np.ndarray) -> None:
    """With rows held back for testing, every class must still be in the training rows."""
    missing = [(h, label) for h, labels in table.vocab.items() for label in labels
               if not (table.frame[h].iloc[train_rows] == label).any()]
    if missing:
        shown = ", ".join(f"{h}={label!r}" for h, label in missing[:5])
        raise UsageError(f"--test-fraction leaves no training row with {shown}; lower "
                         f"--test-fraction, change --seed, or use --stratify on that head")
