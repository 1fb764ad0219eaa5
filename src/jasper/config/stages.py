"""Config of the training stages: what trains, which heads and losses, the schedule and the data order."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from jasper.config.base import LossName, Strict


class StageConfig(Strict):
    """One training stage: what trains, which heads and losses, and the schedule."""

    name: str
    """The stage's name, in the logs, the plots and the checkpoints."""
    train: Literal["heads", "last_layers", "all", "vision"]
    """What trains: the `heads` alone (the encoder frozen), the heads and the `last_layers` encoder layers, `all` of
    the student, or `vision` (stage 4: the image side, after every text stage)."""
    last_layers: int = Field(default=0, ge=0)
    """With `train: last_layers`: how many of the encoder's last layers train."""
    heads: list[int] | Literal["fc1", "all"] = "fc1"
    """The heads whose losses apply: `fc1`, `all`, or a list of head dims."""
    train_heads: list[int] | None = None
    """The heads whose weights train; unset, the heads whose losses apply (`[]`: the encoder learns through fixed
    heads)."""
    fc1_losses: list[LossName] = ["cosine"]
    """FC1's losses: by default cosine alone, which beat the paper's three on STS-B dev at equal budget
    (docs/explanations.md); `configs/jasper_paper.yaml` names all three."""
    short_head_losses: list[LossName] = ["similarity", "resim"]
    """The short heads' losses (their dims differ from the teachers', so no cosine)."""
    lr: float = Field(gt=0)
    """AdamW's peak learning rate."""
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    """The share of the stage's steps that warm the learning rate up."""
    weight_decay: float = Field(default=0.01, ge=0)
    """AdamW's weight decay."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """The learning rate after the warm-up: cosine decay to 0, or constant."""
    batch_size: int = Field(default=128, ge=2)
    """Texts per step (the in-batch losses compare them with each other); under several processes, the global
    batch."""
    micro_batch_size: int | None = Field(default=None, gt=0)
    """Gradient caching: the batch goes through the encoder this many texts at a time, for the same objective in
    less memory."""
    length_pool: int = Field(default=1, ge=1)
    """Batches are drawn from pools of this many batches sorted by token length: little padding, every row still
    once per epoch; 1 = plain random batches."""
    max_batch_tokens: int | None = Field(default=None, gt=0)
    """A batch holds at most `batch_size` rows and at most this many padded tokens (rows x its longest text), so a
    batch of long documents holds fewer rows than one of short sentences (with `length_pool`, lengths sort
    together)."""
    steps: int | None = Field(default=None, gt=0)
    """The stage's optimizer steps (or `epochs`)."""
    epochs: float | None = Field(default=None, gt=0)
    """The stage's length in passes over the training rows (or `steps`)."""
    checkpoint_every: int = Field(default=200, gt=0)
    """Steps between checkpoints: what a kill can cost at most (a rerun resumes from the last)."""
    log_every: int = Field(default=1, gt=0)
    """Loss parts are read from the device every this many steps (one host sync instead of one per step); the
    finite check stays before every update."""
    batching: Literal["random", "clustered"] = "random"
    """`random` batches, or `clustered`: `cluster_share` of each batch from one k-means cluster of the training
    rows' teacher vectors, the rest at random."""
    cluster_share: float = Field(default=0.5, gt=0, le=1)
    """With `batching: clustered`: the share of each batch from one cluster."""
    clusters: int | None = Field(default=None, ge=2)
    """With `batching: clustered`: the number of clusters; unset, training rows // (8 x batch_size)."""
    eval_every: int | None = Field(default=None, gt=0)
    """Score STS-B dev (and the dev split of the derived retrieval task) at the stage's start and every this many
    steps, into train_log.jsonl and `plots/dev_curves.png`."""
    keep_best: bool = False
    """End the stage on its best weights by `keep_best_on`, averaged over the heads whose losses the stage counts
    (the stage's start included; NaN counts as the worst). Needs `eval_every`."""
    keep_best_on: list[str] = Field(default=["sts-b-dev"], min_length=1)
    """The dev scores `keep_best` averages: `sts-b-dev` and, where the corpus holds out dev articles,
    `wiki-retrieval-derived-dev:ndcg@10`."""

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
