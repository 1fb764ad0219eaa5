"""The trained image side of a run, as stored and loaded: `<run>/image/` (or `image/` beside an export) holds the
projections and `tower.json`; `ImageEmbedder` turns images into unit vectors at every head through it.

Train, eval, export, encode and serve all read the format from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from jasper.config import VisionConfig
from jasper.data.images import load_images, to_rgb
from jasper.errors import JasperError
from jasper.models.image_student import ImageStudent, ImageTower, LabelTokens, SentenceTransformerSide, pool_tokens
from jasper.models.vision import ImageEncoder, load_image_encoder
from jasper.progress import progress_bar
from jasper.run_folder import IMAGE_DIR

TOWER_FILE = "tower.json"
WEIGHTS = {"trained": "projection.safetensors", "closed-form": "closed_form.safetensors",
           "untrained": "untrained.safetensors"}  # fmt: skip
FORMAT = 1


class PooledTokens:
    """What the frozen encoder gives once per image: its grid average-pooled to N tokens, and its top-k classes."""

    def __init__(self, encoder: ImageEncoder, n_tokens: int, top_k: int) -> None:
        self.encoder, self.n_tokens = encoder, n_tokens
        self.top_k = top_k if encoder.classes else 0
        # what changes the features (the feature cache's key)
        self.identity = {"encoder": encoder.name, "tokens": n_tokens, "top_k": self.top_k, "width": encoder.width}

    @torch.no_grad()
    def __call__(self, images: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled tokens (B, N, width) float32, top classes (B, k)) of PIL images; k is 0 without a classifier."""
        grid = self.encoder.tokens(self.encoder.pixels(images))
        probs = self.encoder.class_probs(grid) if self.top_k else None
        if probs is None:
            classes = torch.zeros(len(images), 0, dtype=torch.long)
        else:
            classes = probs.topk(self.top_k, dim=-1).indices
        return pool_tokens(grid, self.n_tokens).float(), classes


def build_image_student(student: Any, encoder: ImageEncoder, vision: VisionConfig) -> ImageStudent:
    """A fresh image side for `student` (a jasper Student, or an exported model's text side)."""
    tower = ImageTower(encoder.width, student.hidden_size, vision.tokens, vision.mlp_hidden)
    labels = LabelTokens(student.tokenizer, encoder.classes, vision.label_tokens)
    return ImageStudent(student, tower, labels)


def tower_metadata(vision: VisionConfig, student: Any) -> dict[str, Any]:
    """What rebuilds the image side: the encoder, the visual and label tokens, the widths."""
    return {"encoder": vision.encoder, "tokens": vision.tokens, "label_tokens": vision.label_tokens,
            "mlp_hidden": vision.mlp_hidden, "hidden": int(student.hidden_size), "format": FORMAT}  # fmt: skip


def read_tower(folder: Path) -> dict[str, Any]:
    """`tower.json` of an image folder, or a clear error."""
    path = Path(folder) / TOWER_FILE
    if not path.is_file():
        raise JasperError(f"'{folder}' holds no trained image side ({TOWER_FILE}): run a vision stage first")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def load_projection(model: ImageStudent, folder: Path, kind: str = "trained") -> ImageStudent:
    """Load one of the stored projections (trained, closed-form, untrained) into `model`."""
    model.tower.load_state_dict(load_file(str(Path(folder) / WEIGHTS[kind])))
    return model


class ImageEmbedder:
    """Images -> unit vectors at every head of a text model, through its own encoder (the image path)."""

    def __init__(self, model: ImageStudent, encoder: ImageEncoder, tower: dict[str, Any]) -> None:
        self.model, self.encoder, self.tower = model.eval(), encoder, tower
        self.features = PooledTokens(encoder, tower["tokens"], tower["label_tokens"])

    @classmethod
    def load(cls, image_dir: Path, text_side: Any, kind: str = "trained") -> ImageEmbedder:
        """The image side stored in `image_dir` on `text_side` (a jasper Student or an exported model's)."""
        tower = read_tower(image_dir)
        encoder = load_image_encoder(tower["encoder"])
        vision = VisionConfig(encoder=tower["encoder"], data="-", tokens=tower["tokens"],
                              label_tokens=tower["label_tokens"], mlp_hidden=tower.get("mlp_hidden", 0))  # fmt: skip
        model = load_projection(build_image_student(text_side, encoder, vision), image_dir, kind)
        return cls(model, encoder, tower)

    @classmethod
    def from_export(cls, folder: str | Path) -> ImageEmbedder:
        """An exported head folder (`dim-<D>/`, or `--out`) with the image side beside it (`image/`)."""
        from sentence_transformers import SentenceTransformer

        folder = Path(folder)
        image_dir = next((d for d in (folder / IMAGE_DIR, folder.parent / IMAGE_DIR) if (d / TOWER_FILE).is_file()),
                         None)  # fmt: skip
        if image_dir is None:
            raise JasperError(f"no image side next to '{folder}' (image/tower.json): export a run with a vision stage")
        return cls.load(image_dir, SentenceTransformerSide(SentenceTransformer(str(folder), device="cpu")))

    @property
    def dims(self) -> list[int]:
        """The head dims images can be embedded at."""
        return list(self.model.student.head_dims)

    @torch.no_grad()
    def embed_features(self, features: torch.Tensor, classes: torch.Tensor, dims: list[int]) -> dict[int, np.ndarray]:
        """{dim: (B, dim) unit vectors} from cached pooled tokens and top classes."""
        heads = self.model(features.float(), dims, classes)
        return {d: torch.nn.functional.normalize(v, dim=-1).cpu().numpy() for d, v in heads.items()}

    def embed(self, images: list[Any], dims: list[int] | None = None, batch_size: int = 32) -> dict[int, np.ndarray]:
        """{dim: (N, dim) unit vectors} of images (paths or PIL images)."""
        dims = dims or self.dims
        out: dict[int, list[np.ndarray]] = {d: [] for d in dims}
        with progress_bar(len(images), "images", "image") as bar:
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                pil = load_images(chunk) if isinstance(chunk[0], (str, Path)) else [to_rgb(image) for image in chunk]
                features, classes = self.features(pil)
                for d, v in self.embed_features(features, classes, dims).items():
                    out[d].append(v)
                bar.update(len(chunk))
        return {d: np.concatenate(v) for d, v in out.items()}
