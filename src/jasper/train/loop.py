"""The training loop: stages in order, each resumable from its last checkpoint."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

from jasper.config import RunConfig, StageConfig
from jasper.data.prepare import load_texts, split_rows
from jasper.data.store import TeacherStore
from jasper.data.tokens import TokenCache
from jasper.distributed import Ranks, average_gradients, barrier, gather, local_rows, setup_device
from jasper.losses import DistillObjective
from jasper.losses.cuda_graph import GraphedParts, graph_objective_parts
from jasper.models.student import Student, build_student, save_student
from jasper.progress import progress_bar
from jasper.runtime import kill_point, seed_everything
from jasper.train.checkpoint import TrainState, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from jasper.train.deepspeed import deepspeed_config, launched_with_deepspeed
from jasper.train.deepspeed import initialize as deepspeed_initialize
from jasper.train.grad_cache import cached_step
from jasper.train.log import TrainLog
from jasper.train.stages import apply_stage, encoder_trains

logger = logging.getLogger(__name__)
POOLED_CACHE_BYTES = 2 * 1024**3


class TrainingDiverged(ValueError):
    """The loss or the gradient stopped being finite."""


def stage_steps(stage: StageConfig, n_train: int) -> int:
    """Optimizer steps of a stage (epochs count full batches)."""
    if stage.steps is not None:
        return stage.steps
    assert stage.epochs is not None
    return max(1, math.ceil(stage.epochs * (n_train // stage.batch_size)))


def make_optimizer(params: list[torch.nn.Parameter], stage: StageConfig, fused: bool = True) -> torch.optim.AdamW:
    """AdamW for the stage; the fused kernel where torch has one for these parameters (one pass over the
    weights instead of a dozen: ~6x faster steps of the optimizer on a CPU, the same update to rounding)."""
    if fused and all(p.dtype in (torch.float32, torch.bfloat16, torch.float16) for p in params):
        try:
            return torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay, fused=True)
        except (RuntimeError, ValueError):  # a device or build without the fused kernel
            pass
    return torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)


def epoch_order(
    n_rows: int,
    stage_index: int,
    epoch: int,
    batch_size: int,
    seed: int,
    lengths: np.ndarray | None = None,
    pool: int = 1,
) -> np.ndarray:
    """Positions into the training rows for one epoch of a stage, batch after batch: a seeded shuffle.

    With `pool` > 1 (and the rows' token `lengths`), consecutive pools of `pool` batches are sorted by length
    and cut into batches, and the batches are shuffled: each batch holds texts of similar length (little
    padding), every row still comes once per epoch, and the order stays a pure function of the seed.
    """
    rng = np.random.default_rng([seed, stage_index, epoch])
    order = rng.permutation(n_rows)
    if pool <= 1 or lengths is None:
        return order
    used = (n_rows // batch_size) * batch_size  # the rows of full batches; the rest wait for the next epoch
    span = pool * batch_size
    pools = [order[start : min(start + span, used)] for start in range(0, used, span)]
    sorted_rows = np.concatenate([p[np.argsort(lengths[p], kind="stable")] for p in pools])
    batches = sorted_rows.reshape(-1, batch_size)[rng.permutation(used // batch_size)]
    return np.concatenate([batches.reshape(-1), order[used:]])


def _schedule(optimizer: torch.optim.Optimizer, stage: StageConfig, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(stage.warmup_ratio * total)
    if stage.schedule == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total)
    return get_constant_schedule_with_warmup(optimizer, warmup)


def interruption(config: RunConfig, position: tuple[int, int], saved: tuple[int, int] | None, checkpoint: Path) -> str:
    """What Ctrl-C at `position` (stage index, steps done) leaves behind, with the checkpoint at `saved`."""
    index, step = position
    stage = config.stages[min(index, len(config.stages) - 1)]
    here = f"training interrupted in stage {index + 1} '{stage.name}' after step {step}"
    if saved is None:
        return f"{here}; no checkpoint was written yet: `jasper train` starts again from the beginning"
    saved_index, saved_step = saved
    lost = step - saved_step if saved_index == index else step
    return (
        f"{here}; the checkpoint {checkpoint} holds stage {saved_index + 1} step {saved_step}: "
        f"`jasper train` resumes there ({lost} step(s) to repeat)"
    )


class StageRunner:
    """Runs the stages of one config on one student, checkpointing as it goes."""

    def __init__(
        self, config: RunConfig, student: Student, texts: list[str], store: TeacherStore, ranks: Ranks | None = None
    ) -> None:
        self.config = config
        self.student = student
        self.texts = texts
        self.store = store
        self.device = student.device
        self.train_rows, _ = split_rows(len(texts), config.corpus.holdout, config.seed)
        self.objective = DistillObjective(**config.loss.model_dump(exclude={"short_head_target"}))
        self.checkpoint_path = config.run_dir / "checkpoints" / "last.pt"
        self.deepspeed_dir = config.run_dir / "checkpoints" / "deepspeed"
        self.engine: Any = None  # the stage's DeepSpeed engine, when launched with one
        self.log = TrainLog(config.run_dir / "train_log.jsonl")
        self.steps_this_process = 0
        self.ranks = ranks or Ranks()
        self._pooled: np.ndarray | None = None
        self._tokens: TokenCache | None = None
        self._graphs: dict[tuple[object, ...], GraphedParts] = {}  # captured objectives, by head shapes
        self._order: tuple[tuple[int, ...], np.ndarray] = ((), np.zeros(0, dtype=np.int64))  # (key, epoch order)
        self.position = (0, 0)  # (stage index, optimizer steps done in it)
        self.saved: tuple[int, int] | None = None  # where the last checkpoint stands

    def run(self) -> None:
        """Train every stage not yet finished, resuming the interrupted one."""
        try:
            self._run()
        except KeyboardInterrupt:
            if self.ranks.is_main:
                logger.warning(self._interrupted())
            raise

    def _interrupted(self) -> str:
        """What Ctrl-C leaves behind, and where `jasper train` starts again."""
        return interruption(self.config, self.position, self.saved, self.checkpoint_path)

    def _run(self) -> None:
        state = load_checkpoint(self.checkpoint_path) or TrainState()
        if state.model:
            self.saved = self.position = (state.stage, state.step)
            self.student.load_state_dict(state.model)
            logger.info("resuming at stage %d step %d", state.stage + 1, state.step)
        elif self.config.student.head_init == "ridge":
            self._ridge_init()
        if self.ranks.is_main:
            self.log.truncate_after(state.stage, state.step)
        for index, stage in enumerate(self.config.stages):
            if index < state.stage or stage.train == "vision":  # the vision stages run on the saved student
                continue
            self._run_stage(index, stage, state if index == state.stage and state.model else None)
            if encoder_trains(self.student):
                self._pooled = None  # the encoder changed: cached pooled outputs are stale
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
            self.saved = (state.stage, state.step)
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

    def _frozen_pooled(self) -> np.ndarray:
        """Pooled outputs of the (frozen) encoder for the training rows, computed once. (N_train, H)"""
        if self._pooled is None:
            texts = [self.texts[int(r)] for r in self.train_rows]
            self._pooled = self.student.encode(texts, [None], normalize=False, progress=True)[None]
        return self._pooled

    def _ridge_init(self) -> None:
        from jasper.models.head_init import ridge_heads

        dims = [d for d in self.student.head_dims if str(d) in self.student.heads]
        targets = self.store.vectors(self.train_rows).numpy()
        fitted = ridge_heads(self._frozen_pooled(), targets, dims, self.config.student.ridge_alpha)
        with torch.no_grad():
            for dim, (weight, bias) in fitted.items():
                self.student.head(dim).weight.copy_(weight)
                self.student.head(dim).bias.copy_(bias)
        logger.info("heads %s initialised by ridge regression on %d frozen rows", dims, len(targets))

    def stage_losses(self, stage: StageConfig) -> dict[int, list[str]]:
        """The loss names of each head active in `stage`, FC1 first."""
        fc1 = self.student.head_dims[0]
        return {
            d: list(stage.fc1_losses if d == fc1 else stage.short_head_losses)
            for d in stage.active_heads(self.student.head_dims)
        }

    def _run_stage(self, index: int, stage: StageConfig, resume: TrainState | None) -> None:
        params = apply_stage(self.student, stage)
        total = stage_steps(stage, len(self.train_rows))
        if len(self.train_rows) < stage.batch_size:
            raise ValueError(
                f"stage '{stage.name}': batch_size {stage.batch_size} exceeds the {len(self.train_rows)} training rows"
            )
        if stage.batch_size % self.ranks.world:
            raise ValueError(
                f"stage '{stage.name}': batch_size {stage.batch_size} is not divisible by {self.ranks.world} processes"
            )
        optimizer = make_optimizer(params, stage, fused=not launched_with_deepspeed())
        model: torch.nn.Module = self.student
        self.engine = None
        if launched_with_deepspeed():
            ds_config = deepspeed_config(
                stage.name, stage.batch_size, self.ranks.world, stage.micro_batch_size, self._bf16
            )
            self.engine = model = deepspeed_initialize(self.student, optimizer, ds_config)
            zero = ds_config.get("zero_optimization", {}).get("stage", 0)
            logger.info("stage '%s': DeepSpeed ZeRO-%d over %d processes", stage.name, zero, self.ranks.world)
        # gradient caching runs its own backward passes outside the module's forward, where DDP's hooks do not
        # see them: those stages average the gradients across ranks after the step's backward instead
        elif self.ranks.active and not stage.micro_batch_size:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(self.student, device_ids=ids, find_unused_parameters=True)
        scheduler = _schedule(optimizer, stage, total)  # under ZeRO the engine steps this optimizer's groups
        start = 0
        if resume is not None and resume.step:
            if self.engine is not None:
                self._load_engine(resume)
            else:
                optimizer.load_state_dict(resume.optimizer or {})
            scheduler.load_state_dict(resume.scheduler or {})
            start = resume.step
        if resume is not None and resume.rng is not None:
            set_rng_state(resume.rng)
        self.student.train(encoder_trains(self.student))
        pooled_cache = self._pooled_cache(stage, total - start)
        losses = self.stage_losses(stage)
        n_trainable = sum(p.numel() for p in params)
        logger.info(
            "stage %d '%s': %d steps, %s trainable parameters", index + 1, stage.name, total, f"{n_trainable:,}"
        )
        bar = progress_bar(total, stage.name, "step", start, not self.ranks.is_main)
        self.position = (index, start)
        deferred = stage.log_every > 1 and self.engine is None and bool(optimizer.defaults.get("fused"))
        pending: list[tuple[dict[str, Any], dict[str, torch.Tensor]]] = []
        for step in range(start, total):
            began = time.perf_counter()
            rows = self.batch_of(index, stage, step)
            parts = self.train_step(model, rows, losses, optimizer, pooled_cache, stage.micro_batch_size, deferred)
            scheduler.step()
            record = {"stage_index": index, "stage": stage.name, "step": step + 1, "lr": scheduler.get_last_lr()[0]}
            pending.append((record | {"seconds": time.perf_counter() - began}, parts))
            self.position = (index, step + 1)
            bar.update(1)
            checkpoint_due = (step + 1) % stage.checkpoint_every == 0 and step + 1 < total
            if len(pending) >= stage.log_every or checkpoint_due or step + 1 == total:
                self._flush(pending, bar)
            if checkpoint_due:
                tag = self._save_engine(f"stage{index}-step{step + 1}")
                state = TrainState(
                    index,
                    step + 1,
                    self.student.state_dict(),
                    None if tag else optimizer.state_dict(),
                    scheduler.state_dict(),
                    rng_state(),
                    deepspeed_tag=tag,
                )
                self._save(state)
            self.steps_this_process += 1
            kill_point("JASPER_KILL_AFTER_STEPS", self.steps_this_process)
            kill_point("JASPER_INTERRUPT_AFTER_STEPS", self.steps_this_process, signal.SIGINT)
        bar.close()
        if self.engine is not None:
            self.engine.destroy()  # its gradient hooks must not outlive the stage
            self.engine = None

    def _save_engine(self, tag: str) -> str | None:
        """Under DeepSpeed every rank writes its optimizer shard (a collective); returns the tag, else None."""
        if self.engine is None:
            return None
        self.engine.save_checkpoint(str(self.deepspeed_dir), tag=tag, save_latest=False)
        return tag

    def _load_engine(self, resume: TrainState) -> None:
        folder = self.deepspeed_dir / str(resume.deepspeed_tag)
        if not resume.deepspeed_tag or not folder.is_dir():
            raise ValueError(
                f"the checkpoint to resume has no DeepSpeed optimizer state ('{folder}'): it was written without "
                "DeepSpeed. Resume with the launcher that started the run."
            )
        assert self.engine is not None
        # the scheduler is jasper's (in last.pt); the engine restores weights and this rank's optimizer shard
        self.engine.load_checkpoint(str(self.deepspeed_dir), tag=resume.deepspeed_tag, load_lr_scheduler_states=False)

    def batch_of(self, index: int, stage: StageConfig, step: int) -> np.ndarray:
        """The corpus rows of step `step` of stage `index` (a pure function of the seed: resumes see the same)."""
        epoch, position = divmod(step, len(self.train_rows) // stage.batch_size)
        key = (index, epoch, stage.batch_size, stage.length_pool)
        if self._order[0] != key:  # one shuffle (and sort) per epoch, not per step
            lengths = self.tokens.lengths[self.train_rows] if stage.length_pool > 1 else None
            order = epoch_order(len(self.train_rows), *key[:3], self.config.seed, lengths, stage.length_pool)
            self._order = (key, order)
        batch = self._order[1][position * stage.batch_size : (position + 1) * stage.batch_size]
        return self.train_rows[batch]

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

        def loss_of_heads(heads: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
            if self.config.cuda_graphs and not self_target:
                return self._graphed(heads, losses)(heads, teacher)
            gathered = {d: gather(v, self.ranks) for d, v in heads.items()}
            # self-distillation: the short heads follow the student's own FC1 vectors, detached
            targets = {d: gathered[fc1].detach() for d in losses if d != fc1} if self_target else None
            return self.objective({d: gathered[d] for d in losses}, teacher, losses, targets)

        def loss_of_pooled(pooled: torch.Tensor) -> dict[str, torch.Tensor]:
            with self._autocast():
                heads = self.student.project(pooled, dims)
            return loss_of_heads(heads)

        optimizer.zero_grad(set_to_none=True)
        if micro_batch and micro_batch < len(mine) and pooled_cache is None:
            parts = cached_step(self.student, self.tokens.rows(mine), micro_batch, loss_of_pooled, self._autocast)
        else:
            with self._autocast():
                if pooled_cache is not None:
                    heads = model(None, dims, pooled=pooled_cache[torch.from_numpy(mine).to(self.device)])
                else:
                    heads = model(None, dims, ids=self.tokens.rows(mine))
            parts = loss_of_heads(heads)
            if self.engine is not None:
                self.engine.backward(parts["loss"])
            else:
                parts["loss"].backward()
        # before the step: the weights and the last checkpoint stay good
        diverged = self._nonfinite(parts, optimizer)
        if deferred:
            optimizer.found_inf = (diverged > 0).float()  # type: ignore[attr-defined]  # fused AdamW skips it
        elif diverged.item():
            raise self._diverged(int(diverged.item()), parts)
        if self.engine is not None:
            self.engine.step()
        else:
            if self.ranks.active and model is self.student:
                average_gradients(self.student, self.ranks)
            optimizer.step()
        return {k: v.detach() for k, v in parts.items()} | {"_diverged": diverged}

    def _graphed(self, heads: dict[int, torch.Tensor], losses: dict[int, list[str]]) -> GraphedParts:
        """The objective captured as CUDA graphs for these head shapes (captured once per shape)."""
        shapes = {d: (int(v.shape[0]), int(v.shape[1])) for d, v in heads.items()}
        key = (tuple(sorted(shapes.items())), tuple((d, tuple(names)) for d, names in losses.items()))
        if key not in self._graphs:
            teacher_shape = (next(iter(shapes.values()))[0], self.store.dim)
            self._graphs[key] = graph_objective_parts(self.objective, shapes, teacher_shape, losses, self.device)
        return self._graphs[key]

    def _nonfinite(self, parts: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """On the device, no host sync: 0 when the loss and the gradient are finite, 1 if the loss is not, 2 the
        gradient."""
        loss_ok = torch.stack([torch.isfinite(value.detach()).all() for value in parts.values()]).all()
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        grad_ok = torch.isfinite(torch.nn.utils.get_total_norm(grads)) if grads and self.engine is None else loss_ok
        return torch.where(loss_ok, torch.where(grad_ok, 0, 2), 1)

    def _flush(self, pending: list[tuple[dict[str, Any], dict[str, torch.Tensor]]], bar: Any) -> None:
        """Write the pending steps' log records, reading their loss parts in one host sync; stop at a bad step."""
        names = [name for name in pending[0][1] if name != "_diverged"]
        values = torch.stack([torch.stack([p[n].float() for n in [*names, "_diverged"]]) for _, p in pending])
        here = self.position
        for (record, parts), row in zip(pending, values.tolist(), strict=True):
            if row[-1]:
                self.position = (record["stage_index"], record["step"] - 1)
                raise self._diverged(int(row[-1]), parts)
            if self.ranks.is_main:
                self.log.write(record | dict(zip(names, row[:-1], strict=True)))
        self.position = here
        bar.set_postfix(loss=f"{values[-1, names.index('loss')].item():.4f}")
        pending.clear()

    def _diverged(self, code: int, parts: dict[str, torch.Tensor]) -> TrainingDiverged:
        """The error for a step whose loss (code 1) or gradient (2) is not finite: stage, step, likely cause."""
        bad = [name for name, value in parts.items() if name != "_diverged" and not torch.isfinite(value).all()]
        what = f"the loss ({', '.join(bad)})" if code == 1 else "the gradient"
        index, done = self.position
        stage = self.config.stages[index]
        kept = (
            "no checkpoint yet"
            if self.saved is None
            else f"the checkpoint at stage {self.saved[0] + 1} step {self.saved[1]}"
        )
        return TrainingDiverged(
            f"stage {index + 1} '{stage.name}', step {done + 1}: {what} is not finite (NaN or inf); training stopped "
            f"before the update, {kept} is kept ({self.checkpoint_path}). Likely cause: a learning rate too high "
            f"(this stage's lr is {stage.lr:g}), or non-finite teacher vectors (rows {self._rows_of_step()})"
        )

    def _rows_of_step(self) -> str:
        index, done = self.position
        stage = self.config.stages[index]
        rows = self.batch_of(index, stage, done)
        return f"{rows[:5].tolist()}{'...' if len(rows) > 5 else ''}"

    def _pooled_cache(self, stage: StageConfig, steps_left: int) -> torch.Tensor | None:
        """With the encoder frozen its pooled outputs never change: compute them once when that is cheaper.

        Returns (n_texts, H), rows outside training left at zero, or None to encode batch by batch.
        """
        if encoder_trains(self.student):
            return None
        rows = self.train_rows
        if (
            steps_left * stage.batch_size < len(rows)
            or len(self.texts) * self.student.hidden_size * 4 > POOLED_CACHE_BYTES
        ):
            return None
        pooled = self._frozen_pooled()
        cache = torch.zeros(len(self.texts), self.student.hidden_size)
        cache[torch.from_numpy(rows)] = torch.from_numpy(pooled)
        return cache.to(self.device)


def _log_cut_texts(student: Student, texts: list[str]) -> None:
    """Say how many training texts are longer than the student's max_length (they are cut)."""
    lengths = [len(ids) for ids in student.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
    cut = sum(n > student.max_length for n in lengths)
    share = 100 * cut / max(1, len(texts))
    logger.info(
        "student max_length %d: %s of %s texts (%.1f%%) are longer and cut",
        student.max_length,
        *(f"{cut:,}", f"{len(texts):,}", share),
    )


def training_student(config: RunConfig, device: torch.device) -> Student:
    """The run's fresh student on `device`, its encoder compiled when `compile: true`."""
    student = build_student(config.student).to(device)
    if config.compile:
        student.backbone.compile()  # in place: parameter names, checkpoints and exports stay as they are
    return student


def train(config: RunConfig) -> Path:
    """Train the run's student through all stages (the vision ones last); returns the saved student's folder."""
    final = config.run_dir / "student"
    if config.has_vision_stage:
        from jasper.train.vision import check_training_images

        check_training_images(config)  # a bad image stops the run now, not after the text stages
    if (final / "student.json").is_file():
        logger.info("run '%s': the text student is already trained: %s", config.name, final)
    else:
        _train_text(config, final)
    if config.has_vision_stage:
        from jasper.train.vision import train_vision

        train_vision(config, final)
    return final


def _train_text(config: RunConfig, final: Path) -> None:
    seed_everything(config.seed)
    texts = load_texts(config)
    store = TeacherStore(config.store_dir, config.teachers, texts)
    fc1 = config.student.heads[0]
    if fc1 != store.dim and any("cosine" in s.fc1_losses for s in config.stages):
        raise ValueError(
            f"student FC1 has {fc1} dims but the teachers give {'+'.join(map(str, store.dims))}={store.dim}: "
            "set student.heads[0] to the teacher dim"
        )
    device, ranks = setup_device(config.device)
    if config.cuda_graphs and (device.type != "cuda" or ranks.active):
        raise ValueError("cuda_graphs: true needs one CUDA device and one process; set it to false here")
    student = training_student(config, device)
    if ranks.is_main:
        _log_cut_texts(student, texts)
    StageRunner(config, student, texts, store, ranks).run()
    if ranks.is_main:
        tmp = final.with_name("student.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_student(student, tmp)
        os.replace(tmp, final)
    barrier(ranks)
