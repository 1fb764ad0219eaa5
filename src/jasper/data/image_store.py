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
from typing import Any, Protocol

import numpy as np
import torch

from jasper.data.images import load_images
from jasper.io import atomic_write, atomic_write_json
from jasper.locks import folder_lock
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


class FeatureSource(Protocol):
    """What computes the stored features: PIL images -> (pooled tokens (B, N, width), top classes (B, k))."""

    identity: dict[str, Any]  # what changes the features (encoder, tokens, top_k, width): part of the cache key

    def __call__(self, images: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The features of a batch of images."""
        ...


def _identity(source: FeatureSource, paths: list[Path], flip: bool) -> dict[str, Any]:
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat() if path.is_file() else None
        digest.update(f"{path}\0{stat.st_size if stat else -1}\n".encode())
    return {**source.identity, "flip": flip, "images": len(paths), "images_sha256": digest.hexdigest()}


def image_features(
    folder: Path, name: str, source: FeatureSource, paths: list[Path], flip: bool = False, batch_size: int = 50
) -> ImageFeatures:
    """The features of `paths` by `source`, computed once into `folder` (resuming finished shards) and read back."""
    identity = _identity(source, paths, flip)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    where = Path(folder) / f"{name}-{key}"
    n_shards = (len(paths) + SHARD_IMAGES - 1) // SHARD_IMAGES
    with folder_lock(where, f"image features '{name}'"):
        if not (where / "manifest.json").is_file():
            _compute(where, name, source, paths, flip, n_shards, batch_size)
            atomic_write_json(where / "manifest.json", identity)
    shards = [np.load(where / f"shard-{k:05d}.npz") for k in range(n_shards)]
    tokens = torch.from_numpy(np.concatenate([s["tokens"] for s in shards]))
    classes = torch.from_numpy(np.concatenate([s["classes"] for s in shards]).astype(np.int64))
    return ImageFeatures(tokens, classes)


def _compute(
    where: Path, name: str, source: FeatureSource, paths: list[Path], flip: bool, n_shards: int, batch_size: int
) -> None:
    where.mkdir(parents=True, exist_ok=True)
    todo = [k for k in range(n_shards) if not (where / f"shard-{k:05d}.npz").is_file()]
    done = sum(min(SHARD_IMAGES, len(paths) - k * SHARD_IMAGES) for k in range(n_shards) if k not in todo)
    if done:
        logger.info("image features '%s': resuming, %d of %d images stored", name, done, len(paths))
    views = [False, True] if flip else [False]
    with progress_bar(len(paths), f"image features {name}", "image", done) as bar:
        for count, k in enumerate(todo, start=1):
            tokens, classes = [], []
            for start in range(k * SHARD_IMAGES, min(len(paths), (k + 1) * SHARD_IMAGES), batch_size):
                chunk = paths[start : min(start + batch_size, (k + 1) * SHARD_IMAGES, len(paths))]
                images = load_images(chunk)
                per_view = [source(_mirror(images) if mirrored else images) for mirrored in views]
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
