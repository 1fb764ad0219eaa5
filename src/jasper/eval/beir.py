"""Retrieval benchmarks in BEIR's layout (SciFact, NFCorpus, ...), scored as MTEB scores them.

A BEIR folder holds `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl` (`_id`, `text`) and `qrels/<split>.tsv`
(`query-id`, `corpus-id`, `score`, with a header). A document is read as `title + " " + text` (stripped), each model
with its own prompts (queries as queries, documents as documents); the primary score is nDCG@10 (graded gains, as
trec_eval's ndcg_cut), recall@100 beside it, and a document whose id equals the query's is never counted.
Online, the same task loads by its hub id (MTEB's copy, e.g. `mteb/scifact`) through `datasets`.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jasper.data.corpus import read_records
from jasper.errors import JasperError

logger = logging.getLogger(__name__)
NDCG_AT = 10
RECALL_AT = 100


class BeirError(JasperError):
    """A BEIR folder or hub copy that cannot be read as one."""


@dataclass
class BeirData:
    """A BEIR dataset: documents and queries by id, and the judgements of each split."""

    documents: dict[str, str]  # id -> "title text"
    queries: dict[str, str]  # id -> text
    qrels: dict[str, dict[str, dict[str, int]]]  # split -> query id -> document id -> relevance


def document_text(record: dict[str, Any]) -> str:
    """MTEB's document: its title and text joined by a space (the text alone without a title), stripped."""
    title, text = str(record.get("title") or ""), str(record.get("text") or "")
    return f"{title} {text}".strip() if title else text.strip()


def _records(path: Path, what: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for number, record in read_records(path, what, BeirError):
        if "_id" not in record or not isinstance(record.get("text"), str):
            raise BeirError(f"{what} '{path}' line {number} needs an '_id' and a string 'text'")
        found[str(record["_id"])] = record
    if not found:
        raise BeirError(f"{what} '{path}' holds no records")
    return found


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> {document id: relevance} from a BEIR qrels file (tab-separated, header line)."""
    judged: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if number == 1 and row and row[0] == "query-id":
                continue
            if len(row) < 3:
                raise BeirError(
                    f"qrels '{path}' line {number} has {len(row)} fields, expected query-id corpus-id score"
                )
            try:
                judged.setdefault(row[0], {})[row[1]] = int(float(row[2]))
            except ValueError:
                raise BeirError(f"qrels '{path}' line {number}: the score '{row[2]}' is not a number") from None
    return judged


def read_beir_folder(folder: str | Path, splits: list[str]) -> BeirData:
    """A BEIR folder: its corpus, queries and the qrels of `splits`."""
    folder = Path(folder)
    missing = [p for p in ("corpus.jsonl", "queries.jsonl") if not (folder / p).is_file()]
    missing += [f"qrels/{s}.tsv" for s in splits if not (folder / "qrels" / f"{s}.tsv").is_file()]
    if missing:
        raise BeirError(f"BEIR folder '{folder}' lacks {', '.join(missing)}")
    documents = {key: document_text(r) for key, r in _records(folder / "corpus.jsonl", "BEIR corpus").items()}
    queries = {key: str(r["text"]) for key, r in _records(folder / "queries.jsonl", "BEIR queries").items()}
    return BeirData(documents, queries, {s: read_qrels(folder / "qrels" / f"{s}.tsv") for s in splits})


def read_beir_hub(repo: str, splits: list[str]) -> BeirData:
    """MTEB's hub copy of a BEIR dataset (configs `corpus`, `queries` and `default` for the qrels)."""
    try:
        import datasets
    except ImportError:
        raise BeirError(f"'{repo}' from the hub needs `datasets`: pip install 'jasper-distill[datasets]'") from None
    corpus = datasets.load_dataset(repo, "corpus", split="corpus")
    queries = datasets.load_dataset(repo, "queries", split="queries")
    qrels: dict[str, dict[str, dict[str, int]]] = {}
    for split in splits:
        judged: dict[str, dict[str, int]] = {}
        for row in datasets.load_dataset(repo, "default", split=split):
            judged.setdefault(str(row["query-id"]), {})[str(row["corpus-id"])] = int(row["score"])
        qrels[split] = judged
    return BeirData(
        {str(r["_id"]): document_text(r) for r in corpus},
        {str(r["_id"]): str(r["text"]) for r in queries},
        qrels,
    )


@dataclass
class BeirTask:
    """One split of a BEIR dataset as a task: its judged queries, then every document; `roles` say which is which."""

    name: str
    query_ids: list[str]
    document_ids: list[str]
    relevant: list[dict[int, int]]  # per query: document index -> relevance (> 0)
    texts: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    with_teachers: bool = True  # whether the teachers are scored on it too (`teachers` of its config)

    @classmethod
    def from_data(cls, name: str, data: BeirData, split: str) -> BeirTask:
        """The queries judged in `split` (in id order) against the whole corpus."""
        document_ids = list(data.documents)
        index = {key: i for i, key in enumerate(document_ids)}
        judged = data.qrels[split]
        query_ids = [q for q in sorted(judged) if q in data.queries and any(s > 0 for s in judged[q].values())]
        relevant = [{index[d]: s for d, s in judged[q].items() if d in index and s > 0} for q in query_ids]
        texts = [data.queries[q] for q in query_ids] + [data.documents[d] for d in document_ids]
        roles = ["query"] * len(query_ids) + ["document"] * len(document_ids)
        return cls(name, query_ids, document_ids, relevant, texts, roles)

    def score(self, vectors: np.ndarray) -> dict[str, float]:
        """nDCG@10 and recall@100 x 100 of the cosine ranking (vectors L2-normalised, row-aligned with `texts`)."""
        queries, documents = vectors[: len(self.query_ids)], vectors[len(self.query_ids) :]
        similarity = queries.astype(np.float32) @ documents.astype(np.float32).T  # (Q, D)
        positions = {d: i for i, d in enumerate(self.document_ids)}
        for row, query in enumerate(self.query_ids):  # MTEB's ignore_identical_ids
            if query in positions:
                similarity[row, positions[query]] = -np.inf
        depth = min(RECALL_AT, similarity.shape[1])
        top = np.argpartition(-similarity, depth - 1, axis=1)[:, :depth]
        ranking = np.take_along_axis(top, np.argsort(-np.take_along_axis(similarity, top, 1), axis=1), 1)
        return {
            f"ndcg@{NDCG_AT}": graded_ndcg(ranking, self.relevant, NDCG_AT),
            f"recall@{RECALL_AT}": _recall(ranking, self.relevant),
        }


def graded_ndcg(ranking: np.ndarray, relevant: list[dict[int, int]], k: int) -> float:
    """Mean nDCG@k x 100, gain = relevance (trec_eval's ndcg_cut); ranking (Q, >=k) holds document indices."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for order, judged in zip(ranking, relevant, strict=True):
        gains = np.array([judged.get(int(d), 0) for d in order[:k]], dtype=np.float64)
        ideal = np.sort(np.array(list(judged.values()), dtype=np.float64))[::-1][:k]
        best = float((ideal * discounts[: len(ideal)]).sum())
        scores.append(float((gains * discounts[: len(gains)]).sum()) / best if best else 0.0)
    return float(np.mean(scores) * 100.0)


def _recall(ranking: np.ndarray, relevant: list[dict[int, int]]) -> float:
    found = [
        len(set(judged) & {int(d) for d in order}) / len(judged)
        for order, judged in zip(ranking, relevant, strict=True)
    ]
    return float(np.mean(found) * 100.0)
