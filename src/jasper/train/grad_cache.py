"""Gradient caching (Gao et al., 2021): the in-batch losses of a large batch, with the encoder's
activations held for one micro-batch at a time.

Plain gradient accumulation would change the objective (the similarity and ranking losses need every
pair of the batch). Instead: embed all micro-batches without a graph, compute the whole-batch loss on
those embeddings and its gradient with respect to them, then re-run each micro-batch with a graph and
push that gradient through it. The random state of each micro-batch is replayed, so dropout masks match.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from jasper.models.student import Student

LossOfPooled = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _restore(state: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def cached_step(
    student: Student,
    ids: Sequence[Sequence[int] | np.ndarray],
    micro_batch: int,
    loss_of_pooled: LossOfPooled,
    autocast: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> dict[str, torch.Tensor]:
    """Backward of `loss_of_pooled(pooled of all texts)` through the student, micro-batch by micro-batch.

    `ids` are the texts' token ids (`Student.token_ids`).

    Returns the loss parts; gradients are left in the parameters (heads and encoder) as one backward
    over the whole batch would leave them.
    """
    chunks = [ids[start : start + micro_batch] for start in range(0, len(ids), micro_batch)]
    states, pooled = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_rng_state(student.device))
            with autocast():
                pooled.append(student.pooled(student.collate(chunk)))
    whole = torch.cat(pooled).detach().requires_grad_(True)  # (B, H)
    parts = loss_of_pooled(whole)
    parts["loss"].backward()
    assert whole.grad is not None
    if any(p.requires_grad for p in student.backbone.parameters()):
        for chunk, state, grad in zip(chunks, states, whole.grad.split(micro_batch), strict=True):
            _restore(state, student.device)
            with autocast():
                again = student.pooled(student.collate(chunk))
            again.backward(grad)
    return parts
