"""The teacher interface, and batching for backends that call a function or an endpoint per batch."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from jasper.config import TeacherConfig

RowsDone = Callable[[int], object]  # progress: called with the number of texts a finished batch held


def teacher_inputs(config: TeacherConfig, texts: list[str], roles: list[str] | str = "text") -> list[str]:
    """What the teacher reads: each text behind its role's prompt (`roles`: one per text, or one for all)."""
    each = [roles] * len(texts) if isinstance(roles, str) else roles
    return [config.prompt_for(role) + text for text, role in zip(texts, each, strict=True)]


class Teacher(Protocol):
    """Turns texts (prompts already in place: `teacher_inputs`) into vectors (rows = texts); the store normalises
    them."""

    name: str

    def encode(self, texts: list[str], on_rows: RowsDone | None = None) -> np.ndarray:
        """Vectors for `texts`, shape (len(texts), dim); `on_rows(n)` is called as batches finish."""
        ...


def encode_in_batches(
    texts: list[str],
    config: TeacherConfig,
    call: Callable[[list[str]], np.ndarray],
    on_rows: RowsDone | None = None,
) -> np.ndarray:
    """Cut into `batch_size` batches, `call` each (`workers` at once, in threads), join in order."""
    size = config.batch_size
    batches = [texts[start : start + size] for start in range(0, len(texts), size)]

    def counted(batch: list[str]) -> np.ndarray:
        vectors = call(batch)
        if on_rows is not None:
            on_rows(len(batch))
        return vectors

    if config.workers > 1 and len(batches) > 1:
        # threads suit backends that release the GIL: C engines through ctypes, HTTP clients
        with ThreadPoolExecutor(config.workers) as pool:
            results = list(pool.map(counted, batches))
    else:
        results = [counted(batch) for batch in batches]
    return np.concatenate(results) if results else np.zeros((0, 0), np.float32)
