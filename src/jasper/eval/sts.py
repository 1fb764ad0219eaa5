"""STS Benchmark: the original tab-separated files, or the same pairs from the Hugging Face hub."""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jasper.errors import JasperError


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
                raise JasperError(f"STS file '{path}' line {number} has {len(row)} fields, expected at least 7")
            scores.append(float(row[4]))
            left.append(row[5])
            right.append(row[6])
    return StsPairs(left, right, np.asarray(scores))


# The hub copy MTEB uses: the original pairs and 0-5 scores as JSON lines (test 1,379, validation 1,500 pairs)
STSB_HUB_DATASET = "mteb/stsbenchmark-sts"
STSB_SPLITS = {"test": ("sts-test.csv", "test.jsonl.gz"), "dev": ("sts-dev.csv", "validation.jsonl.gz")}
STSB_URL = "https://ixa2.si.ehu.eus/stswiki/index.php/STSbenchmark"


def read_sts_jsonl(path: str | Path) -> StsPairs:
    """Read STS pairs from (gzipped) JSON lines with `sentence1`, `sentence2` and `score`."""
    opener = gzip.open if str(path).endswith(".gz") else open
    left, right, scores = [], [], []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not all(k in record for k in ("sentence1", "sentence2", "score")):
                raise JasperError(f"STS file '{path}' line {number} lacks sentence1, sentence2 or score")
            left.append(record["sentence1"])
            right.append(record["sentence2"])
            scores.append(float(record["score"]))
    return StsPairs(left, right, np.asarray(scores))


def stsb_split(split: str, stsb_dir: str | None) -> tuple[StsPairs | None, str]:
    """(pairs, where they came from) for STS-B `split` ('test' or 'dev'): the original file under `stsb_dir`
    when it is there, else the hub copy (cached after the first download); (None, why) when neither is at
    hand or `stsb_dir` is None (STS-B switched off)."""
    from jasper.hub import HubUnavailable, dataset_file

    if stsb_dir is None:
        return None, f"STS-B {split} skipped: eval.stsb_dir is null"
    local_name, hub_name = STSB_SPLITS[split]
    local = Path(stsb_dir) / local_name
    if local.is_file():
        return read_sts(local), str(local)
    try:
        path = dataset_file(STSB_HUB_DATASET, hub_name)
    except HubUnavailable as error:
        return None, (
            f"STS-B {split} skipped: no {local_name} under '{stsb_dir}', and {error.reason}. "
            f"Set eval.stsb_dir to a folder with the original STS-B files ({STSB_URL}), "
            f"or run once online to cache '{STSB_HUB_DATASET}'"
        )
    return read_sts_jsonl(path), f"hf://datasets/{STSB_HUB_DATASET}/{hub_name}"
