"""Config of the training stages: what trains, which heads and losses, the schedule and the data order."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from jasper.config.base import LossName, Strict


class StageConfig(Strict):
    """One training stage: what trains, which heads and losses, and the schedule."""

    name: str
    # vision: stage 4, the image side only (projection of the image encoder's tokens), after the text stages
    train: Literal["heads", "last_layers", "all", "vision"]
    last_layers: int = Field(default=0, ge=0)
    heads: list[int] | Literal["fc1", "all"] = "fc1"  # heads whose losses apply
    train_heads: list[int] | None = None  # heads whose weights train; None = the active heads
    # FC1 learns the teachers' vectors by cosine alone by default: at equal budget it beat the paper's three losses
    # on STS-B dev (docs/results.md#the-recipe); configs/jasper_paper.yaml names all three
    fc1_losses: list[LossName] = ["cosine"]
    short_head_losses: list[LossName] = ["similarity", "resim"]
    lr: float = Field(gt=0)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    batch_size: int = Field(default=128, ge=2)
    micro_batch_size: int | None = Field(default=None, gt=0)  # gradient caching: same objective, less memory
    # batches drawn from pools of this many batches sorted by token length: little padding, each row still
    # once per epoch; 1 = plain random batches
    length_pool: int = Field(default=1, ge=1)
    # a batch holds at most batch_size rows and at most this many padded tokens (rows x its longest text): batches
    # of long documents hold fewer rows than batches of short sentences (with length_pool, lengths sort together)
    max_batch_tokens: int | None = Field(default=None, gt=0)
    steps: int | None = Field(default=None, gt=0)
    epochs: float | None = Field(default=None, gt=0)
    checkpoint_every: int = Field(default=200, gt=0)
    # loss parts are read from the device every this many steps (one host sync instead of one per step; on a
    # GPU the host then runs ahead). The finite check stays before every update: a bad step's update is
    # skipped on the device and the run stops at the next read, naming that step
    log_every: int = Field(default=1, gt=0)
    # random batches, or clustered: `cluster_share` of each batch from one k-means cluster of the training rows'
    # teacher vectors (`clusters` of them; None = training rows // (8 x batch_size)), the rest at random
    batching: Literal["random", "clustered"] = "random"
    cluster_share: float = Field(default=0.5, gt=0, le=1)
    clusters: int | None = Field(default=None, ge=2)
    # score STS-B dev (and the run's derived retrieval task) every this many steps, into train_log.jsonl
    eval_every: int | None = Field(default=None, gt=0)
    keep_best: bool = False  # end the stage on the weights with the best FC1 STS-B dev score (needs eval_every)

    @model_validator(mode="after")
    def _check(self) -> StageConfig:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"stage '{self.name}' needs exactly one of `steps` or `epochs`")
        if self.train == "last_layers" and self.last_layers == 0:
            raise ValueError(f"stage '{self.name}' has nothing to train: train=last_layers with last_layers=0")
        if self.train != "last_layers" and self.last_layers:
            raise ValueError(f"stage '{self.name}': last_layers is only used with train=last_layers")
        if isinstance(self.heads, list) and not self.heads:
            raise ValueError(f"stage '{self.name}' has nothing to train: heads is empty")
        if self.train == "heads" and self.train_heads is not None and not self.train_heads:
            raise ValueError(f"stage '{self.name}' has nothing to train: train_heads is empty")
        if not self.fc1_losses and not self.short_head_losses:
            raise ValueError(f"stage '{self.name}' has no losses")
        if self.keep_best and self.eval_every is None:
            raise ValueError(f"stage '{self.name}': keep_best needs eval_every (how often the dev set is scored)")
        if self.max_batch_tokens is not None and self.batching == "clustered":
            raise ValueError(f"stage '{self.name}': max_batch_tokens works with batching: random, not clustered")
        if self.train == "vision" and (self.batching != "random" or self.eval_every is not None):
            raise ValueError(f"stage '{self.name}': a vision stage takes neither batching: clustered nor eval_every")
        return self

    def active_heads(self, all_heads: list[int]) -> list[int]:
        """The head dims whose losses apply in this stage, FC1 first."""
        if self.heads == "fc1":
            return all_heads[:1]
        if self.heads == "all":
            return list(all_heads)
        return [d for d in all_heads if d in self.heads]

    def head_losses(self, all_heads: list[int]) -> dict[int, list[str]]:
        """The loss names of each head active in this stage, FC1 (`all_heads[0]`) first."""
        fc1 = all_heads[0]
        return {d: list(self.fc1_losses if d == fc1 else self.short_head_losses) for d in self.active_heads(all_heads)}


def paper_stages() -> list[StageConfig]:
    """Stages 1-3 of the paper (PAPER.md's stage table)."""
    return [
        StageConfig(name="stage1", train="heads", lr=1e-4, steps=4000),
        StageConfig(name="stage2", train="last_layers", last_layers=3, lr=8e-5, steps=7000),
        StageConfig(name="stage3", train="all", heads="all", lr=7e-5, steps=2200),
    ]
