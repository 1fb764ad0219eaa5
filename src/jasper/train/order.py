"""Which training rows each step of each stage sees: a pure function of the seed, the stage and the step, so a
killed run resumes onto the very same batches. Random batches, length-pooled ones (`length_pool`), batches of which
a share comes from one k-means cluster (`batching: clustered`) and token-bounded ones (`max_batch_tokens`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from jasper.config import RunConfig, StageConfig
from jasper.data.store import TeacherStore
from jasper.errors import JasperError
from jasper.train.batching import cached_clusters, clustered_order
from jasper.train.schedule import epoch_order, epoch_token_batches, stage_steps


class DataOrder:
    """The batches of every stage over the training rows (`train_rows`, corpus row ids)."""

    def __init__(
        self,
        config: RunConfig,
        train_rows: np.ndarray,
        lengths: Callable[[], np.ndarray],
        store: TeacherStore,
        world: int = 1,
    ) -> None:
        self.config, self.train_rows, self.store, self.world = config, train_rows, store, world
        self.lengths = lengths  # every corpus row's token count, computed on first use
        self._order: tuple[tuple[object, ...], np.ndarray] = ((), np.zeros(0, dtype=np.int64))  # (key, epoch order)
        self._token_epoch: tuple[tuple[object, ...], list[np.ndarray]] = ((), [])  # (key, an epoch's batches)
        self._epoch_sizes: dict[tuple[object, ...], int] = {}  # batches in each epoch under max_batch_tokens
        self._clusters: dict[int, np.ndarray] = {}  # cluster of each training row, by cluster count

    def batch(self, index: int, stage: StageConfig, step: int) -> np.ndarray:
        """The corpus rows of step `step` of stage `index`."""
        if stage.max_batch_tokens is not None:
            epoch, position = self._token_position(index, stage, step)
            return self.train_rows[self._token_batches(index, stage, epoch)[position]]
        epoch, position = divmod(step, len(self.train_rows) // stage.batch_size)
        key = (index, epoch, stage.batch_size, stage.length_pool, stage.batching, stage.cluster_share, stage.clusters)
        if self._order[0] != key:  # one shuffle (and sort) per epoch, not per step
            lengths = self.lengths()[self.train_rows] if stage.length_pool > 1 else None
            n_rows, seed = len(self.train_rows), self.config.seed
            order = epoch_order(n_rows, index, epoch, stage.batch_size, seed, lengths, stage.length_pool)
            if stage.batching == "clustered":
                rng = np.random.default_rng([seed, index, epoch, 1])
                order = clustered_order(order, self.clusters(stage), stage.batch_size, stage.cluster_share, rng)
            self._order = (key, order)
        batch = self._order[1][position * stage.batch_size : (position + 1) * stage.batch_size]
        return self.train_rows[batch]

    def total_steps(self, index: int, stage: StageConfig) -> int:
        """The optimizer steps of a stage (`epochs` count the first epoch's batches under `max_batch_tokens`)."""
        if stage.max_batch_tokens is None or stage.steps is not None:
            return stage_steps(stage, len(self.train_rows))
        assert stage.epochs is not None
        return max(1, math.ceil(stage.epochs * len(self._token_batches(index, stage, 0))))

    def _token_key(self, index: int, stage: StageConfig, epoch: int) -> tuple[object, ...]:
        return (index, epoch, stage.batch_size, stage.length_pool, stage.max_batch_tokens)

    def _token_batches(self, index: int, stage: StageConfig, epoch: int) -> list[np.ndarray]:
        """One epoch's token-bounded batches (positions into the training rows), made once per epoch."""
        key = self._token_key(index, stage, epoch)
        if self._token_epoch[0] != key:
            assert stage.max_batch_tokens is not None
            lengths = self.lengths()[self.train_rows]
            batches = epoch_token_batches(len(self.train_rows), index, epoch, stage.batch_size, self.config.seed,
                                          lengths, stage.length_pool, stage.max_batch_tokens, self.world)  # fmt: skip
            self._token_epoch = (key, batches)
            self._epoch_sizes[key] = len(batches)
        return self._token_epoch[1]

    def _token_position(self, index: int, stage: StageConfig, step: int) -> tuple[int, int]:
        """(epoch, batch in it) of a step: epochs of token-bounded batches hold different numbers of them."""
        epoch = 0
        while True:
            key = self._token_key(index, stage, epoch)
            if key not in self._epoch_sizes:
                self._token_batches(index, stage, epoch)
            if step < self._epoch_sizes[key]:
                return epoch, step
            step -= self._epoch_sizes[key]
            epoch += 1

    def clusters(self, stage: StageConfig) -> np.ndarray:
        """The k-means cluster of each training row's teacher vector (`batching: clustered`), computed once per run
        and cached in the run folder. (N_train,)"""
        count = stage.clusters or max(2, len(self.train_rows) // (8 * stage.batch_size))
        if count > len(self.train_rows):
            raise JasperError(
                f"stage '{stage.name}': clusters {count} is more than the {len(self.train_rows)} training rows: "
                "lower `clusters` (or leave it unset: training rows // (8 x batch_size))"
            )
        if count not in self._clusters:
            vectors = self.store.vectors(self.train_rows).numpy()
            folder = self.config.folder.clusters
            self._clusters[count] = cached_clusters(folder, vectors, count, self.config.seed)
        return self._clusters[count]
