"""What `jasper serve` serves: a run's student (every head from one encoder pass), or exported heads (one model
per dim, through sentence-transformers or ONNX Runtime)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from jasper.encode import load_sentence_transformer, model_dim, resolve_student_dir, st_encode
from jasper.errors import JasperError
from jasper.run_folder import RunFolder, run_holding


class Embedder(Protocol):
    """What the server needs of a model: its name, head dims, token counting and embedding."""

    name: str
    dims: list[int]
    max_length: int
    backend: str  # what computes the vectors: torch, or the ONNX file

    def token_counts(self, texts: list[str]) -> list[int]:
        """Token count of each text before truncation (special tokens included)."""
        ...

    def embed(self, texts: list[str], dims: list[int]) -> dict[int, np.ndarray]:
        """L2-normalised float32 vectors of `texts` at each dim in `dims`. {dim: (N, dim)}"""
        ...

    def embed_each(self, texts: list[str], heads: list[int]) -> dict[int, np.ndarray]:
        """Text i at head `heads[i]`, as the server's batches mix requests: {dim: (N, dim)} for each head asked,
        whose rows of texts asked at another head are not to be read."""
        ...


def token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token count of each text before truncation (special tokens included)."""
    return [len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]


class StudentEmbedder:
    """A run's saved student: one encoder pass serves every head."""

    backend = "torch"

    def __init__(self, student: Any, name: str) -> None:
        self.student = student
        self.name = name
        self.dims = list(student.head_dims)
        self.max_length = int(student.max_length)

    def token_counts(self, texts: list[str]) -> list[int]:
        """Token count of each text before truncation."""
        return token_counts(self.student.tokenizer, texts)

    def embed(self, texts: list[str], dims: list[int]) -> dict[int, np.ndarray]:
        """Vectors at each dim, from one pass of the encoder."""
        out = self.student.encode(texts, list(dims), batch_size=64)
        return {d: out[d] for d in dims}

    def embed_each(self, texts: list[str], heads: list[int]) -> dict[int, np.ndarray]:
        """Every text at every head asked, from one encoder pass: the heads cost next to nothing."""
        return self.embed(texts, sorted(set(heads), reverse=True))


class FolderEmbedder:
    """Exported heads, one model per dim (sentence-transformers folders, or their ONNX copies)."""

    def __init__(
        self,
        encoders: dict[int, Callable[[list[str]], np.ndarray]],
        tokenizer: Any,
        max_length: int,
        name: str,
        backend: str = "torch",
    ) -> None:
        self.backend = backend
        self.encoders = dict(sorted(encoders.items(), key=lambda item: -item[0]))
        self.dims = list(self.encoders)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.name = name

    def token_counts(self, texts: list[str]) -> list[int]:
        """Token count of each text before truncation."""
        return token_counts(self.tokenizer, texts)

    def embed(self, texts: list[str], dims: list[int]) -> dict[int, np.ndarray]:
        """Vectors at each dim, each from its own model."""
        return {d: self.encoders[d](texts) for d in dims}

    def embed_each(self, texts: list[str], heads: list[int]) -> dict[int, np.ndarray]:
        """Each text through its own head's model only, not every head's; the rows of other heads' texts are 0."""
        out = {}
        for dim in sorted(set(heads), reverse=True):
            rows = [i for i, d in enumerate(heads) if d == dim]
            out[dim] = np.zeros((len(texts), dim), dtype=np.float32)
            out[dim][rows] = self.encoders[dim]([texts[i] for i in rows])
        return out


def _head_folders(folder: Path) -> list[Path]:
    """The exported head folders at `folder`: itself, its `dim-*/`, or a run's `export/dim-*/`."""
    if (folder / "modules.json").is_file():
        return [folder]
    for base in (folder, RunFolder(folder).export):
        heads = sorted(p.parent for p in base.glob("dim-*/modules.json"))
        if heads:
            return heads
    return []


BACKENDS = ("auto", "torch", "onnx", "onnx-o3", "onnx-int8")


def load_embedder(
    path: str | Path, name: str | None = None, backend: str = "auto", threads: int | None = None
) -> Embedder:
    """The model behind `jasper serve PATH`: a run folder (every head), a saved student, an export folder holding
    `dim-<D>/` folders, or one sentence-transformers folder.

    `backend`: `auto` serves the fastest files every exported head holds (int8, then O3, then fp32 ONNX) and
    torch where there are none (a run's student: one encoder pass for every head); `torch`, `onnx`, `onnx-o3` and
    `onnx-int8` ask for one. `threads` caps ONNX Runtime's threads.
    """
    from jasper.export.onnx import FP32_FILE, INT8_FILE, O3_FILE, fastest_file

    if backend not in BACKENDS:
        raise JasperError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    folder = Path(path)
    student_dir = resolve_student_dir(folder)
    heads = _head_folders(folder)
    onnx_file = {"onnx": FP32_FILE, "onnx-o3": O3_FILE, "onnx-int8": INT8_FILE}.get(backend)
    if backend == "auto" and heads:
        common = {fastest_file(h) for h in heads}
        onnx_file = common.pop() if len(common) == 1 else None
    if onnx_file is None and student_dir is not None:
        from jasper.models.student import load_student

        run = run_holding(student_dir) or RunFolder(student_dir)
        return StudentEmbedder(load_student(student_dir), name or _run_name(run))
    if not heads:
        raise JasperError(
            f"'{path}' is neither a jasper run (no student/student.json), an export folder (no dim-*/), nor a "
            "sentence-transformers folder (no modules.json)"
        )
    owner = run_holding(heads[0].parent) or RunFolder(heads[0].parent)
    served = name or (heads[0].name if heads == [folder] else _run_name(owner))
    if onnx_file is not None:
        from jasper.export.onnx import OnnxEmbedder

        onnx = [OnnxEmbedder(h, onnx_file, threads) for h in heads]
        by_dim: dict[int, Callable[[list[str]], np.ndarray]] = {m.dims[0]: m.encode for m in onnx}
        return FolderEmbedder(by_dim, onnx[0].tokenizer, onnx[0].max_length, served, f"onnx ({onnx_file})")
    models = [load_sentence_transformer(str(h)) for h in heads]
    encoders: dict[int, Callable[[list[str]], np.ndarray]] = {
        model_dim(m): functools.partial(st_encode, m) for m in models
    }
    return FolderEmbedder(encoders, models[0].tokenizer, int(models[0].max_seq_length or 512), served)


def _run_name(run: RunFolder) -> str:
    """The run's configured name, else its folder's name."""
    if run.config.is_file():
        import yaml

        with contextlib.suppress(yaml.YAMLError, AttributeError):
            return str(yaml.safe_load(run.config.read_text(encoding="utf-8")).get("name") or run.root.name)
    return run.root.resolve().name
