"""Several processes (launched by `accelerate launch` or `torchrun`).

Teacher encoding: each rank computes its own shards of the store. Training: DDP, with the batch's
embeddings gathered across ranks so that N processes of B/N rows optimise the same objective as one of B rows.

The similarity and ranking losses need every pair of the global batch. Each rank embeds its own rows,
`all_gather` (the autograd-aware one) assembles the global batch, every rank computes the same loss, and
the gather's backward returns to each rank the gradient of its own rows (summed over the N identical
losses; DDP's gradient averaging divides by N again).
"""

from __future__ import annotations

import os
from collections.abc import Sized
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from jasper.runtime import pick_device


@dataclass(frozen=True)
class Ranks:
    """This process's place among the launched processes (teaching or training)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """Whether more than one process trains."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and the final student."""
        return self.rank == 0


# at the end of `jasper teach` ranks wait while rank 0 joins the shards (minutes for a big store)
BARRIER_TIMEOUT = timedelta(hours=2)


def setup(device_type: str) -> Ranks:
    """Join the process group that the launcher described in the environment (or stay alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=BARRIER_TIMEOUT)
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def setup_device(name: str) -> tuple[torch.device, Ranks]:
    """The run's device ('auto' resolved) and ranks; under several GPU processes each takes its LOCAL_RANK GPU."""
    device = pick_device(name)
    ranks = setup(device.type)
    if ranks.active and device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
    return device, ranks


def local_rows(rows: Sized, ranks: Ranks) -> slice:
    """This rank's share of a global batch (contiguous, equal sizes)."""
    share = len(rows) // ranks.world
    return slice(ranks.rank * share, (ranks.rank + 1) * share)


def gather(vectors: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """All ranks' rows in rank order, gradients flowing back to each rank's own. (b, D) -> (N b, D)"""
    if not ranks.active:
        return vectors
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(vectors.contiguous()), dim=0)


def average_gradients(module: torch.nn.Module, ranks: Ranks) -> None:
    """Average the gradients over ranks in one all-reduce, as DDP would. Every rank runs the same code path,
    so the same parameters hold gradients on all of them."""
    if not ranks.active:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ranks.world
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def barrier(ranks: Ranks) -> None:
    """Wait for every rank (no-op alone)."""
    if ranks.active:
        dist.barrier()
