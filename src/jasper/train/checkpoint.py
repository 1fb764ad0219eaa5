"""Training state on disk: one file, written atomically, enough to resume exactly (weights, optimizer, schedule,
and every random generator training draws from), loaded without unpickling arbitrary objects."""

from __future__ import annotations

import pickle
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jasper.errors import JasperError
from jasper.io import atomic_write
from jasper.runtime import kill_point


@dataclass
class TrainState:
    """Where training stands: `stage` (index) and `step` (optimizer steps done in it).

    The data order needs no state of its own: a step's rows are a pure function of (seed, stage, epoch, step).
    """

    stage: int = 0
    step: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: Any = None  # rng_state(); older checkpoints hold torch's CPU state alone
    deepspeed_tag: str | None = None  # under DeepSpeed: the folder of the ranks' optimizer shards
    best: dict[str, Any] | None = None  # keep_best: the stage, step, judged heads and score of the best so far

    def state_dict(self) -> dict[str, Any]:
        """Everything, for torch.save."""
        return dict(self.__dict__)


class CheckpointError(JasperError):
    """A checkpoint that cannot be read."""


def rng_state() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and python generators, as tensors and plain values."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(position), int(has_gauss), cached],
        "python": [version, list(internal), gauss],
    }


def set_rng_state(state: Any) -> None:
    """Restore what `rng_state` captured (or a bare torch CPU state, from older checkpoints)."""
    if isinstance(state, torch.Tensor):
        torch.set_rng_state(state)
        return
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: Path, state: TrainState) -> None:
    """Write `state` to `path` atomically (a kill mid-write leaves the previous checkpoint)."""

    def write(tmp: Path) -> None:
        torch.save(state.state_dict(), tmp)
        _WRITES[0] += 1
        kill_point("JASPER_KILL_IN_CHECKPOINT", _WRITES[0])  # for the chaos test: written, not yet in place

    atomic_write(path, write)


_WRITES = [0]  # checkpoints this process has written


def load_checkpoint(path: Path) -> TrainState | None:
    """The saved state, or None when there is none; tensors and plain values only (no code is unpickled)."""
    if not Path(path).is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        text = str(error).strip()
        first = text.splitlines()[0].split(". ")[0] if text else type(error).__name__
        raise CheckpointError(
            f"checkpoint '{path}' cannot be read ({first}): it is truncated, damaged or not jasper's. Delete it to "
            "train the run again from the start, or use a new name="
        ) from None
    if not isinstance(data, dict) or "stage" not in data:
        raise CheckpointError(f"checkpoint '{path}' is not a jasper training state")
    return TrainState(**data)
