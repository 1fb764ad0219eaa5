"""Embed texts with a run's student, a saved student or any sentence-transformers folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jasper.config import load_config


def resolve_student_dir(target: str | Path) -> Path | None:
    """The saved student of a run folder / config / student folder, or None for anything else."""
    path = Path(target)
    if (path / "student.json").is_file():
        return path
    if (path / "student" / "student.json").is_file():
        return path / "student"
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        student = load_config(path).run_dir / "student"
        if (student / "student.json").is_file():
            return student
        raise FileNotFoundError(f"config '{path}' has no trained student at '{student}': run `jasper train` first")
    return None


def encode_texts(target: str, texts: list[str], dim: int | None, batch_size: int = 64) -> np.ndarray:
    """L2-normalised vectors (N, dim) for `texts`; dim None = the FC1 head (or the model's own output)."""
    student_dir = resolve_student_dir(target)
    if student_dir is not None:
        from jasper.models.student import load_student

        student = load_student(student_dir)
        chosen = dim if dim is not None else student.head_dims[0]
        if chosen not in student.head_dims:
            raise ValueError(f"dim {chosen} is not a head of '{student_dir}' (heads: {student.head_dims})")
        return student.encode(texts, [chosen], batch_size=batch_size, progress=True)[chosen]
    from sentence_transformers import SentenceTransformer

    from jasper.assets import resolve_model

    model = SentenceTransformer(resolve_model(target), device="cpu", truncate_dim=dim)
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=True)
    return np.asarray(vectors, dtype=np.float32)
