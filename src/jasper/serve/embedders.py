"""What `jasper serve` serves: a run's student (every head from one encoder pass), or exported heads (one model
per dim, through sentence-transformers or ONNX Runtime)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from jasper.encode import load_sentence_transformer, model_dim, resolve_student_dir, st_encode, token_counts
from jasper.errors import JasperError
from jasper.prompts import folder_prompts, role_prompt
from jasper.run_folder import RunFolder, run_holding


class Embedder(Protocol):
    """What the server needs of a model: its name, head dims, token counting and embedding."""

    name: str
    dims: list[int]
    max_length: int
    backend: str  # what computes the vectors: torch, or the ONNX file

    def token_counts(self, texts: list[str], roles: list[str]) -> list[int]:
        """Token count of each text as the model reads it (its role's prompt and special tokens included), before
        truncation."""
        ...

    def embed_each(self, texts: list[str], heads: list[int], roles: list[str]) -> dict[int, np.ndarray]:
        """Text i at head `heads[i]`, read in `roles[i]`, as the server's batches mix requests: {dim: (N, dim)} for
        each head asked, whose rows of texts asked at another head are not to be read."""
        ...


def _by_role(roles: list[str], rows: list[int]) -> dict[str, list[int]]:
    """`rows` grouped by their role."""
    groups: dict[str, list[int]] = {}
    for row in rows:
        groups.setdefault(roles[row], []).append(row)
    return groups


class StudentEmbedder:
    """A run's saved student: one encoder pass serves every head."""

    backend = "torch"

    def __init__(self, student: Any, name: str) -> None:
        self.student = student
        self.name = name
        self.dims = list(student.head_dims)
        self.max_length = int(student.max_seq_length)

    def token_counts(self, texts: list[str], roles: list[str]) -> list[int]:
        """Token count of each text as the student reads it, before truncation."""
        return token_counts(self.student.tokenizer, self.student.inputs(texts, roles))

    def embed_each(self, texts: list[str], heads: list[int], roles: list[str]) -> dict[int, np.ndarray]:
        """Every text at every head asked, one encoder pass per role: the heads cost next to nothing."""
        dims = sorted(set(heads), reverse=True)
        out = {d: np.zeros((len(texts), d), dtype=np.float32) for d in dims}
        for role, rows in _by_role(roles, list(range(len(texts)))).items():
            found = self.student.encode([texts[i] for i in rows], list(dims), batch_size=64, role=role)
            for dim in dims:
                out[dim][rows] = found[dim]
        return out


class FolderEmbedder:
    """Exported heads, one model per dim (sentence-transformers folders, or their ONNX copies)."""

    def __init__(
        self,
        encoders: dict[int, Callable[[list[str], str], np.ndarray]],
        tokenizer: Any,
        max_length: int,
        name: str,
        backend: str = "torch",
        prompts: tuple[dict[str, str], str | None] = ({}, None),
    ) -> None:
        self.backend = backend
        self.encoders = dict(sorted(encoders.items(), key=lambda item: -item[0]))
        self.dims = list(self.encoders)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.name = name
        self.prompts = prompts  # the folders' (prompts, default prompt name), for counting tokens as they are read

    def token_counts(self, texts: list[str], roles: list[str]) -> list[int]:
        """Token count of each text as the folders read it (prompt included), before truncation."""
        prompted = [role_prompt(*self.prompts, role) + text for text, role in zip(texts, roles, strict=True)]
        return token_counts(self.tokenizer, prompted)

    def embed_each(self, texts: list[str], heads: list[int], roles: list[str]) -> dict[int, np.ndarray]:
        """Each text through its own head's model only, not every head's; the rows of other heads' texts are 0."""
        out = {}
        for dim in sorted(set(heads), reverse=True):
            out[dim] = np.zeros((len(texts), dim), dtype=np.float32)
            for role, rows in _by_role(roles, [i for i, d in enumerate(heads) if d == dim]).items():
                out[dim][rows] = self.encoders[dim]([texts[i] for i in rows], role)
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
    from jasper.export.onnx import FP32_FILE, O3_FILE, fastest_file, int8_file

    if backend not in BACKENDS:
        raise JasperError(f"--backend {backend}: choose one of {', '.join(BACKENDS)}")
    folder = Path(path)
    student_dir = resolve_student_dir(folder)
    heads = _head_folders(folder)
    onnx_file = {"onnx": FP32_FILE, "onnx-o3": O3_FILE}.get(backend)
    if backend == "onnx-int8":
        onnx_file = int8_file(heads[0]) if heads else None
        if onnx_file is None:
            raise JasperError(
                f"'{path}' holds no int8 ONNX file: run `jasper export RUN --format onnx --quantize int8`"
            )
    if backend == "auto" and heads:
        common = {fastest_file(h) for h in heads}
        onnx_file = common.pop() if len(common) == 1 else None
    if onnx_file is None and student_dir is not None:
        from jasper.models.student import load_student

        run = run_holding(student_dir) or RunFolder(student_dir)
        return StudentEmbedder(load_student(student_dir, inference=True), name or _run_name(run))
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
        by_dim: dict[int, Callable[[list[str], str], np.ndarray]] = {
            m.dims[0]: functools.partial(_onnx_encode, m) for m in onnx
        }
        first = onnx[0]
        return FolderEmbedder(by_dim, first.tokenizer, first.max_length, served, f"onnx ({onnx_file})",
                              folder_prompts(heads[0]))  # fmt: skip
    models = [load_sentence_transformer(str(h)) for h in heads]
    encoders: dict[int, Callable[[list[str], str], np.ndarray]] = {
        model_dim(m): functools.partial(_st_encode, m) for m in models
    }
    return FolderEmbedder(encoders, models[0].tokenizer, int(models[0].max_seq_length or 512), served, "torch",
                          folder_prompts(heads[0]))  # fmt: skip


def _st_encode(model: Any, texts: list[str], role: str) -> np.ndarray:
    return st_encode(model, texts, role=role)


def _onnx_encode(model: Any, texts: list[str], role: str) -> np.ndarray:
    return np.asarray(model.encode(texts, role=role))


def _run_name(run: RunFolder) -> str:
    """The run's configured name, else its folder's name."""
    if run.config.is_file():
        import yaml

        with contextlib.suppress(yaml.YAMLError, AttributeError):
            return str(yaml.safe_load(run.config.read_text(encoding="utf-8")).get("name") or run.root.name)
    return run.root.resolve().name
