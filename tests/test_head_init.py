"""The closed-form head start: exact on rank-deficient outputs, and one clear line where it cannot work."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from jasper.errors import JasperError
from jasper.models.head_init import ridge_heads


def _features(rows: int, hidden: int, target: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pooled = rng.normal(size=(rows, hidden)) @ rng.normal(size=(hidden, hidden))
    targets = rng.normal(size=(rows, target))
    return pooled.astype(np.float32), targets.astype(np.float32)


def _reference(pooled: np.ndarray, targets: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """FC1 by a plain solve and the outputs' principal directions by LAPACK's gesvd (the slow, robust SVD)."""
    x, y = pooled.astype(np.float64), targets.astype(np.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    gram = xc.T @ xc
    weight = np.linalg.solve(gram + alpha * np.trace(gram) / len(gram) * np.eye(len(gram)), xc.T @ yc)
    outputs = xc @ weight
    _, _, components = scipy.linalg.svd(outputs, full_matrices=False, lapack_driver="gesvd")
    return weight, components


def test_rank_deficient_outputs_give_the_exact_principal_directions():
    # 24 features mapped to 48 dims: FC1's outputs have rank 24, as MiniLM's 384 features mapped to 768
    pooled, targets = _features(rows=500, hidden=24, target=48)
    heads = ridge_heads(pooled, targets, [48, 16, 8], alpha=0.1)
    weight, components = _reference(pooled, targets, 0.1)
    assert np.abs(heads[48][0].numpy().T - weight).max() < 1e-4
    for dim in (16, 8):
        found = heads[dim][0].numpy().astype(np.float64)  # (dim, H) = (W @ basis).T
        expected = (weight @ components[:dim].T).T
        cosines = np.abs((found * expected).sum(1)) / np.linalg.norm(found, axis=1) / np.linalg.norm(expected, axis=1)
        assert cosines.min() > 0.9999, cosines  # the same directions, up to sign
    # the short head's outputs are FC1's outputs projected on orthonormal directions: their variance is the top dims'
    projected = pooled @ heads[16][0].numpy().T
    full = pooled @ heads[48][0].numpy().T
    total = np.linalg.svd(full - full.mean(0), compute_uv=False) ** 2
    assert np.isclose(((projected - projected.mean(0)) ** 2).sum(), total[:16].sum(), rtol=1e-3)


def test_a_head_wider_than_the_outputs_rank_is_one_line():
    pooled, targets = _features(rows=200, hidden=6, target=12)
    with pytest.raises(JasperError, match="vary in only 6 directions"):
        ridge_heads(pooled, targets, [12, 8])


def test_identical_features_are_one_line_not_a_linalg_error():
    pooled = np.ones((50, 8), dtype=np.float32)
    targets = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    with pytest.raises(JasperError, match="same features"):
        ridge_heads(pooled, targets, [4])


def test_a_decomposition_failure_names_the_step(monkeypatch):
    def failing(matrix):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")

    monkeypatch.setattr(np.linalg, "eigh", failing)
    pooled, targets = _features(rows=50, hidden=4, target=8)
    with pytest.raises(JasperError, match=r"head initialisation \(ridge regression\) failed.*head_init=random"):
        ridge_heads(pooled, targets, [8, 2])
