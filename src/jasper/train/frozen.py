"""A frozen encoder's pooled outputs, computed once: for head-only stages and the closed-form head start."""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch

from jasper.models.head_init import ridge_heads
from jasper.models.student import Student, pack_for_inference
from jasper.train.stages import encoder_trains

logger = logging.getLogger(__name__)
POOLED_CACHE_BYTES = 2 * 1024**3


class FrozenFeatures:
    """The pooled encoder outputs of the training rows while the encoder is frozen; stale once it trains."""

    def __init__(self, student: Student, texts: list[str], train_rows: np.ndarray, wanted: bool = False) -> None:
        self.student, self.texts, self.train_rows = student, texts, train_rows
        self.wanted = wanted  # computed anyway (the ridge start needs them): always worth caching
        self._pooled: np.ndarray | None = None

    def pooled(self) -> np.ndarray:
        """(N_train, H) pooled outputs of the training rows, computed once."""
        if self._pooled is None:
            texts = [self.texts[int(r)] for r in self.train_rows]
            # a copy that only reads (packed matmuls on a CPU: the same float32 vectors, faster), at the training
            # cut: these stand in for the training forward's pooled outputs
            reader = pack_for_inference(copy.deepcopy(self.student).eval())
            found = reader.encode(texts, [None], normalize=False, progress=True, max_length=self.student.max_length)
            self._pooled = found[None]
        return self._pooled

    def forget(self) -> None:
        """The encoder changed: drop what was computed."""
        self._pooled = None

    def cache(self, steps_left: int, batch_size: int) -> torch.Tensor | None:
        """(n_texts, H) pooled outputs, rows outside training left at zero, when computing them once is cheaper
        than encoding every batch (the encoder frozen, small enough, and either wanted anyway, for the ridge start,
        or enough steps left); else None. A pure function of the config and the step: a resumed run decides alike."""
        if encoder_trains(self.student):
            return None
        rows = self.train_rows
        too_big = len(self.texts) * self.student.hidden_size * 4 > POOLED_CACHE_BYTES
        if too_big or (not self.wanted and steps_left * batch_size < len(rows)):
            return None
        cache = torch.zeros(len(self.texts), self.student.hidden_size)
        cache[torch.from_numpy(rows)] = torch.from_numpy(self.pooled())
        return cache.to(self.student.device)


def ridge_start(student: Student, pooled: np.ndarray, targets: np.ndarray, alpha: float) -> None:
    """Set every head to the closed-form ridge fit of the frozen features to the teacher vectors (short heads:
    its principal directions), so the first stage starts where a head-only stage would converge."""
    dims = [d for d in student.head_dims if str(d) in student.heads]
    fitted = ridge_heads(pooled, targets, dims, alpha)
    with torch.no_grad():
        for dim, (weight, bias) in fitted.items():
            student.head(dim).weight.copy_(weight)
            student.head(dim).bias.copy_(bias)
    logger.info("heads %s initialised by ridge regression on %d frozen rows", dims, len(targets))
