"""Teacher backends: anything that turns a list of texts into vectors, built by name from a teacher's config."""

from __future__ import annotations

from collections.abc import Callable

from jasper.config import TeacherConfig
from jasper.teachers.base import Teacher


def _sentence_transformers(config: TeacherConfig, device: str) -> Teacher:
    from jasper.teachers.sentence_transformers import SentenceTransformerTeacher

    return SentenceTransformerTeacher(config, device)


def _openai_api(config: TeacherConfig, device: str) -> Teacher:
    from jasper.teachers.openai_api import OpenAIEmbeddingsTeacher

    return OpenAIEmbeddingsTeacher(config)


def _callable(config: TeacherConfig, device: str) -> Teacher:
    from jasper.teachers.callable import CallableTeacher

    return CallableTeacher(config)


# `teachers[].backend` -> how to build it (each backend is imported only when used)
BACKENDS: dict[str, Callable[[TeacherConfig, str], Teacher]] = {
    "sentence-transformers": _sentence_transformers,
    "openai-api": _openai_api,
    "callable": _callable,
}


def build_teacher(config: TeacherConfig, device: str = "cpu") -> Teacher:
    """Build the backend that `config.backend` names."""
    return BACKENDS[config.backend](config, device)


__all__ = ["BACKENDS", "Teacher", "build_teacher"]
