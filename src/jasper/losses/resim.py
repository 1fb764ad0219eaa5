"""Relative-similarity ranking loss (PAPER.md): a hinge over every two in-batch text pairs.

For pairs a = (i, j) and b = (k, l), i < j and k < l, with teacher similarity t_a > t_b (ties do not
count as greater), penalise `max(0, s_b - s_a + margin)`; the loss is the mean over all C(P, 2)
pair-of-pair comparisons, P = C(B, 2).

`resim_loss` uses the exact O(P log^2 P) implementation of `resim_fast` (margin > 0);
`resim_loss_reference` is the plain P x P version the paper's authors wrote, kept as the reference.
"""

from __future__ import annotations

import functools

import torch

from jasper.losses.resim_fast import MIN_MARGIN, TeacherSide, resim_from_pairs, teacher_side
from jasper.losses.similarity import similarity_matrix


@functools.cache
def _upper_triangle(batch: int, device: torch.device) -> torch.Tensor:
    rows, cols = torch.triu_indices(batch, batch, offset=1, device=device)
    return rows * batch + cols


def pair_similarities(vectors: torch.Tensor) -> torch.Tensor:
    """Upper-triangle (i < j) cosine similarities, row-major. (B, D) -> (P,)"""
    sims = similarity_matrix(vectors)
    return sims.reshape(-1)[_upper_triangle(sims.shape[0], sims.device)]


def resim_loss_reference(student: torch.Tensor, teacher: torch.Tensor, margin: float = 0.015) -> torch.Tensor:
    """The plain P x P implementation, as the paper's authors wrote it. (B, Ds), (B, Dt) -> ()"""
    s = pair_similarities(student)
    t = pair_similarities(teacher.detach())
    n_pairs = s.shape[0]
    if n_pairs < 2:
        return s.sum() * 0.0
    greater = t[:, None] > t[None, :]  # (P, P): row pair ranked above column pair by the teacher
    hinge = torch.relu(s[None, :] - s[:, None] + margin)
    comparisons = n_pairs * (n_pairs - 1) / 2
    return (hinge * greater).sum() / comparisons


def resim_loss(
    student: torch.Tensor, teacher: torch.Tensor, margin: float = 0.015, side: TeacherSide | None = None
) -> torch.Tensor:
    """Relative-similarity ranking loss. (B, Ds), (B, Dt) -> ()

    `side` (`teacher_side` of the teacher's pair similarities) can be passed to share the teacher
    side between several heads; a margin below MIN_MARGIN (1e-6) falls back to the reference implementation.
    """
    if margin < MIN_MARGIN:
        return resim_loss_reference(student, teacher, margin)
    if side is None:
        side = teacher_side(pair_similarities(teacher.detach()))
    return resim_from_pairs(pair_similarities(student), side, margin)
