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
