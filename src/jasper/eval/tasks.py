"""Evaluation tasks: each lists the texts it needs and scores their vectors with a pure metric."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from jasper.eval import metrics


class Task(Protocol):
    """A task: `texts` to embed, each read in its role (`roles`: text, query or document, with that role's prompt),
    and `score(vectors)` -> {metric name: value} (vectors row-aligned, L2-normalised)."""

    name: str
    texts: list[str]

    @property
    def roles(self) -> list[str]:
        """The role each text is read in (with that role's prompt): text, query or document."""
        ...

    def score(self, vectors: np.ndarray) -> dict[str, float]:
        """Scores from the vectors of `texts`."""
        ...


def metric_names(task: str, values: dict[str, float]) -> list[tuple[str, float]]:
    """A task's scores under their report names: the task's own name for a single metric, `task:metric` for
    several (retrieval's ndcg@10 and recall@10)."""
    return [(task if len(values) == 1 else f"{task}:{metric}", value) for metric, value in values.items()]


@dataclass
class PairSimilarityTask:
    """Pairs of texts with gold similarities: STS, word similarity, document similarity."""

    name: str
    left: list[str]
    right: list[str]
    gold: np.ndarray
    correlation: str = "spearman"  # or "pearson"
    texts: list[str] = field(init=False)
    roles: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.texts = list(dict.fromkeys(self.left + self.right))
        self.roles = ["text"] * len(self.texts)

    def score(self, vectors: np.ndarray) -> dict[str, float]:
        """Correlation x 100 between pair cosines and gold scores."""
        index = {t: i for i, t in enumerate(self.texts)}
        left = vectors[[index[t] for t in self.left]]
        right = vectors[[index[t] for t in self.right]]
        cosines = metrics.paired_cosine(left, right)
        if self.correlation == "pearson":
            return {"pearson": metrics.pearson100(cosines, self.gold)}
        return {"spearman": metrics.spearman100(cosines, self.gold)}


@dataclass
class ClassificationTask:
    """Logistic regression on the vectors, stratified k-fold accuracy."""

    name: str
    texts: list[str]
    labels: np.ndarray
    folds: int = 5

    @property
    def roles(self) -> list[str]:
        """Every text is plain text."""
        return ["text"] * len(self.texts)

    def score(self, vectors: np.ndarray) -> dict[str, float]:
        """Mean accuracy x 100 over the folds."""
        return {"accuracy": metrics.cross_validated_accuracy(vectors, self.labels, self.folds)}


@dataclass
class ClusteringTask:
    """k-means with k = number of labels, scored by V-measure (as MTEB's clustering tasks)."""

    name: str
    texts: list[str]
    labels: np.ndarray

    @property
    def roles(self) -> list[str]:
        """Every text is plain text."""
        return ["text"] * len(self.texts)

    def score(self, vectors: np.ndarray) -> dict[str, float]:
        """V-measure x 100."""
        return {"v_measure": metrics.kmeans_v_measure(vectors, self.labels)}


@dataclass
class RetrievalTask:
    """Queries against a passage corpus with known relevant passages."""

    name: str
    queries: list[str]
    passages: list[str]
    relevant: list[set[int]]  # per query, indices into passages
    k: int = 10
    texts: list[str] = field(init=False)
    roles: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.texts = self.queries + self.passages
        self.roles = ["query"] * len(self.queries) + ["document"] * len(self.passages)

    def score(self, vectors: np.ndarray) -> dict[str, float]:
        """nDCG@k and recall@k x 100 (cosine ranking of all passages)."""
        queries, passages = vectors[: len(self.queries)], vectors[len(self.queries) :]
        ranking = np.argsort(-(queries @ passages.T), axis=1)
        return {
            f"ndcg@{self.k}": metrics.ndcg_at_k(ranking, self.relevant, self.k),
            f"recall@{self.k}": metrics.recall_at_k(ranking, self.relevant, self.k),
        }
