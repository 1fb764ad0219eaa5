"""The text stages' training loop: stages in order, each resumable from its last checkpoint."""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from jasper.config import RunConfig, StageConfig
from jasper.data.prepare import split_rows
from jasper.data.store import TeacherStore
from jasper.data.tokens import TokenCache
from jasper.distributed import Ranks, average_gradients, barrier, gather, local_rows
from jasper.errors import JasperError
from jasper.losses.cuda_graph import GraphedParts, graph_objective_parts
from jasper.models.student import Student
from jasper.progress import progress_bar
from jasper.runtime import kill_point
from jasper.train.checkpoint import TrainState, load_checkpoint, rng_state, save_checkpoint
from jasper.train.common import Position, build_objective, resume_stage
from jasper.train.deepspeed import launched_with_deepspeed, load_engine, save_engine
from jasper.train.frozen import FrozenFeatures, ridge_start
from jasper.train.grad_cache import cached_step
from jasper.train.guard import Pending, TrainingDiverged, diverged, flush_steps, nonfinite_code
from jasper.train.log import EVAL_KIND, TrainLog
from jasper.train.order import DataOrder
from jasper.train.parallel import stage_module
from jasper.train.schedule import make_optimizer, make_scheduler
from jasper.train.stages import apply_stage, encoder_trains
from jasper.train.watch import DevWatch, selection_score, watch_key

logger = logging.getLogger(__name__)


class StageRunner:
    """Runs the text stages of one config on one student, checkpointing as it goes."""

    def __init__(
        self,
        config: RunConfig,
        student: Student,
        texts: list[str],
        store: TeacherStore,
        ranks: Ranks | None = None,
        on_checkpoint: Callable[[tuple[int, int]], object] | None = None,
    ) -> None:
        self.config = config
        self.student = student
        self.texts = texts
        self.store = store
        self.device = student.device
        self.train_rows, _ = split_rows(len(texts), config.corpus.holdout, config.seed)
        self.objective = build_objective(config)
        run = config.folder
        self.checkpoint_path, self.deepspeed_dir = run.last_checkpoint, run.deepspeed
        self.engine: Any = None  # the stage's DeepSpeed engine, when launched with one
        self.log = TrainLog(run.train_log)
        self.steps_this_process = 0
        self.ranks = ranks or Ranks()
        self.frozen = FrozenFeatures(student, texts, self.train_rows, config.student.head_init == "ridge")
        self._tokens: TokenCache | None = None
        self._graphs: dict[tuple[object, ...], GraphedParts] = {}  # captured objectives, by head shapes
        self.order = DataOrder(config, self.train_rows, lambda: self.tokens.lengths, store, self.ranks.world)
        self._watch: DevWatch | None = None  # the dev tasks of `eval_every`, built once
        self.best: dict[str, Any] | None = None  # keep_best: the stage's best so far: step, mean and per-head scores
        self.where = Position(config, self.checkpoint_path)
        self.on_checkpoint = on_checkpoint  # (stage index, step) of each checkpoint written: trackers sync to it

    @property
    def position(self) -> tuple[int, int]:
        """(stage index, optimizer steps done in it)."""
        return self.where.here

    @position.setter
    def position(self, value: tuple[int, int]) -> None:
        self.where.here = value

    def run(self) -> None:
        """Train every stage not yet finished, resuming the interrupted one."""
        try:
            self._run()
        except KeyboardInterrupt:
            if self.ranks.is_main:
                logger.warning(self.where.interrupted())
            raise

    def _run(self) -> None:
        state = load_checkpoint(self.checkpoint_path) or TrainState()
        if state.model:
            self.where.saved = self.position = (state.stage, state.step)
            self.student.load_state_dict(state.model)
            logger.info("resuming at stage %d step %d", state.stage + 1, state.step)
        elif self.config.student.head_init == "ridge":
            targets = self.store.vectors(self.train_rows).numpy()
            ridge_start(self.student, self.frozen.pooled(), targets, self.config.student.ridge_alpha)
        if self.ranks.is_main:
            self.log.truncate_after(state.stage, state.step)
        for index, stage in enumerate(self.config.stages):
            if index < state.stage or stage.train == "vision":  # the vision stages run on the saved student
                continue
            self._run_stage(index, stage, state if index == state.stage and state.model else None)
            if encoder_trains(self.student):
                self.frozen.forget()
            # the stage-end checkpoint carries the generators too: a kill early in the next stage resumes exactly
            state = TrainState(stage=index + 1, step=0, model=self.student.state_dict(), rng=rng_state())
            self._save(state)

    @property
    def _bf16(self) -> bool:
        """`precision: bf16` applies on CUDA only."""
        return self.config.precision == "bf16" and self.device.type == "cuda"

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        """bf16 autocast on CUDA when `precision: bf16`, else nothing."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self._bf16 else contextlib.nullcontext()

    def _save(self, state: TrainState) -> None:
        if self.ranks.is_main:
            save_checkpoint(self.checkpoint_path, state)
            self.where.saved = (state.stage, state.step)
            if self.on_checkpoint is not None:
                self.on_checkpoint((state.stage, state.step))
            # DeepSpeed shards of older checkpoints go once the new one is in place
            for old in self.deepspeed_dir.glob("stage*-step*"):
                if old.name != state.deepspeed_tag:
                    shutil.rmtree(old, ignore_errors=True)
        barrier(self.ranks)

    @property
    def tokens(self) -> TokenCache:
        """The corpus's token ids, tokenised once on first use (the training step calls no tokenizer)."""
        if self._tokens is None:
            self._tokens = TokenCache.build(self.student.token_ids, self.texts, progress=self.ranks.is_main)
        return self._tokens

    def stage_losses(self, stage: StageConfig) -> dict[int, list[str]]:
        """The loss names of each head active in `stage`, FC1 first."""
        return stage.head_losses(self.student.head_dims)

    def _check_batch(self, stage: StageConfig) -> None:
        if len(self.train_rows) < stage.batch_size:
            raise JasperError(
                f"stage '{stage.name}': batch_size {stage.batch_size} exceeds the {len(self.train_rows)} training rows"
            )
        if stage.batch_size % self.ranks.world:
            raise JasperError(
                f"stage '{stage.name}': batch_size {stage.batch_size} is not divisible by {self.ranks.world} processes"
            )

    def _run_stage(self, index: int, stage: StageConfig, resume: TrainState | None) -> None:
        params = apply_stage(self.student, stage)
        total = self.order.total_steps(index, stage)
        self._check_batch(stage)
        optimizer = make_optimizer(params, stage, fused=not launched_with_deepspeed())
        model, self.engine = stage_module(self.student, optimizer, stage, self.ranks, self._bf16)
        scheduler = make_scheduler(optimizer, stage, total)  # under ZeRO the engine steps this optimizer's groups
        engine = self.engine
        reload = (lambda state: load_engine(engine, self.deepspeed_dir, state.deepspeed_tag)) if engine else None
        start = resume_stage(optimizer, scheduler, resume, reload)
        self.best = resume.best if resume is not None and start else None
        self.student.train(encoder_trains(self.student))
        pooled_cache = self._pooled_cache(stage, total - start)
        losses = self.stage_losses(stage)
        logger.info("stage %d '%s': %d steps, %s trainable parameters", index + 1, stage.name, total,
                    f"{sum(p.numel() for p in params):,}")  # fmt: skip
        bar = progress_bar(total, stage.name, "step", start, not self.ranks.is_main)
        self.position = (index, start)
        if stage.eval_every is not None and start == 0:
            self._evaluate(index, stage, 0)  # the stage's start: where its curves begin, and a keep_best candidate
        deferred = stage.log_every > 1 and self.engine is None and bool(optimizer.defaults.get("fused"))
        pending: Pending = []
        texts_done, tokens_done, seconds_done = 0, 0, 0.0  # this process's steps of the stage: its throughput
        for step in range(start, total):
            began = time.perf_counter()
            rows = self.batch_of(index, stage, step)
            parts = self.train_step(model, rows, losses, optimizer, pooled_cache, stage.micro_batch_size, deferred)
            scheduler.step()
            seconds, tokens = time.perf_counter() - began, int(self.tokens.lengths[rows].sum())
            record = {"stage_index": index, "stage": stage.name, "step": step + 1, "lr": scheduler.get_last_lr()[0]}
            pending.append(
                (record | {"seconds": seconds, "texts": len(rows), "tokens": tokens, "time": time.time()}, parts)
            )
            texts_done, tokens_done, seconds_done = texts_done + len(rows), tokens_done + tokens, seconds_done + seconds
            self.position = (index, step + 1)
            bar.update(1)
            checkpoint_due = (step + 1) % stage.checkpoint_every == 0 and step + 1 < total
            eval_due = stage.eval_every is not None and ((step + 1) % stage.eval_every == 0 or step + 1 == total)
            if len(pending) >= stage.log_every or checkpoint_due or eval_due or step + 1 == total:
                self._flush(pending, bar)
            if eval_due:
                self._evaluate(index, stage, step + 1)
            if checkpoint_due:
                self._checkpoint(index, step + 1, optimizer, scheduler)
            self.steps_this_process += 1
            kill_point("JASPER_KILL_AFTER_STEPS", self.steps_this_process)
            kill_point("JASPER_INTERRUPT_AFTER_STEPS", self.steps_this_process, signal.SIGINT)
        bar.close()
        if seconds_done > 0 and self.ranks.is_main:
            logger.info("stage '%s': %.1f texts/s, %s tokens/s over its training steps", stage.name,
                        texts_done / seconds_done, f"{tokens_done / seconds_done:,.0f}")  # fmt: skip
        if self.engine is not None:
            self.engine.destroy()  # its gradient hooks must not outlive the stage
            self.engine = None
        if stage.keep_best and self.best is not None:
            barrier(self.ranks)  # rank 0 wrote the best weights
            best = load_checkpoint(self.config.folder.best_checkpoint(index))
            assert best is not None
            self.student.load_state_dict(best.model)
            each = ", ".join(f"{d}-d {v:.2f}" for d, v in self.best.get("scores", {}).items())
            logger.info(
                "stage '%s' ends on its best dev weights: step %d of %d, for every head (%s: %s; mean %.2f)",
                *(stage.name, self.best["step"], total, " + ".join(stage.keep_best_on), each, self.best["score"]),
            )

    def _evaluate(self, index: int, stage: StageConfig, step: int) -> None:
        """Score the dev tasks now, log them, and keep the weights if they are the stage's best (`keep_best`): the
        mean STS-B dev over the heads the stage changes, NaN the worst, the stage's start a candidate too."""
        if self._watch is None:
            self._watch = DevWatch(self.config, self.student)
        scores = self._watch.score()
        if self.ranks.is_main:
            record = {"kind": EVAL_KIND, "stage_index": index, "stage": stage.name, "step": step, "time": time.time()}
            self.log.write(record | scores)
        if not stage.keep_best:
            return
        missing = self._watch.missing(stage.keep_best_on)
        if missing:
            if step == 0 and self.ranks.is_main:
                logger.warning("stage '%s': keep_best follows %s, which this run does not score: it ends on its last "
                               "weights", stage.name, missing)  # fmt: skip
            return
        dims = stage.active_heads(self.student.head_dims)  # the heads this stage trains for: its losses' heads
        score = selection_score(scores, dims, stage.keep_best_on)
        if self.best is not None and score <= self.best["score"]:
            return
        each = {d: float(np.mean([scores.get(watch_key(t, d), np.nan) for t in stage.keep_best_on])) for d in dims}
        self.best = {"stage": index, "step": step, "score": score, "scores": each}
        if self.ranks.is_main:
            save_checkpoint(
                self.config.folder.best_checkpoint(index), TrainState(index, step, self.student.state_dict())
            )

    def _checkpoint(self, index: int, step: int, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        """Mid-stage checkpoint: weights, optimizer (or the engine's shards), schedule, generators."""
        tag = save_engine(self.engine, self.deepspeed_dir, f"stage{index}-step{step}") if self.engine else None
        optimizer_state = None if tag else optimizer.state_dict()
        self._save(TrainState(index, step, self.student.state_dict(), optimizer_state, scheduler.state_dict(),
                              rng_state(), deepspeed_tag=tag, best=self.best))  # fmt: skip

    def batch_of(self, index: int, stage: StageConfig, step: int) -> np.ndarray:
        """The corpus rows of step `step` of stage `index` (a pure function of the seed: resumes see the same)."""
        return self.order.batch(index, stage, step)

    def train_step(
        self,
        model: torch.nn.Module,
        rows: np.ndarray,
        losses: dict[int, list[str]],
        optimizer: torch.optim.Optimizer,
        pooled_cache: torch.Tensor | None,
        micro_batch: int | None = None,
        deferred: bool = False,
    ) -> dict[str, torch.Tensor]:
        """One optimizer step on the global batch `rows`; this rank embeds its share of them.

        The finite check runs before the update. `deferred` (a fused optimizer only) makes it without a host
        synchronisation: a bad step's update is skipped on the device, and the returned `_diverged` flag is
        read with the logs (`_flush`), which stops the run there.
        """
        teacher = self.store.vectors(rows).to(self.device)  # (B, teacher_dim), the global batch
        mine = rows[local_rows(rows, self.ranks)]
        fc1 = self.student.head_dims[0]
        self_target = self.config.loss.short_head_target == "self" and any(d != fc1 for d in losses)
        dims = list(dict.fromkeys([*losses, fc1])) if self_target else list(losses)
        # self-distillation trains the short heads alone: their target moves with the encoder, so a gradient into
        # the encoder would let both collapse onto one vector
        detach = [d for d in dims if d != fc1] if self_target else []

        def loss_of_heads(heads: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
            if self.config.cuda_graphs and not self_target:
                return self._graphed(heads, losses)(heads, teacher)
            gathered = {d: gather(v, self.ranks) for d, v in heads.items()}
            # self-distillation: the short heads follow the student's own FC1 vectors, detached
            targets = {d: gathered[fc1].detach() for d in losses if d != fc1} if self_target else None
            return self.objective({d: gathered[d] for d in losses}, teacher, losses, targets)

        def loss_of_pooled(pooled: torch.Tensor) -> dict[str, torch.Tensor]:
            with self._autocast():
                heads = self.student.project(pooled, dims, detach)
            return loss_of_heads(heads)

        optimizer.zero_grad(set_to_none=True)
        if micro_batch and micro_batch < len(mine) and pooled_cache is None:
            parts = cached_step(self.student, self.tokens.rows(mine), micro_batch, loss_of_pooled, self._autocast)
        else:
            with self._autocast():
                if pooled_cache is not None:
                    heads = model(
                        None, dims, pooled=pooled_cache[torch.from_numpy(mine).to(self.device)], detach=detach
                    )
                else:
                    heads = model(None, dims, ids=self.tokens.rows(mine), detach=detach)
            parts = loss_of_heads(heads)
            if self.engine is not None:
                self.engine.backward(parts["loss"])
            else:
                parts["loss"].backward()
        # before the step: the weights and the last checkpoint stay good
        code = nonfinite_code(parts, optimizer, check_gradient=self.engine is None)
        if deferred:
            optimizer.found_inf = (code > 0).float()  # type: ignore[attr-defined]  # fused AdamW skips it
        elif code.item():
            raise self._diverged(int(code.item()), parts)
        if self.engine is not None:
            self.engine.step()
        else:
            if self.ranks.active and model is self.student:
                average_gradients(self.student, self.ranks)
            optimizer.step()
        return {k: v.detach() for k, v in parts.items()} | {"_diverged": code}

    def _graphed(self, heads: dict[int, torch.Tensor], losses: dict[int, list[str]]) -> GraphedParts:
        """The objective captured as CUDA graphs for these head shapes (captured once per shape)."""
        shapes = {d: (int(v.shape[0]), int(v.shape[1])) for d, v in heads.items()}
        key = (tuple(sorted(shapes.items())), tuple((d, tuple(names)) for d, names in losses.items()))
        if key not in self._graphs:
            teacher_shape = (next(iter(shapes.values()))[0], self.store.dim)
            self._graphs[key] = graph_objective_parts(self.objective, shapes, teacher_shape, losses, self.device)
        return self._graphs[key]

    def _flush(self, pending: Pending, bar: Any) -> None:
        """Write the pending steps' log records, reading their loss parts in one host sync; stop at a bad step."""
        loss, bad = flush_steps(pending, self.log if self.ranks.is_main else None)
        if bad is not None:
            record, code, parts = bad
            self.position = (record["stage_index"], record["step"] - 1)
            raise self._diverged(code, parts)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}")

    def _diverged(self, code: int, parts: dict[str, torch.Tensor]) -> TrainingDiverged:
        """The error for the step at `position`: stage, step, the checkpoint kept, the likely cause."""
        index, done = self.position
        stage = self.config.stages[index]
        rows = self.batch_of(index, stage, done)
        shown = f"{rows[:5].tolist()}{'...' if len(rows) > 5 else ''}"
        return diverged(
            code,
            parts,
            f"stage {index + 1} '{stage.name}', step {done + 1}",
            f"{self.where.kept()} is kept ({self.checkpoint_path})",
            f"a learning rate too high (this stage's lr is {stage.lr:g}), or non-finite teacher vectors (rows {shown})",
        )

    def _pooled_cache(self, stage: StageConfig, steps_left: int) -> torch.Tensor | None:
        """With the encoder frozen its pooled outputs never change: computed once when that is cheaper."""
        return self.frozen.cache(steps_left, stage.batch_size)
