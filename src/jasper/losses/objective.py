"""The weighted sum of the three losses over the active heads, with every part named for logging."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from jasper.losses.cosine import cosine_loss
from jasper.losses.resim import resim_loss, resim_loss_reference, teacher_pair_similarities
from jasper.losses.resim_fast import MIN_MARGIN, TeacherSide, teacher_side
from jasper.losses.similarity import similarity_loss


@dataclass(frozen=True)
class DistillObjective:
    """`10 L_cos + 200 L_sim + 20 L_resim` (weights configurable) summed over heads."""

    cosine: float = 10.0
    similarity: float = 200.0
    resim: float = 20.0
    margin: float = 0.015
    resim_impl: str = "fast"  # "fast" (exact, O(P log^2 P)) or "reference" (P x P)

    def head_parts(
        self, student: torch.Tensor, teacher: torch.Tensor, losses: Sequence[str], side: TeacherSide | None = None
    ) -> dict[str, torch.Tensor]:
        """Unweighted parts for one head. (B, D), (B, Dt); `side` = the shared teacher side of resim."""
        parts: dict[str, torch.Tensor] = {}
        if "cosine" in losses:
            parts["cosine"] = cosine_loss(student, teacher)
        if "similarity" in losses:
            parts["similarity"] = similarity_loss(student, teacher)
        if "resim" in losses:
            if self.resim_impl == "reference":
                parts["resim"] = resim_loss_reference(student, teacher, self.margin)
            else:
                parts["resim"] = resim_loss(student, teacher, self.margin, side)
        return parts

    def __call__(
        self,
        heads: dict[int, torch.Tensor],
        teacher: torch.Tensor,
        losses: Mapping[int, Sequence[str]],
        targets: Mapping[int, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """{"loss": weighted total, "<part>@<dim>": unweighted part} for each head in `heads`.

        `targets` gives some heads another target than `teacher` (self-distillation: the student's own
        detached FC1 vectors for the short heads).
        """
        weights = {"cosine": self.cosine, "similarity": self.similarity, "resim": self.resim}
        out: dict[str, torch.Tensor] = {}
        total = teacher.new_zeros(())
        sides: dict[int, TeacherSide] = {}  # the ranking loss's target side, once per distinct target tensor
        for dim, vectors in heads.items():
            target = (targets or {}).get(dim, teacher)
            fast = self.resim_impl == "fast" and self.margin >= MIN_MARGIN
            if fast and "resim" in losses[dim] and id(target) not in sides:
                sides[id(target)] = teacher_side(teacher_pair_similarities(target))
            for name, value in self.head_parts(vectors, target, losses[dim], sides.get(id(target))).items():
                out[f"{name}@{dim}"] = value
                total = total + weights[name] * value
        out["loss"] = total
        return out
