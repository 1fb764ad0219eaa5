"""What the vision stage trains on, computed once per run: the image-caption pairs, the frozen student's caption
vectors at every head (a store like the teachers'), and the closed-form start of the projection."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jasper.config import RunConfig, TeacherConfig, VisionConfig
from jasper.data.image_store import ImageFeatures
from jasper.data.images import ImageCaptions, read_image_captions
from jasper.data.store import TeacherStore
from jasper.data.store_writer import compute_teacher
from jasper.models.image_side import TOWER_FILE
from jasper.models.image_student import ImageStudent
from jasper.models.student import Student

logger = logging.getLogger(__name__)


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


def training_pairs(vision: VisionConfig, work: Path) -> ImageCaptions:
    """The stage's image-caption pairs: a local folder / JSONL, else a hub dataset copied into `work/data`."""
    from jasper.data.images import hub_image_captions

    if Path(vision.data).exists():
        return read_image_captions(vision.data, check_images=False)  # each image is opened once, when cached
    if vision.data_hub is not None:
        logger.info("vision data: '%s' is not here: reading the hub's '%s' (%s)", vision.data, vision.data_hub,
                    vision.data_split)  # fmt: skip
        return hub_image_captions(vision.data_hub, vision.data_split, work / "data")
    return hub_image_captions(vision.data, vision.data_split, work / "data")


def check_training_images(config: RunConfig) -> None:
    """Open every local training image once (a missing or unreadable one is an error naming it), unless the
    image side is already trained."""
    assert config.vision is not None
    if Path(config.vision.data).exists() and not (config.folder.image / TOWER_FILE).is_file():
        pairs = read_image_captions(config.vision.data, check_images=True)
        logger.info("vision data: %d images, %d captions", len(pairs.images), sum(map(len, pairs.captions)))


@dataclass
class VisionSide:
    """What the stage trains on: the features of every image and the caption targets of every caption."""

    features: ImageFeatures
    captions_of: list[np.ndarray]  # image i -> rows of its captions
    targets: dict[int, torch.Tensor]


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
