"""A Python callable `module:function` as a teacher (non-torch models, vectors bought from an API)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from jasper.config import TeacherConfig
from jasper.errors import JasperError
from jasper.teachers.base import RowsDone, encode_in_batches


def load_callable(spec: str) -> Callable[[list[str]], Any]:
    """Import `module:function` (the function may be a dotted attribute path)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise JasperError(f"callable teacher model '{spec}' is not of the form module:function")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise JasperError(f"callable teacher '{spec}': cannot import '{module_name}': {error}") from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise JasperError(f"callable teacher '{spec}': '{module_name}' has no attribute '{attr}'")
        target = getattr(target, part)
    if not callable(target):
        raise JasperError(f"callable teacher '{spec}' is not callable")
    return target  # type: ignore[no-any-return]


class CallableTeacher:
    """Calls `function(texts)` batch by batch; it must return one vector per text."""

    def __init__(self, config: TeacherConfig) -> None:
        self.name = config.name
        self.config = config
        self.function = load_callable(config.model)

    def encode(self, texts: list[str], on_rows: RowsDone | None = None) -> np.ndarray:
        """Vectors for `texts`, shape (len(texts), dim), float32; `workers` batches run concurrently."""
        return encode_in_batches(texts, self.config, self._call, on_rows)

    def _call(self, batch: list[str]) -> np.ndarray:
        found = self.function(batch)
        try:
            vectors = np.asarray(found, dtype=np.float32)
        except (ValueError, TypeError) as error:
            raise JasperError(
                f"teacher '{self.name}' ({self.config.model}) returned something that is not a (n, dim) array of "
                f"numbers for {len(batch)} texts ({type(found).__name__}: {error})"
            ) from None
        if vectors.ndim != 2 or vectors.shape[0] != len(batch):
            raise JasperError(
                f"teacher '{self.name}' ({self.config.model}) returned shape {vectors.shape} "
                f"for {len(batch)} texts; expected ({len(batch)}, dim)"
            )
        return vectors
