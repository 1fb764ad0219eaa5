"""A sentence-transformers model (folder or hub id) as a teacher."""

from __future__ import annotations

import logging

import numpy as np
import torch

from jasper.assets import resolve_model
from jasper.config import TeacherConfig
from jasper.errors import JasperError
from jasper.teachers.base import RowsDone

logger = logging.getLogger(__name__)
ST_CHUNK_BATCHES = 16  # engine sentence-transformers: batches per `SentenceTransformer.encode` call


class SentenceTransformerTeacher:
    """Encodes through the fast path (`teachers.fast_encode`) or `SentenceTransformer.encode` (the texts carry their
    prompts already: `teacher_inputs`)."""

    def __init__(self, config: TeacherConfig, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        from jasper.teachers.fast_encode import FastSentenceEncoder, resolve_dtype

        self.name = config.name
        self.config = config
        self.model = SentenceTransformer(
            resolve_model(config.model), device=device, trust_remote_code=config.trust_remote_code
        )
        if config.max_length:
            self.model.max_seq_length = config.max_length
        self.fast: FastSentenceEncoder | None = None
        fast_ok = FastSentenceEncoder.supports(self.model)
        if config.engine == "fast" and not fast_ok:
            raise JasperError(
                f"teacher '{config.name}': engine 'fast' needs a text model with a fast tokenizer; "
                "use engine: sentence-transformers (or auto)"
            )
        dtype = resolve_dtype(config.dtype, torch.device(device), _checkpoint_dtype(self.model))
        if config.engine != "sentence-transformers" and fast_ok:
            self.fast = FastSentenceEncoder(
                self.model, torch.device(device), dtype, config.batch_size, config.max_batch_tokens, config.workers
            )
        elif dtype != torch.float32:
            self.model.to(dtype)
        logger.info("teacher '%s': %s engine, %s", config.name, "fast" if self.fast else "sentence-transformers", dtype)

    @property
    def cut_rows(self) -> int | None:
        """Texts cut at the model's max_length so far (None where the engine does not count)."""
        return self.fast.cut_rows if self.fast is not None else None

    @property
    def max_length(self) -> int | None:
        """The model's max_seq_length."""
        return getattr(self.model, "max_seq_length", None)

    def encode(self, texts: list[str], on_rows: RowsDone | None = None) -> np.ndarray:
        """Vectors for `texts`, shape (len(texts), dim), float32; `on_rows(n)` after each batch."""
        if self.fast is not None:
            return self.fast.encode(texts, on_rows)
        size = self.config.batch_size
        chunk = size * ST_CHUNK_BATCHES
        parts = []
        for start in range(0, len(texts), chunk):  # chunks: progress shows, and each still sorts by length
            batch = texts[start : start + chunk]
            parts.append(self.model.encode(batch, batch_size=size, convert_to_numpy=True, show_progress_bar=False))
            if on_rows is not None:
                on_rows(len(batch))
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32)


def _checkpoint_dtype(model: object) -> torch.dtype | None:
    """The dtype the checkpoint declares (`torch_dtype`/`dtype` in its config), if any."""
    try:
        hf_config = model[0].auto_model.config  # type: ignore[index]
    except (AttributeError, IndexError, TypeError):
        return None
    declared = getattr(hf_config, "dtype", None) or getattr(hf_config, "torch_dtype", None)
    if isinstance(declared, str):
        declared = getattr(torch, declared, None)
    return declared if isinstance(declared, torch.dtype) else None
