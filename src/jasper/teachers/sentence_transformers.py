"""A sentence-transformers model (folder or hub id) as a teacher."""

from __future__ import annotations

import numpy as np

from jasper.assets import resolve_model
from jasper.config import TeacherConfig


class SentenceTransformerTeacher:
    """Encodes with `SentenceTransformer.encode`, the prompt prepended to every text."""

    def __init__(self, config: TeacherConfig, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        self.name = config.name
        self.config = config
        self.model = SentenceTransformer(
            resolve_model(config.model), device=device, trust_remote_code=config.trust_remote_code
        )
        if config.max_length:
            self.model.max_seq_length = config.max_length

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors for `texts`, shape (len(texts), dim), float32."""
        prompted = [self.config.prompt + t for t in texts] if self.config.prompt else texts
        vectors = self.model.encode(
            prompted, batch_size=self.config.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
