"""Embed texts with a run's student, a saved student or any sentence-transformers folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from jasper.config import load_config

logger = logging.getLogger(__name__)
JASPER_EXPORT_META = "jasper_head.json"  # written by `jasper export` beside each head's modules


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


def model_dim(model: Any) -> int:
    """A SentenceTransformer's output dim (sentence-transformers renamed the method in 6.x)."""
    method = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(method() or 0)


def encode_texts(
    target: str, texts: list[str], dim: int | None, batch_size: int = 64, truncate: bool = False
) -> np.ndarray:
    """L2-normalised vectors (N, dim) for `texts`; dim None = the FC1 head (or the model's own output).

    One rule for runs and model folders: `dim` must be a dim the model was trained to give (a head of a run;
    a folder's own output dim, or a prefix head of a jasper export with head_mode prefix). `truncate=True`
    cuts a plain model's vectors anyway, for models trained Matryoshka-style, with a warning.
    """
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

    model = SentenceTransformer(resolve_model(target), device="cpu")
    own = model_dim(model)
    if dim is not None and dim != own:
        _check_truncation(target, own, dim, truncate)
        model.truncate_dim = dim
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=True)
    return np.asarray(vectors, dtype=np.float32)


def _check_truncation(target: str, own: int, dim: int, truncate: bool) -> None:
    """Refuse a dim the model was not trained to give, unless asked to truncate (then warn)."""
    if dim > own:
        raise ValueError(f"'{target}' gives {own}-d vectors: --dim {dim} is larger")
    meta_path = Path(target) / JASPER_EXPORT_META
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("head_mode") == "prefix" and meta.get("dim") == meta["heads"][0] and dim in meta["heads"]:
            return  # a prefix of FC1 is exactly that head's output
        raise ValueError(
            f"'{target}' is jasper's {own}-d head; --dim {dim} would truncate it, and jasper's heads are "
            f"independent, not prefixes: use the {dim}-d head's export (the run's heads: {meta['heads']})"
            if dim in meta["heads"]
            else f"'{target}' is jasper's {own}-d head and {dim} is no head of its run (heads: {meta['heads']})"
        )
    if not truncate:
        raise ValueError(
            f"'{target}' gives {own}-d vectors; --dim {dim} would cut them, which is only meaningful for a model "
            "trained for it (Matryoshka): pass --truncate to cut anyway"
        )
    logger.warning("cutting %s's %d-d vectors to %d dims: right only for Matryoshka-trained models", target, own, dim)


def image_files(folder: str | Path) -> list[Path]:
    """The image files under `folder` (recursively), sorted; an error when there are none."""
    from jasper.data.images import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images '{folder}' is not a folder")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise ValueError(f"--images '{folder}' holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def image_embedder(target: str | Path) -> Any:
    """The image path of a run (folder or config) or of an exported head folder with `image/` beside it."""
    from jasper.eval.vision import ImageEmbedder
    from jasper.train.vision import IMAGE_DIR, read_tower

    student_dir = resolve_student_dir(target)
    if student_dir is None:
        return ImageEmbedder.from_export(target)
    from jasper.models.student import load_student

    read_tower(student_dir.parent / IMAGE_DIR)  # no image side: the error says so before the student loads
    return ImageEmbedder.load(student_dir.parent / IMAGE_DIR, load_student(student_dir))


def encode_images(target: str | Path, images: list[Any], dim: int | None = None, batch_size: int = 32) -> np.ndarray:
    """Unit vectors (N, dim) of images (paths or PIL images) in the text space of `target`'s head `dim`
    (default FC1): compare them with the same model's text vectors."""
    embedder = image_embedder(target)
    chosen = dim if dim is not None else embedder.dims[0]
    if chosen not in embedder.dims:
        raise ValueError(f"dim {chosen} is not a head of '{target}' (heads: {embedder.dims})")
    return np.asarray(embedder.embed(list(images), [chosen], batch_size)[chosen], dtype=np.float32)
