"""Similarity-matrix loss: MSE between the student's and the teacher's in-batch cosine matrices."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def similarity_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """Cosine similarities between all rows. (B, D) -> (B, B)"""
    with torch.autocast(vectors.device.type, enabled=False):  # bf16 autocast: similarities in float32
        unit = F.normalize(vectors.to(torch.promote_types(vectors.dtype, torch.float32)), dim=-1)
        return unit @ unit.T


def similarity_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over all B^2 entries (diagonal included) of `(S S^T - T T^T)^2`. (B, Ds), (B, Dt) -> ()"""
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"similarity loss needs equal batch sizes, got {student.shape[0]} and {teacher.shape[0]}")
    return F.mse_loss(similarity_matrix(student), similarity_matrix(teacher.detach()))
