"""The module a stage steps through: the student alone, DDP around it, or a DeepSpeed engine."""

from __future__ import annotations

import logging
from typing import Any

import torch

from jasper.config import StageConfig
from jasper.distributed import Ranks
from jasper.models.student import Student
from jasper.train.deepspeed import deepspeed_config, launched_with_deepspeed
from jasper.train.deepspeed import initialize as deepspeed_initialize

logger = logging.getLogger(__name__)


def stage_module(
    student: Student, optimizer: torch.optim.Optimizer, stage: StageConfig, ranks: Ranks, bf16: bool
) -> tuple[torch.nn.Module, Any]:
    """(the module to call, the DeepSpeed engine or None) for one stage."""
    if launched_with_deepspeed():
        config = deepspeed_config(stage.name, stage.batch_size, ranks.world, stage.micro_batch_size, bf16)
        engine = deepspeed_initialize(student, optimizer, config)
        zero = config.get("zero_optimization", {}).get("stage", 0)
        logger.info("stage '%s': DeepSpeed ZeRO-%d over %d processes", stage.name, zero, ranks.world)
        return engine, engine
    # gradient caching runs its own backward passes outside the module's forward, where DDP's hooks do not see
    # them: those stages average the gradients across ranks after the step's backward instead
    if ranks.active and not stage.micro_batch_size:
        ids = [student.device.index] if student.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(student, device_ids=ids, find_unused_parameters=True), None
    return student, None
