"""STS Benchmark files (the original tab-separated format)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class StsPairs:
    """Sentence pairs with gold similarity scores."""

    left: list[str]
    right: list[str]
    scores: np.ndarray


def read_sts(path: str | Path) -> StsPairs:
    """Read an STS-B file: score in field 5, sentences in fields 6 and 7, no quoting."""
    left, right, scores = [], [], []
    with Path(path).open(encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if len(row) < 7:
                raise ValueError(f"STS file '{path}' line {number} has {len(row)} fields, expected at least 7")
            scores.append(float(row[4]))
            left.append(row[5])
            right.append(row[6])
    return StsPairs(left, right, np.asarray(scores))
