"""Metrics as pure functions on vectors."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise each row. (N, D) -> (N, D)"""
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def paired_cosine(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Cosine of row i of `left` with row i of `right`. (N, D), (N, D) -> (N,)"""
    return np.sum(normalize_rows(left) * normalize_rows(right), axis=1)


def spearman100(predicted: np.ndarray, gold: np.ndarray) -> float:
    """Spearman rank correlation x 100."""
    return float(spearmanr(predicted, gold).statistic * 100.0)


def sts_spearman(left: np.ndarray, right: np.ndarray, gold: np.ndarray) -> float:
    """STS score as MTEB computes it: Spearman x 100 between pair cosines and gold scores."""
    return spearman100(paired_cosine(left, right), gold)


def mean_teacher_cosine(student: np.ndarray, teacher: np.ndarray) -> float:
    """Mean cosine between each student vector and its teacher vector (same dim)."""
    return float(np.mean(paired_cosine(student, teacher)))


def similarity_agreement(student: np.ndarray, teacher: np.ndarray) -> float:
    """Spearman x 100 between the student's and the teacher's pairwise similarities (i < j)."""
    s, t = normalize_rows(student), normalize_rows(teacher)
    rows, cols = np.triu_indices(len(s), k=1)
    return spearman100((s @ s.T)[rows, cols], (t @ t.T)[rows, cols])


def pearson100(predicted: np.ndarray, gold: np.ndarray) -> float:
    """Pearson correlation x 100."""
    return float(np.corrcoef(predicted, gold)[0, 1] * 100.0)


def cross_validated_accuracy(vectors: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Logistic-regression accuracy x 100, mean over stratified folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    scores = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(vectors, labels):
        model = LogisticRegression(max_iter=1000).fit(vectors[train], labels[train])
        scores.append(float((model.predict(vectors[test]) == labels[test]).mean()))
    return float(np.mean(scores) * 100.0)


def kmeans_v_measure(vectors: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """V-measure x 100 of k-means (k = number of distinct labels) against the labels."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import v_measure_score

    clusters = KMeans(len(np.unique(labels)), n_init=10, random_state=seed).fit_predict(vectors)
    return float(v_measure_score(labels, clusters) * 100.0)


def ndcg_at_k(ranking: np.ndarray, relevant: list[set[int]], k: int = 10) -> float:
    """Mean nDCG@k x 100 with binary relevance; ranking (Q, N) holds passage indices, best first."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for order, positives in zip(ranking, relevant, strict=True):
        gains = np.array([1.0 if int(p) in positives else 0.0 for p in order[:k]])
        ideal = discounts[: min(len(positives), k)].sum()
        scores.append(float((gains * discounts[: len(gains)]).sum() / ideal) if ideal else 0.0)
    return float(np.mean(scores) * 100.0)


def recall_at_k(ranking: np.ndarray, relevant: list[set[int]], k: int = 10) -> float:
    """Mean recall@k x 100: the share of each query's positives found in its top k."""
    scores = [
        len(positives & {int(p) for p in order[:k]}) / len(positives)
        for order, positives in zip(ranking, relevant, strict=True)
        if positives
    ]
    return float(np.mean(scores) * 100.0)
