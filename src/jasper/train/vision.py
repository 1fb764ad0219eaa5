"""Stage 4, the vision stage: images land where the frozen text student puts their captions.

Only the projection trains, from a closed-form start, against the caption vectors with the three losses per head
(averaged); resumable like the text stages, logged in the same train_log.jsonl. The result goes to `<run>/image/`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from jasper.config import RunConfig, StageConfig
from jasper.data.image_store import image_features
from jasper.data.images import ImageCaptions
from jasper.distributed import setup_device
from jasper.errors import JasperError
from jasper.io import atomic_write_json, folder_swap
from jasper.models.image_side import TOWER_FILE, WEIGHTS, PooledTokens, build_image_student, tower_metadata
from jasper.models.image_student import ImageStudent
from jasper.models.student import Student, load_student
from jasper.models.vision import load_image_encoder
from jasper.progress import progress_bar
from jasper.runtime import kill_point
from jasper.train.checkpoint import TrainState, load_checkpoint, rng_state, save_checkpoint
from jasper.train.common import Position, build_objective, resume_stage
from jasper.train.guard import LOSS_NOT_FINITE, diverged
from jasper.train.log import TrainLog
from jasper.train.schedule import epoch_order, make_optimizer, make_scheduler, stage_steps
from jasper.train.vision_data import (
    VisionSide,
    caption_targets,
    check_training_images,
    closed_form,
    training_pairs,
)

logger = logging.getLogger(__name__)
__all__ = ["VisionRunner", "check_training_images", "train_vision"]


class VisionRunner:
    """Runs the config's vision stages on a trained, frozen student."""

    def __init__(
        self,
        config: RunConfig,
        student: Student,
        student_dir: Path,
        device: torch.device,
        on_checkpoint: Callable[[tuple[int, int]], object] | None = None,
    ) -> None:
        assert config.vision is not None
        self.config, self.vision = config, config.vision
        self.student, self.student_dir, self.device = student.eval(), student_dir, device
        run = config.folder
        self.work, self.out, self.checkpoint_path = run.vision_work, run.image, run.vision_checkpoint
        self.log = TrainLog(run.train_log)
        self.objective = build_objective(config)
        self.steps_this_process = 0
        self.fixed: dict[str, Any] = {}  # the untrained and closed-form projections, kept for the report
        self.where = Position(config, self.checkpoint_path)
        self.on_checkpoint = on_checkpoint

    def prepare(self) -> tuple[ImageStudent, VisionSide, ImageCaptions]:
        """The image side and its data: features and caption targets, computed once (resumable)."""
        pairs = training_pairs(self.vision, self.work)
        encoder = load_image_encoder(self.vision.encoder).to(self.device)
        source = PooledTokens(encoder, self.vision.tokens, self.vision.label_tokens)
        features = image_features(self.work / "features", "train", source, pairs.images, self.vision.flip,
                                  self.vision.batch_size)  # fmt: skip
        captions = [c for _, c in pairs.pairs()]
        targets = caption_targets(self.work / "captions", self.student, self.student_dir, captions)
        bounds = np.cumsum([0, *(len(c) for c in pairs.captions)])
        rows = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(pairs.images))]
        torch.manual_seed(self.config.seed)
        model = build_image_student(self.student, encoder, self.vision).to(self.device)
        return model, VisionSide(features, rows, targets), pairs

    def run(self) -> Path:
        """Train every vision stage not yet finished; returns `<run>/image`."""
        if (self.out / TOWER_FILE).is_file():
            logger.info("run '%s': the image side is already trained: %s", self.config.name, self.out)
            return self.out
        model, side, pairs = self.prepare()
        state = load_checkpoint(self.checkpoint_path)
        stages = [(i, s) for i, s in enumerate(self.config.stages) if s.train == "vision"]
        if state is None:
            untrained = {k: v.clone() for k, v in model.tower.state_dict().items()}
            closed_form(model, side.features.tokens[:, 0], pairs, self.vision.ridge_alpha)
            start = {k: v.clone() for k, v in model.tower.state_dict().items()}
            state = TrainState(stages[0][0], 0, {"tower": start, "untrained": untrained, "closed-form": start})
            self._save(state)
            logger.info("image projection initialised in closed form (ridge on %d images)", len(pairs.images))
        else:
            self.where.saved = (state.stage, state.step)
            logger.info("vision: resuming at stage %d step %d", state.stage + 1, state.step)
        self.log.truncate_after(state.stage, state.step)
        self.fixed = {k: state.model[k] for k in ("untrained", "closed-form")}
        model.tower.load_state_dict(state.model["tower"])
        try:
            for index, stage in stages:
                if index < state.stage:
                    continue
                self._run_stage(model, side, index, stage, state if index == state.stage else None)
                state = TrainState(index + 1, 0, state.model | {"tower": model.tower.state_dict()}, rng=rng_state())
                self._save(state)
        except KeyboardInterrupt:
            logger.warning("%s; the text student is finished and kept", self.where.interrupted())
            raise
        return self._write(state.model)

    def _save(self, state: TrainState) -> None:
        save_checkpoint(self.checkpoint_path, state)
        self.where.saved = (state.stage, state.step)
        if self.on_checkpoint is not None:
            self.on_checkpoint((state.stage, state.step))

    def _write(self, weights: dict[str, Any]) -> Path:
        """`<run>/image/`: the projection (trained, closed-form, untrained) and how to rebuild the tower."""
        with folder_swap(self.out) as staging:
            for kind, file in WEIGHTS.items():
                tower = weights["tower" if kind == "trained" else kind]
                save_file({k: v.contiguous().cpu() for k, v in tower.items()}, str(staging / file))
            atomic_write_json(staging / TOWER_FILE, tower_metadata(self.vision, self.student))
        return self.out

    def _run_stage(
        self, model: ImageStudent, side: VisionSide, index: int, stage: StageConfig, resume: TrainState | None
    ) -> None:
        n_images = len(side.captions_of)
        if n_images < stage.batch_size:
            raise JasperError(f"stage '{stage.name}': batch_size {stage.batch_size} exceeds the {n_images} images")
        total = stage_steps(stage, n_images)
        params = list(model.tower.parameters())
        optimizer = make_optimizer(params, stage)
        scheduler = make_scheduler(optimizer, stage, total)
        start = resume_stage(optimizer, scheduler, resume)
        losses = stage.head_losses(self.student.head_dims)
        dims = list(losses)
        logger.info("stage %d '%s': %d steps on %d images, %s trainable parameters (the projection)",
                    index + 1, stage.name, total, n_images, f"{sum(p.numel() for p in params):,}")  # fmt: skip
        bar = progress_bar(total, stage.name, "step", start)
        self.where.here = (index, start)
        for step in range(start, total):
            began = time.perf_counter()
            features, classes, targets = self.batch(side, index, stage, step, dims)
            heads = model(features, dims, classes)
            parts = self.objective(heads, targets[dims[0]], losses, {d: targets[d] for d in dims[1:]})
            loss = parts["loss"] / len(dims)  # the heads' losses averaged
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not torch.isfinite(loss):
                raise diverged(LOSS_NOT_FINITE, parts, f"stage {index + 1} '{stage.name}', step {step + 1}",
                               f"the checkpoint {self.checkpoint_path} is kept",
                               f"a learning rate too high (this stage's lr is {stage.lr:g})")  # fmt: skip
            optimizer.step()
            scheduler.step()
            record = {"stage_index": index, "stage": stage.name, "step": step + 1, "lr": scheduler.get_last_lr()[0],
                      "seconds": time.perf_counter() - began, "loss": loss.item()}  # fmt: skip
            self.log.write(record | {k: float(v.detach()) for k, v in parts.items() if k != "loss"})
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            if (step + 1) % stage.checkpoint_every == 0 and step + 1 < total:
                weights = self.fixed | {"tower": model.tower.state_dict()}
                self._save(TrainState(index, step + 1, weights, optimizer.state_dict(), scheduler.state_dict(),
                                      rng_state()))  # fmt: skip
            self.where.here = (index, step + 1)
            self.steps_this_process += 1
            kill_point("JASPER_KILL_AFTER_VISION_STEPS", self.steps_this_process)
            kill_point("JASPER_INTERRUPT_AFTER_VISION_STEPS", self.steps_this_process, signal.SIGINT)
        bar.close()

    def batch(
        self, side: VisionSide, index: int, stage: StageConfig, step: int, dims: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
        """Step `step`'s images (one view and one caption each, a pure function of the seed and the step)."""
        n_images = len(side.captions_of)
        epoch, position = divmod(step, n_images // stage.batch_size)
        order = epoch_order(n_images, index, epoch, stage.batch_size, self.config.seed)
        images = order[position * stage.batch_size : (position + 1) * stage.batch_size]
        rng = np.random.default_rng([self.config.seed, index, step, 4])
        views = rng.integers(0, side.features.views, len(images))
        rows = np.array([rng.choice(side.captions_of[i]) for i in images])
        chosen, seen = torch.from_numpy(images), torch.from_numpy(views)
        features = side.features.tokens[chosen, seen].float().to(self.device)
        classes = side.features.classes[chosen, seen]
        targets = {d: side.targets[d][torch.from_numpy(rows)].to(self.device) for d in dims}
        return features, classes, targets


def train_vision(
    config: RunConfig, student_dir: Path, on_checkpoint: Callable[[tuple[int, int]], object] | None = None
) -> Path:
    """Run the vision stages of `config` on its trained student; returns `<run>/image`."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise JasperError("the vision stage runs in one process: run `jasper train` without a launcher to add it")
    device, _ = setup_device(config.device)
    student = load_student(student_dir).to(device)
    return VisionRunner(config, student, student_dir, device, on_checkpoint).run()
