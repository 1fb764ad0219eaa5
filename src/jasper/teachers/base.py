"""The teacher interface, and batching for backends that call a function or an endpoint per batch."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from jasper.config import TeacherConfig

RowsDone = Callable[[int], object]  # progress: called with the number of texts a finished batch held


class Teacher(Protocol):
    """Turns texts into vectors (rows = texts); the store normalises them."""

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
    """Prompt, cut into `batch_size` batches, `call` each (`workers` at once, in threads), join in order."""
    prompted = [config.prompt + t for t in texts] if config.prompt else texts
    size = config.batch_size
    batches = [prompted[start : start + size] for start in range(0, len(prompted), size)]

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
