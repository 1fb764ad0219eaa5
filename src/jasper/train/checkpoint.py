"""Training state on disk: one file, written atomically, enough to resume mid-stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from jasper.io import atomic_write


@dataclass
class TrainState:
    """Where training stands: `stage` (index) and `step` (optimizer steps done in it)."""

    stage: int = 0
    step: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: Any = None
    deepspeed_tag: str | None = None  # under DeepSpeed: the folder of the ranks' optimizer shards

    def state_dict(self) -> dict[str, Any]:
        """Everything, for torch.save."""
        return dict(self.__dict__)


def save_checkpoint(path: Path, state: TrainState) -> None:
    """Write `state` to `path` atomically."""
    atomic_write(path, lambda tmp: torch.save(state.state_dict(), tmp))


def load_checkpoint(path: Path) -> TrainState | None:
    """The saved state, or None when there is no checkpoint."""
    if not Path(path).is_file():
        return None
    data = torch.load(path, map_location="cpu", weights_only=False)
    return TrainState(**data)
