"""Closed-form head initialisation: ridge regression to the teacher space, PCA of it for short heads.

A fresh random head trained together with the encoder damages the encoder; the paper avoids that by
training the head alone first (stage 1). Solving for that head in closed form on the frozen pooled
features reaches the least-squares optimum at once, so stage 1 starts where it would have converged.
"""

from __future__ import annotations

import numpy as np
import torch

from jasper.errors import JasperError


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
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc  # (H, H)
    penalty = alpha * np.trace(gram) / gram.shape[0]
    weight = np.linalg.solve(gram + penalty * np.eye(gram.shape[0]), xc.T @ yc)  # (H, T)
    bias = y_mean - x_mean @ weight
    heads = {dims[0]: (weight.T, bias)}
    outputs = x @ weight + bias
    _, _, components = np.linalg.svd(outputs - outputs.mean(axis=0), full_matrices=False)  # (T', T)
    for dim in dims[1:]:
        if dim > components.shape[0]:
            raise JasperError(f"cannot initialise a {dim}-dim head from {components.shape[0]} directions")
        basis = components[:dim].T  # (T, dim)
        heads[dim] = ((weight @ basis).T, bias @ basis)
    return {
        d: (torch.tensor(w, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)) for d, (w, b) in heads.items()
    }
