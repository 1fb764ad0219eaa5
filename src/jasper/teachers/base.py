"""The teacher interface and the factory that builds one from its config."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from jasper.config import TeacherConfig


class Teacher(Protocol):
    """Turns texts into vectors (rows = texts); the store normalises them."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors for `texts`, shape (len(texts), dim)."""
        ...


def build_teacher(config: TeacherConfig, device: str = "cpu") -> Teacher:
    """Build the backend that `config.backend` names."""
    if config.backend == "sentence-transformers":
        from jasper.teachers.sentence_transformers import SentenceTransformerTeacher

        return SentenceTransformerTeacher(config, device)
    if config.backend == "openai-api":
        from jasper.teachers.openai_api import OpenAIEmbeddingsTeacher

        return OpenAIEmbeddingsTeacher(config)
    from jasper.teachers.callable import CallableTeacher

    return CallableTeacher(config)
