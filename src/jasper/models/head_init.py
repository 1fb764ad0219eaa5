"""Closed-form head initialisation: ridge regression to the teacher space, PCA of it for short heads.

A fresh random head trained together with the encoder damages the encoder; the paper avoids that by
training the head alone first (stage 1). Solving for that head in closed form on the frozen pooled
features reaches the least-squares optimum at once, so stage 1 starts where it would have converged.

Every decomposition here is a symmetric eigendecomposition of a small (H, H) matrix in the feature space:
FC1's outputs have rank at most H (384 for MiniLM) while they are T wide (768), and a general SVD of such a
rank-deficient (N, T) matrix fails to converge on some BLAS builds; `eigh` of a symmetric matrix does not.
"""

from __future__ import annotations

import numpy as np
import torch

from jasper.errors import JasperError

RELATIVE_FLOOR = 1e-10  # a direction with less variance than this share of the largest carries none


def _eigh(matrix: np.ndarray, step: str) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues, eigenvectors) of a symmetric matrix, largest first; a failure is one line naming `step`."""
    symmetric = (matrix + matrix.T) / 2
    try:
        values, vectors = np.linalg.eigh(symmetric)
    except np.linalg.LinAlgError as error:
        raise JasperError(
            f"head initialisation ({step}) failed: {error}. The frozen features may be degenerate (all texts alike?); "
            "use student.head_init=random, or a larger and more varied corpus"
        ) from None
    return values[::-1], vectors[:, ::-1]


def ridge_map(spectrum: tuple[np.ndarray, np.ndarray], xc: np.ndarray, yc: np.ndarray, alpha: float) -> np.ndarray:
    """The ridge solution W (H, T) of centred targets `yc` (N, T) on centred features `xc` (N, H), from the
    `spectrum` (eigenvalues, eigenvectors) of xc^T xc; the penalty is `alpha` times the mean feature variance, so
    it does not depend on the features' scale."""
    values, vectors = spectrum
    penalty = alpha * float(values.sum()) / len(values)
    if not np.isfinite(penalty) or penalty <= 0:
        raise JasperError(
            "head initialisation (ridge regression) failed: the frozen encoder gives every training text the same "
            "features. Use student.head_init=random, or check the corpus"
        )
    # (G + pI)^-1 = V diag(1 / (l + p)) V^T: exact for any G, as p > 0
    return vectors @ ((vectors.T @ (xc.T @ yc)) / (values + penalty)[:, None])


def principal_directions(spectrum: tuple[np.ndarray, np.ndarray], weight: np.ndarray, count: int) -> np.ndarray:
    """The top `count` principal directions (count, T) of FC1's centred outputs xc @ W, computed in the feature
    space: with xc^T xc = V L V^T (`spectrum`), the outputs' right singular vectors are those of
    M = L^1/2 V^T W (H, T), found from the eigendecomposition of M M^T (H, H)."""
    values, vectors = spectrum
    scaled = np.sqrt(np.clip(values, 0.0, None))[:, None] * (vectors.T @ weight)  # M: (H, T)
    energy, left = _eigh(scaled @ scaled.T, "principal directions")  # singular values squared, largest first
    usable = int((energy > RELATIVE_FLOOR * max(float(energy[0]), 0.0)).sum()) if len(energy) else 0
    if count > usable:
        raise JasperError(
            f"cannot initialise a {count}-dim head: FC1's outputs on the training texts vary in only {usable} "
            "directions. Use a smaller head, more varied texts, or student.head_init=random"
        )
    directions = (scaled.T @ left[:, :count]) / np.sqrt(energy[:count])  # (T, count), orthonormal columns
    return np.asarray(directions.T)


def ridge_heads(
    pooled: np.ndarray, targets: np.ndarray, dims: list[int], alpha: float = 0.1
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """{dim: (weight (dim, H), bias (dim,))}; dims[0] must be the target width.

    FC1 = ridge regression of `targets` (N, T) on `pooled` (N, H), the penalty `alpha` relative to
    the mean feature variance; a short head of width d = FC1 followed by the top-d principal
    directions of FC1's outputs on the same rows.
    """
    if dims[0] != targets.shape[1]:
        raise JasperError(f"FC1 has {dims[0]} dims but the teacher vectors have {targets.shape[1]}")
    x = pooled.astype(np.float64)
    y = targets.astype(np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc = x - x_mean
    spectrum = _eigh(xc.T @ xc, "ridge regression")  # of the (H, H) feature covariance, shared by both steps
    weight = ridge_map(spectrum, xc, y - y_mean, alpha)  # (H, T)
    bias = y_mean - x_mean @ weight
    heads = {dims[0]: (weight.T, bias)}
    if len(dims) > 1:
        components = principal_directions(spectrum, weight, max(dims[1:]))  # (d_max, T)
        for dim in dims[1:]:
            basis = components[:dim].T  # (T, dim)
            heads[dim] = ((weight @ basis).T, bias @ basis)
    return {
        d: (torch.tensor(w, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)) for d, (w, b) in heads.items()
    }
