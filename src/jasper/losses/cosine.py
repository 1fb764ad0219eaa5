"""Cosine loss: mean over the batch of 1 - cos(student, teacher)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of `1 - s_x . t_x` over rows after L2-normalising both. (B, D), (B, D) -> ()"""
    if student.shape != teacher.shape:
        raise ValueError(
            f"cosine loss needs equal shapes, got student {tuple(student.shape)} and teacher {tuple(teacher.shape)}"
        )
    dtype = torch.promote_types(student.dtype, torch.float32)  # bf16 in, float32 math
    s = F.normalize(student.to(dtype), dim=-1)
    t = F.normalize(teacher.detach().to(dtype), dim=-1)  # targets: no gradient to the teacher
    return (1.0 - (s * t).sum(dim=-1)).mean()
