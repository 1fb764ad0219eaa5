"""Stage 4, the vision stage: images land where the frozen text student puts their captions.

Once per run: the image encoder's pooled tokens (and top classes) for every training image, and the student's
caption vectors at every head (a store like the teachers'). Then only the projection trains, from a closed-form
start, against the caption vectors with the three losses per head (averaged); resumable like the text stages,
logged in the same train_log.jsonl. The result goes to `<run>/image/`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from jasper.config import RunConfig, StageConfig, TeacherConfig, VisionConfig
from jasper.data.image_store import ImageFeatures, image_features
from jasper.data.images import ImageCaptions, read_image_captions
from jasper.data.store import TeacherStore, compute_teacher
from jasper.io import atomic_write_json
from jasper.losses import DistillObjective
from jasper.models.image_student import ImageStudent, ImageTower, LabelTokens
from jasper.models.student import Student
from jasper.models.vision import ImageEncoder, load_image_encoder
from jasper.progress import progress_bar
from jasper.runtime import kill_point
from jasper.train.checkpoint import TrainState, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from jasper.train.log import TrainLog
from jasper.train.loop import _schedule, epoch_order, interruption, make_optimizer, stage_steps

logger = logging.getLogger(__name__)
IMAGE_DIR = "image"  # <run>/image: the trained image side (tower.json, projection weights)
TOWER_FILE = "tower.json"
WEIGHTS = {"trained": "projection.safetensors", "closed-form": "closed_form.safetensors",
           "untrained": "untrained.safetensors"}  # fmt: skip


class StudentCaptions:
    """The frozen student as a 'teacher' of caption vectors: every head's unit vector, side by side."""

    name = "captions"

    def __init__(self, student: Student, dims: list[int]) -> None:
        self.student, self.dims = student, dims

    def encode(self, texts: list[str], on_rows: Any = None) -> np.ndarray:
        """(N, sum(dims)) the per-head unit vectors of `texts`, concatenated."""
        vectors = self.student.encode(texts, list[int | None](self.dims))
        if on_rows is not None:
            on_rows(len(texts))
        return np.concatenate([vectors[d] for d in self.dims], axis=1)


def student_fingerprint(student_dir: Path) -> str:
    """Changes whenever the saved student does (its heads train in every text stage)."""
    digest = hashlib.sha256((student_dir / "heads.safetensors").read_bytes())
    digest.update((student_dir / "student.json").read_bytes())
    return digest.hexdigest()[:16]


def caption_targets(folder: Path, student: Student, student_dir: Path, captions: list[str]) -> dict[int, torch.Tensor]:
    """{dim: (C, dim) unit vectors} of the captions by the frozen student, computed once into `folder`."""
    dims = list(student.head_dims)
    teacher = TeacherConfig(
        name="captions", backend="callable", model=f"jasper-student:{student_fingerprint(student_dir)}"
    )
    compute_teacher(folder, teacher, captions, dtype="float32", shard_size=2048, teacher=StudentCaptions(student, dims))
    joined = TeacherStore(folder, [teacher], captions).vectors(np.arange(len(captions)))
    parts = torch.split(joined, dims, dim=1)
    return {d: torch.nn.functional.normalize(p.float(), dim=1) for d, p in zip(dims, parts, strict=True)}


def training_pairs(vision: VisionConfig, run_dir: Path) -> ImageCaptions:
    """The stage's image-caption pairs: a local folder / JSONL, else a hub dataset copied into the run."""
    from jasper.data.images import hub_image_captions

    if Path(vision.data).exists():
        return read_image_captions(vision.data, check_images=False)  # each image is opened once, when cached
    return hub_image_captions(vision.data, vision.data_split, run_dir / "vision" / "data")


def check_training_images(config: RunConfig) -> None:
    """Open every local training image once (a missing or unreadable one is an error naming it), unless the
    image side is already trained."""
    assert config.vision is not None
    if Path(config.vision.data).exists() and not (config.run_dir / IMAGE_DIR / TOWER_FILE).is_file():
        pairs = read_image_captions(config.vision.data, check_images=True)
        logger.info("vision data: %d images, %d captions", len(pairs.images), sum(map(len, pairs.captions)))


@dataclass
class VisionSide:
    """What the stage trains on: the features of every image and the caption targets of every caption."""

    features: ImageFeatures
    captions_of: list[np.ndarray]  # image i -> rows of its captions
    targets: dict[int, torch.Tensor]


def image_student(student: Any, encoder: ImageEncoder, vision: VisionConfig) -> ImageStudent:
    """A fresh image side for `student` (a jasper Student, or an exported model's text side)."""
    tower = ImageTower(encoder.width, student.hidden_size, vision.tokens, vision.mlp_hidden)
    labels = LabelTokens(student.tokenizer, encoder.classes, vision.label_tokens)
    return ImageStudent(student, tower, labels)


def closed_form(model: ImageStudent, features: torch.Tensor, captions: ImageCaptions, alpha: float) -> None:
    """Set the projection by ridge: an image's mean pooled token -> the mean word embedding of its captions
    (the input space the projection writes to), the same map for every visual token."""
    tokenizer = model.student.tokenizer
    table = model.student.backbone.get_input_embeddings().weight.detach().float().cpu()
    targets = np.zeros((len(captions.images), table.shape[1]), dtype=np.float64)
    for i, texts in enumerate(captions.captions):
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        targets[i] = np.mean([table[torch.tensor(row)].mean(0).numpy() for row in ids if row], axis=0)
    x = features.float().mean(dim=1).numpy().astype(np.float64)
    x_mean, y_mean = x.mean(0), targets.mean(0)
    xc = x - x_mean
    weight = np.linalg.solve(xc.T @ xc + alpha * len(x) * np.eye(x.shape[1]), xc.T @ (targets - y_mean))
    with torch.no_grad():
        model.tower.projection.weight.copy_(torch.from_numpy(weight.T).float())
        model.tower.projection.bias.copy_(torch.from_numpy(y_mean - x_mean @ weight).float())


class VisionRunner:
    """Runs the config's vision stages on a trained, frozen student."""

    def __init__(self, config: RunConfig, student: Student, student_dir: Path, device: torch.device) -> None:
        assert config.vision is not None
        self.config, self.vision = config, config.vision
        self.student, self.student_dir, self.device = student.eval(), student_dir, device
        self.work = config.run_dir / "vision"
        self.checkpoint_path = config.run_dir / "checkpoints" / "vision.pt"
        self.log = TrainLog(config.run_dir / "train_log.jsonl")
        self.objective = DistillObjective(**config.loss.model_dump(exclude={"short_head_target"}))
        self.steps_this_process = 0
        self.fixed: dict[str, Any] = {}  # the untrained and closed-form projections, kept for the report
        self.position = (0, 0)  # (stage index, steps done in it)
        self.saved: tuple[int, int] | None = None  # where the checkpoint stands

    def prepare(self) -> tuple[ImageStudent, VisionSide, ImageCaptions]:
        """The image side and its data: features and caption targets, computed once (resumable)."""
        pairs = training_pairs(self.vision, self.config.run_dir)
        encoder = load_image_encoder(self.vision.encoder).to(self.device)
        features = image_features(self.work / "features", "train", encoder, pairs.images, self.vision.tokens,
                                  self.vision.label_tokens, self.vision.flip, self.vision.batch_size)  # fmt: skip
        captions = [c for _, c in pairs.pairs()]
        targets = caption_targets(self.work / "captions", self.student, self.student_dir, captions)
        bounds = np.cumsum([0, *(len(c) for c in pairs.captions)])
        rows = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(pairs.images))]
        torch.manual_seed(self.config.seed)
        model = image_student(self.student, encoder, self.vision).to(self.device)
        return model, VisionSide(features, rows, targets), pairs

    def run(self) -> Path:
        """Train every vision stage not yet finished; returns `<run>/image`."""
        out = self.config.run_dir / IMAGE_DIR
        if (out / TOWER_FILE).is_file():
            logger.info("run '%s': the image side is already trained: %s", self.config.name, out)
            return out
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
            self.saved = (state.stage, state.step)
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
            logger.warning(self._interrupted())
            raise
        return self._write(out, state.model)

    def _interrupted(self) -> str:
        """What Ctrl-C leaves behind, and where `jasper train` starts again."""
        said = interruption(self.config, self.position, self.saved, self.checkpoint_path)
        return f"{said}; the text student is finished and kept"

    def _save(self, state: TrainState) -> None:
        save_checkpoint(self.checkpoint_path, state)
        self.saved = (state.stage, state.step)

    def _write(self, out: Path, weights: dict[str, Any]) -> Path:
        """`<run>/image/`: the projection (trained, closed-form, untrained) and how to rebuild the tower."""
        tmp = out.with_name(out.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for kind, file in WEIGHTS.items():
            tower = weights["tower" if kind == "trained" else kind]
            save_file({k: v.contiguous().cpu() for k, v in tower.items()}, str(tmp / file))
        atomic_write_json(tmp / TOWER_FILE, tower_metadata(self.vision, self.student))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
        return out

    def _run_stage(
        self, model: ImageStudent, side: VisionSide, index: int, stage: StageConfig, resume: TrainState | None
    ) -> None:
        n_images = len(side.captions_of)
        if n_images < stage.batch_size:
            raise ValueError(f"stage '{stage.name}': batch_size {stage.batch_size} exceeds the {n_images} images")
        total = stage_steps(stage, n_images)
        params = list(model.tower.parameters())
        optimizer = make_optimizer(params, stage)
        scheduler = _schedule(optimizer, stage, total)
        start = 0
        if resume is not None and resume.step:
            optimizer.load_state_dict(resume.optimizer or {})
            scheduler.load_state_dict(resume.scheduler or {})
            start = resume.step
        if resume is not None and resume.rng is not None:
            set_rng_state(resume.rng)
        fc1 = self.student.head_dims[0]
        dims = stage.active_heads(self.student.head_dims)
        losses = {d: list(stage.fc1_losses if d == fc1 else stage.short_head_losses) for d in dims}
        logger.info("stage %d '%s': %d steps on %d images, %s trainable parameters (the projection)",
                    index + 1, stage.name, total, n_images, f"{sum(p.numel() for p in params):,}")  # fmt: skip
        bar = progress_bar(total, stage.name, "step", start)
        self.position = (index, start)
        for step in range(start, total):
            began = time.perf_counter()
            features, classes, targets = self.batch(side, index, stage, step, dims)
            heads = model(features, dims, classes)
            parts = self.objective(heads, targets[dims[0]], losses, {d: targets[d] for d in dims[1:]})
            loss = parts["loss"] / len(dims)  # the heads' losses averaged
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not torch.isfinite(loss):
                raise ValueError(f"stage {index + 1} '{stage.name}', step {step + 1}: the loss is not finite "
                                 f"(lr {stage.lr:g}); the checkpoint {self.checkpoint_path} is kept")  # fmt: skip
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
            self.position = (index, step + 1)
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


def tower_metadata(vision: VisionConfig, student: Any) -> dict[str, Any]:
    """What rebuilds the image side: the encoder, the visual and label tokens, the widths."""
    return {"encoder": vision.encoder, "tokens": vision.tokens, "label_tokens": vision.label_tokens,
            "mlp_hidden": vision.mlp_hidden, "hidden": int(student.hidden_size), "format": 1}  # fmt: skip


def read_tower(folder: Path) -> dict[str, Any]:
    """`tower.json` of an image folder, or a clear error."""
    path = Path(folder) / TOWER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"'{folder}' holds no trained image side ({TOWER_FILE}): run a vision stage first")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def load_projection(model: ImageStudent, folder: Path, kind: str = "trained") -> ImageStudent:
    """Load one of the stored projections (trained, closed-form, untrained) into `model`."""
    model.tower.load_state_dict(load_file(str(Path(folder) / WEIGHTS[kind])))
    return model


def train_vision(config: RunConfig, student_dir: Path) -> Path:
    """Run the vision stages of `config` on its trained student; returns `<run>/image`."""
    from jasper.distributed import setup_device
    from jasper.models.student import load_student

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("the vision stage runs in one process: run `jasper train` without a launcher to add it")
    device, _ = setup_device(config.device)
    student = load_student(student_dir).to(device)
    return VisionRunner(config, student, student_dir, device).run()
