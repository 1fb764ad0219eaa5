"""What the text and the vision runners share: the objective, resuming a stage, and where training stands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from jasper.config import RunConfig
from jasper.losses import DistillObjective
from jasper.train.checkpoint import TrainState, set_rng_state


def build_objective(config: RunConfig) -> DistillObjective:
    """The run's weighted three-loss objective (`loss:` in the config)."""
    return DistillObjective(**config.loss.model_dump(exclude={"short_head_target"}))


def resume_stage(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    resume: TrainState | None,
    load_optimizer: Callable[[TrainState], None] | None = None,
) -> int:
    """Restore a stage's optimizer, schedule and random generators from `resume`; the first step to run.

    `load_optimizer` replaces the optimizer's own restore (a DeepSpeed engine reloads its shards itself).
    """
    start = 0
    if resume is not None and resume.step:
        if load_optimizer is not None:
            load_optimizer(resume)
        else:
            optimizer.load_state_dict(resume.optimizer or {})
        scheduler.load_state_dict(resume.scheduler or {})
        start = resume.step
    if resume is not None and resume.rng is not None:
        set_rng_state(resume.rng)
    return start


@dataclass
class Position:
    """Where training stands (stage index, steps done in it) and where its last checkpoint stands."""

    config: RunConfig
    checkpoint: Path
    here: tuple[int, int] = (0, 0)
    saved: tuple[int, int] | None = None

    def interrupted(self) -> str:
        """What Ctrl-C here leaves behind, and where `jasper train` starts again."""
        index, step = self.here
        stage = self.config.stages[min(index, len(self.config.stages) - 1)]
        said = f"training interrupted in stage {index + 1} '{stage.name}' after step {step}"
        if self.saved is None:
            return f"{said}; no checkpoint was written yet: `jasper train` starts again from the beginning"
        saved_index, saved_step = self.saved
        lost = step - saved_step if saved_index == index else step
        return (
            f"{said}; the checkpoint {self.checkpoint} holds stage {saved_index + 1} step {saved_step}: "
            f"`jasper train` resumes there ({lost} step(s) to repeat)"
        )

    def kept(self) -> str:
        """Which checkpoint a stop keeps, in words."""
        if self.saved is None:
            return "no checkpoint yet"
        return f"the checkpoint at stage {self.saved[0] + 1} step {self.saved[1]}"
