"""Retrieval benchmarks in BEIR's layout, read from a tiny folder built here and scored as MTEB scores them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jasper.config import RetrievalBenchmarkConfig
from jasper.eval.beir import BeirError, BeirTask, document_text, graded_ndcg, read_beir_folder
from jasper.eval.offline_tasks import benchmark_tasks

DOCUMENTS = [
    {"_id": "d1", "title": "Cats", "text": "Cats purr."},
    {"_id": "d2", "title": "", "text": "Dogs bark. "},
    {"_id": "d3", "title": "Birds", "text": "Birds sing."},
    {"_id": "q2", "title": "Echo", "text": "A document sharing its id with a query."},
]
QUERIES = [{"_id": "q1", "text": "what purrs"}, {"_id": "q2", "text": "who barks"}, {"_id": "q3", "text": "unjudged"}]


def beir_folder(root: Path) -> Path:
    """A BEIR folder: corpus, queries, qrels for train and test (with BEIR's header line)."""
    folder = root / "tiny-beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCUMENTS))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t1\n")
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td3\t1\n")
    return folder


def test_a_document_is_its_title_and_text_as_mteb_joins_them():
    assert document_text({"title": "Cats", "text": "Cats purr."}) == "Cats Cats purr."
    assert document_text({"title": "", "text": "Dogs bark. "}) == "Dogs bark."


def test_the_folder_reads_into_query_and_document_rows(tmp_path):
    data = read_beir_folder(beir_folder(tmp_path), ["test", "train"])
    task = BeirTask.from_data("tiny-test", data, "test")
    assert task.query_ids == ["q1", "q2"]  # judged queries only, q3 has no judgement
    assert task.texts[:2] == ["what purrs", "who barks"] and task.texts[2] == "Cats Cats purr."
    assert task.roles == ["query"] * 2 + ["document"] * 4
    assert task.relevant == [{0: 1}, {1: 2, 2: 1}]
    train = BeirTask.from_data("tiny-train", data, "train")
    assert train.query_ids == ["q1"] and train.relevant == [{2: 1}]


def test_scores_graded_ndcg_and_ignores_a_document_with_the_querys_id(tmp_path):
    task = BeirTask.from_data("tiny-test", read_beir_folder(beir_folder(tmp_path), ["test"]), "test")
    # q1 finds d1 first; q2 finds its own id first (ignored), then d3 (relevance 1), then d2 (relevance 2)
    vectors = np.array(
        [
            [1.0, 0.0, 0.0, 0.0],  # q1
            [0.0, 0.0, 1.0, 0.0],  # q2
            [1.0, 0.0, 0.0, 0.0],  # d1
            [0.0, 0.6, 0.8, 0.0],  # d2
            [0.0, 0.0, 0.9, 0.436],  # d3
            [0.0, 0.0, 1.0, 0.0],  # q2 as a document: identical, never counted
        ]
    )
    scores = task.score(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    discounts = 1 / np.log2(np.arange(2, 5))
    q2 = (1 * discounts[0] + 2 * discounts[1]) / (2 * discounts[0] + 1 * discounts[1])
    assert scores["ndcg@10"] == pytest.approx((1.0 + q2) / 2 * 100)
    assert scores["recall@100"] == pytest.approx(100.0)
    assert graded_ndcg(np.array([[2, 0, 1]]), [{0: 1}], 10) == pytest.approx(100 / np.log2(3))


def test_missing_files_are_one_line(tmp_path):
    folder = beir_folder(tmp_path)
    with pytest.raises(BeirError, match=r"lacks qrels/dev.tsv"):
        read_beir_folder(folder, ["dev"])
    (folder / "queries.jsonl").write_text('{"_id": "q1"}\n')
    with pytest.raises(BeirError, match="needs an '_id' and a string 'text'"):
        read_beir_folder(folder, ["test"])


def test_the_local_folder_first_then_the_hub_then_a_note(tmp_path, monkeypatch):
    folder = beir_folder(tmp_path)
    local = RetrievalBenchmarkConfig(name="tiny", dir=str(folder), hub="mteb/tiny", splits=["train", "test"])
    tasks, notes = benchmark_tasks([local])
    assert [t.name for t in tasks] == ["tiny-train", "tiny-test"] and not notes
    asked: list[str] = []

    def from_hub(repo: str, splits: list[str]):
        asked.append(repo)
        return read_beir_folder(folder, splits)

    monkeypatch.setattr("jasper.eval.beir.read_beir_hub", from_hub)
    monkeypatch.setattr("jasper.hub.require", lambda *args, **kwargs: None)  # as if online
    absent = RetrievalBenchmarkConfig(name="tiny", dir=str(tmp_path / "absent"), hub="mteb/tiny")
    tasks, notes = benchmark_tasks([absent])
    assert asked == ["mteb/tiny"] and [t.name for t in tasks] == ["tiny-test"] and not notes
    monkeypatch.undo()  # offline again (HF_HUB_OFFLINE=1 in the tests): neither the folder nor the hub
    tasks, notes = benchmark_tasks([absent])
    assert not tasks and "tiny skipped" in notes[0] and "Point its `dir` at a BEIR folder" in notes[0]
    without_hub = RetrievalBenchmarkConfig(name="tiny", dir=str(tmp_path / "absent"))
    assert "names no `hub` id" in benchmark_tasks([without_hub])[1][0]
