"""Relative-similarity ranking loss (PAPER.md): a hinge over every two in-batch text pairs.

For pairs a = (i, j) and b = (k, l), i < j and k < l, with teacher similarity t_a > t_b (ties do not
count as greater), penalise `max(0, s_b - s_a + margin)`; the loss is the mean over all C(P, 2)
pair-of-pair comparisons, P = C(B, 2).

`resim_loss` uses the exact O(P log^2 P) implementation of `resim_fast` (margin > 0);
`resim_loss_reference` is the plain P x P version the paper's authors wrote, kept as the reference.
Both compare the teacher's similarities at float32 precision (`teacher_pair_similarities`), so a tie is a
tie on every CPU and GPU.
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


def teacher_pair_similarities(teacher: torch.Tensor) -> torch.Tensor:
    """The teacher's pair similarities as the ranking loss compares them. (B, D) -> (P,) float32

    Computed in float64 and rounded to float32: pairs that are equal up to rounding (duplicate rows, whose
    cosines a matmul may give as 1.0 and 0.9999999999999997 depending on the CPU's kernels) become exact
    ties on every machine, and ties do not count as ordered.
    """
    return pair_similarities(teacher.detach().to(torch.float64)).to(torch.float32)


def resim_loss_reference(student: torch.Tensor, teacher: torch.Tensor, margin: float = 0.015) -> torch.Tensor:
    """The plain P x P implementation, as the paper's authors wrote it. (B, Ds), (B, Dt) -> ()"""
    s = pair_similarities(student)
    t = teacher_pair_similarities(teacher)
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
        side = teacher_side(teacher_pair_similarities(teacher))
    return resim_from_pairs(pair_similarities(student), side, margin)
