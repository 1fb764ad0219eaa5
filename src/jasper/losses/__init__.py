"""Distillation losses: tensors in, a scalar (or named parts) out. None of them holds a model."""

from jasper.losses.cosine import cosine_loss
from jasper.losses.objective import DistillObjective
from jasper.losses.resim import resim_loss
from jasper.losses.similarity import similarity_loss

__all__ = ["DistillObjective", "cosine_loss", "resim_loss", "similarity_loss"]
