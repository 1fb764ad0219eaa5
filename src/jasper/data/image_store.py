"""What the frozen image side gives once per image, stored on disk in resumable shards like teacher vectors:
the encoder's token grid average-pooled to N tokens, and its top-k classes (for label tokens).

A folder per identity (encoder, N, k, flip, the images): `<dir>/<name>-<hash>/shard-NNNNN.npz`, then
`manifest.json` once complete. A kill loses at most the shard being computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jasper.data.images import load_images
from jasper.io import atomic_write, atomic_write_json
from jasper.locks import folder_lock
from jasper.models.image_student import pool_tokens
from jasper.models.vision import ImageEncoder
from jasper.progress import progress_bar
from jasper.runtime import kill_point

logger = logging.getLogger(__name__)
SHARD_IMAGES = 250


@dataclass
class ImageFeatures:
    """Per image and view (view 1 = mirrored, when stored): pooled tokens and top classes."""

    tokens: torch.Tensor  # (images, views, N, width) float16
    classes: torch.Tensor  # (images, views, k) int64, most likely first

    @property
    def views(self) -> int:
        """1, or 2 with mirrored copies."""
        return int(self.tokens.shape[1])


@torch.no_grad()
def encode_images(
    encoder: ImageEncoder, images: list[Any], n_tokens: int, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled tokens (B, N, width) float32, top classes (B, k)) of PIL images; k is 0 without a classifier."""
    grid = encoder.tokens(encoder.pixels(images))
    probs = encoder.class_probs(grid) if top_k else None
    classes = probs.topk(top_k, dim=-1).indices if probs is not None else torch.zeros(len(images), 0, dtype=torch.long)
    return pool_tokens(grid, n_tokens).float(), classes


def _identity(encoder: ImageEncoder, paths: list[Path], n_tokens: int, top_k: int, flip: bool) -> dict[str, Any]:
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat() if path.is_file() else None
        digest.update(f"{path}\0{stat.st_size if stat else -1}\n".encode())
    top_k = top_k if encoder.classes else 0
    return {"encoder": encoder.name, "tokens": n_tokens, "top_k": top_k, "flip": flip, "images": len(paths),
            "images_sha256": digest.hexdigest(), "width": encoder.width}  # fmt: skip


def image_features(
    folder: Path,
    name: str,
    encoder: ImageEncoder,
    paths: list[Path],
    n_tokens: int,
    top_k: int = 0,
    flip: bool = False,
    batch_size: int = 50,
) -> ImageFeatures:
    """The features of `paths`, computed once into `folder` (resuming finished shards) and read back."""
    identity = _identity(encoder, paths, n_tokens, top_k, flip)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    where = Path(folder) / f"{name}-{key}"
    n_shards = (len(paths) + SHARD_IMAGES - 1) // SHARD_IMAGES
    with folder_lock(where, f"image features '{name}'"):
        if not (where / "manifest.json").is_file():
            _compute(where, name, encoder, paths, identity, n_shards, batch_size)
            atomic_write_json(where / "manifest.json", identity)
    shards = [np.load(where / f"shard-{k:05d}.npz") for k in range(n_shards)]
    tokens = torch.from_numpy(np.concatenate([s["tokens"] for s in shards]))
    classes = torch.from_numpy(np.concatenate([s["classes"] for s in shards]).astype(np.int64))
    return ImageFeatures(tokens, classes)


def _compute(
    where: Path,
    name: str,
    encoder: ImageEncoder,
    paths: list[Path],
    identity: dict[str, Any],
    n_shards: int,
    batch_size: int,
) -> None:
    where.mkdir(parents=True, exist_ok=True)
    todo = [k for k in range(n_shards) if not (where / f"shard-{k:05d}.npz").is_file()]
    done = sum(min(SHARD_IMAGES, len(paths) - k * SHARD_IMAGES) for k in range(n_shards) if k not in todo)
    if done:
        logger.info("image features '%s': resuming, %d of %d images stored", name, done, len(paths))
    views = [False, True] if identity["flip"] else [False]
    with progress_bar(len(paths), f"image features {name}", "image", done) as bar:
        for count, k in enumerate(todo, start=1):
            tokens, classes = [], []
            for start in range(k * SHARD_IMAGES, min(len(paths), (k + 1) * SHARD_IMAGES), batch_size):
                chunk = paths[start : min(start + batch_size, (k + 1) * SHARD_IMAGES, len(paths))]
                images = load_images(chunk)
                per_view = [encode_images(encoder, _mirror(images) if m else images, identity["tokens"],
                                          identity["top_k"]) for m in views]  # fmt: skip
                tokens.append(torch.stack([t for t, _ in per_view], dim=1).half().numpy())
                classes.append(torch.stack([c for _, c in per_view], dim=1).to(torch.int32).numpy())
                bar.update(len(chunk))
            _save_shard(where / f"shard-{k:05d}.npz", np.concatenate(tokens), np.concatenate(classes))
            kill_point("JASPER_KILL_AFTER_IMAGE_SHARDS", count)


def _save_shard(path: Path, tokens: np.ndarray, classes: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez(handle, tokens=tokens, classes=classes)

    atomic_write(path, write)


def _mirror(images: list[Any]) -> list[Any]:
    from PIL import Image

    return [image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for image in images]
