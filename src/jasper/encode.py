"""Embedding with jasper's models: texts through a run's student, a saved student, an exported head or any
sentence-transformers model; images through a run's (or an export's) image path."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from jasper.config import load_config
from jasper.errors import JasperError
from jasper.export.sentence_transformers import JASPER_EXPORT_META
from jasper.prompts import ROLE_PROMPT_NAMES
from jasper.run_folder import saved_student

logger = logging.getLogger(__name__)


def resolve_student_dir(target: str | Path) -> Path | None:
    """The saved student of a run folder, a config or a student folder; None for anything else (a model)."""
    path = Path(target)
    found = saved_student(path)
    if found is not None or not (path.is_file() and path.suffix in (".yaml", ".yml")):
        return found
    run = load_config(path).folder
    if not run.has_student:
        raise JasperError(f"config '{path}' has no trained student at '{run.student}': run `jasper train` first")
    return run.student


def load_sentence_transformer(name: str, device: str = "cpu") -> Any:
    """A SentenceTransformer from a folder, a packaged copy or a hub id (one clear line when it cannot load)."""
    from sentence_transformers import SentenceTransformer

    from jasper.assets import resolve_model

    resolved = resolve_model(name)
    try:
        return SentenceTransformer(resolved, device=device)
    except Exception as error:  # a damaged or foreign folder fails in many library-specific ways
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise JasperError(
            f"'{name}' cannot be loaded as a sentence-transformers model ({type(error).__name__}: {first}): it is "
            "damaged or incomplete; if it is a jasper export, export it again (`jasper export RUN`)"
        ) from None


def st_encode(
    model: Any,
    texts: list[str],
    batch_size: int = 64,
    normalize: bool = True,
    progress: bool = False,
    role: str = "text",
) -> np.ndarray:
    """`SentenceTransformer.encode` as jasper calls it everywhere: float32 rows, L2-normalised by default; a query
    through `encode_query`, a document through `encode_document` (each with the model's own prompt for it)."""
    method = {"query": model.encode_query, "document": model.encode_document}.get(role, model.encode)
    vectors = method(texts, batch_size=batch_size, normalize_embeddings=normalize, show_progress_bar=progress)
    return np.asarray(vectors, dtype=np.float32)


def token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token count of each text before truncation (special tokens included)."""
    return [len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]


def say_cut(tokenizer: Any, texts: list[str], limit: int, what: str) -> int:
    """Log how many of `texts` are longer than `limit` tokens (the model reads only their first `limit`)."""
    cut = sum(n > limit for n in token_counts(tokenizer, texts))
    if cut:
        logger.info("%s: %s of %s texts are longer than its max_seq_length %d and are cut there", what, f"{cut:,}",
                    f"{len(texts):,}", limit)  # fmt: skip
    return cut


def model_dim(model: Any) -> int:
    """A SentenceTransformer's output dim (sentence-transformers renamed the method in 6.x)."""
    method = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(method() or 0)


class EmbeddingModel:
    """A model to embed with: a run (folder or config), a saved student, an exported head or any
    sentence-transformers model; images too where the run (or the export) has a trained image side.

    One rule for every kind: `dim` must be a dim the model was trained to give (a head of a run; a folder's own
    output dim, or a prefix head of a jasper export with head_mode prefix).
    """

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        self.student_dir = resolve_student_dir(target)
        self.student: Any = None
        self.sentence_transformer: Any = None
        if self.student_dir is not None:
            from jasper.models.student import load_student

            self.student = load_student(self.student_dir, inference=True)
            self.dims = list(self.student.head_dims)
        else:
            self.sentence_transformer = load_sentence_transformer(self.target)
            self.dims = [model_dim(self.sentence_transformer)]
        self._images: Any = None

    def encode(
        self,
        texts: list[str],
        dim: int | None = None,
        batch_size: int = 64,
        truncate: bool = False,
        prompt_name: str | None = None,
    ) -> np.ndarray:
        """L2-normalised vectors (N, dim) of `texts`; dim None = FC1 (or the model's own output). `prompt_name`
        `query` or `document` reads them with the model's prompt for that (as `encode_query` / `encode_document`);
        None with its default prompt, if it has one. Texts longer than the model reads are counted in the log.

        `truncate=True` cuts a plain model's vectors to `dim` anyway, for models trained Matryoshka-style.
        """
        if prompt_name is not None and prompt_name not in ROLE_PROMPT_NAMES:
            raise JasperError(f"prompt name '{prompt_name}': choose {' or '.join(ROLE_PROMPT_NAMES)}")
        role = prompt_name or "text"
        if self.student is not None:
            chosen = dim if dim is not None else self.dims[0]
            if chosen not in self.dims:
                raise JasperError(f"dim {chosen} is not a head of '{self.student_dir}' (heads: {self.dims})")
            student = self.student
            say_cut(student.tokenizer, student.inputs(texts, role), student.max_seq_length, self.target)
            found = student.encode(texts, [chosen], batch_size=batch_size, progress=True, role=role)
            return np.asarray(found[chosen])
        model, own = self.sentence_transformer, self.dims[0]
        if dim is not None and dim != own:
            _check_truncation(self.target, own, dim, truncate)
        model.truncate_dim = dim if dim != own else None
        if model.max_seq_length:
            say_cut(model.tokenizer, texts, int(model.max_seq_length), self.target)
        return st_encode(model, texts, batch_size, progress=True, role=role)

    def encode_images(self, images: list[Any], dim: int | None = None, batch_size: int = 32) -> np.ndarray:
        """Unit vectors (N, dim) of images (paths or PIL images), in the space of the same head's text vectors."""
        if self._images is None:
            self._images = self._image_embedder()
        chosen = dim if dim is not None else self._images.dims[0]
        if chosen not in self._images.dims:
            raise JasperError(f"dim {chosen} is not a head of '{self.target}' (heads: {self._images.dims})")
        return np.asarray(self._images.embed(list(images), [chosen], batch_size)[chosen], dtype=np.float32)

    def _image_embedder(self) -> Any:
        """The image path of the run, or of the exported head with `image/` beside it."""
        from jasper.models.image_side import ImageEmbedder, read_tower
        from jasper.run_folder import IMAGE_DIR

        if self.student_dir is None:
            return ImageEmbedder.from_export(self.target)
        image_dir = self.student_dir.parent / IMAGE_DIR
        read_tower(image_dir)  # no image side: the error says so
        return ImageEmbedder.load(image_dir, self.student)


def encode_texts(
    target: str,
    texts: list[str],
    dim: int | None,
    batch_size: int = 64,
    truncate: bool = False,
    prompt_name: str | None = None,
) -> np.ndarray:
    """L2-normalised vectors (N, dim) of `texts` by the model at `target` (see `EmbeddingModel`)."""
    return EmbeddingModel(target).encode(texts, dim, batch_size, truncate, prompt_name)


def _check_truncation(target: str, own: int, dim: int, truncate: bool) -> None:
    """Refuse a dim the model was not trained to give, unless asked to truncate (then warn)."""
    if dim > own:
        raise JasperError(f"'{target}' gives {own}-d vectors: --dim {dim} is larger")
    meta_path = Path(target) / JASPER_EXPORT_META
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("head_mode") == "prefix" and meta.get("dim") == meta["heads"][0] and dim in meta["heads"]:
            return  # a prefix of FC1 is exactly that head's output
        raise JasperError(
            f"'{target}' is jasper's {own}-d head; --dim {dim} would truncate it, and jasper's heads are "
            f"independent, not prefixes: use the {dim}-d head's export (the run's heads: {meta['heads']})"
            if dim in meta["heads"]
            else f"'{target}' is jasper's {own}-d head and {dim} is no head of its run (heads: {meta['heads']})"
        )
    if not truncate:
        raise JasperError(
            f"'{target}' gives {own}-d vectors; --dim {dim} would cut them, which is only meaningful for a model "
            "trained for it (Matryoshka): pass --truncate to cut anyway"
        )
    logger.warning("cutting %s's %d-d vectors to %d dims: right only for Matryoshka-trained models", target, own, dim)


def image_files(folder: str | Path) -> list[Path]:
    """The image files under `folder` (recursively), sorted; an error when there are none."""
    from jasper.data.images import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise JasperError(f"--images '{folder}' is not a folder")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise JasperError(f"--images '{folder}' holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def encode_images(target: str | Path, images: list[Any], dim: int | None = None, batch_size: int = 32) -> np.ndarray:
    """Unit vectors (N, dim) of images (paths or PIL images) in the text space of `target`'s head `dim`
    (default FC1): compare them with the same model's text vectors."""
    return EmbeddingModel(target).encode_images(images, dim, batch_size)
