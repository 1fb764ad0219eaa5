"""Image-text metrics of the vision stage: retrieval Recall@K both ways, and zero-shot classification."""

from __future__ import annotations

import numpy as np


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def text_to_image_recall(
    images: np.ndarray, captions: np.ndarray, owner: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[int, float]:
    """Share x 100 of captions whose own image (`owner[c]`) is among the K images nearest to them.

    (I, D) image vectors, (C, D) caption vectors, (C,) index of each caption's image.
    """
    scores = _unit(captions) @ _unit(images).T  # (C, I)
    own = scores[np.arange(len(captions)), owner]
    rank = (scores > own[:, None]).sum(axis=1)  # images strictly closer than the right one
    return {k: float((rank < k).mean() * 100) for k in ks}


def image_to_text_recall(
    images: np.ndarray, captions: np.ndarray, owner: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[int, float]:
    """Share x 100 of images with at least one of their own captions among the K captions nearest to them."""
    scores = _unit(images) @ _unit(captions).T  # (I, C)
    mine = owner[None, :] == np.arange(len(images))[:, None]  # (I, C)
    best_own = np.where(mine, scores, -np.inf).max(axis=1)
    rank = (np.where(mine, -np.inf, scores) > best_own[:, None]).sum(axis=1)  # others closer than the best own
    return {k: float((rank < k).mean() * 100) for k in ks}


def zero_shot_top1(images: np.ndarray, classes: np.ndarray, labels: np.ndarray) -> float:
    """Share x 100 of images whose nearest class vector (e.g. "a photo of a {name}.") is their label."""
    predicted = (_unit(images) @ _unit(classes).T).argmax(axis=1)
    return float((predicted == labels).mean() * 100)
