"""The teacher-vector store, read by row: one folder per teacher, checked against its manifest when opened.

Layout of `<store>/<teacher>/`: `manifest.json` (teacher, model, prompts, dim, rows, dtype, and the hash of the exact
texts the teacher read, prompts included),
`shard-NNNNN.npy` while computing (`store_writer`), `vectors.npy` (memory-mappable, L2-normalised rows) once
complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jasper.config import TeacherConfig
from jasper.data.corpus import texts_hash
from jasper.errors import JasperError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
UNIT_TOLERANCE = 0.01  # stored rows are unit vectors, rounded to float16
# fields that must match between a manifest and the config/corpus that opens it
IDENTITY_FIELDS = ("backend", "model", "prompt", "prompts", "texts_sha256", "rows", "dtype", "shard_size")
IDENTITY_DEFAULTS: dict[str, Any] = {"prompts": {}}  # what a manifest written before a field existed holds


class StoreError(JasperError):
    """A teacher store that does not match the corpus or config, or bad teacher output."""


def manifest_identity(config: TeacherConfig, texts: list[str], dtype: str, shard_size: int) -> dict[str, Any]:
    """What a teacher's store must have been computed with, for these texts (what the teacher read, prompts in
    place): the manifest's identity fields."""
    return {
        "format": FORMAT_VERSION,
        "teacher": config.name,
        "backend": config.backend,
        "model": config.model,
        "prompt": config.prompt,
        "prompts": dict(config.prompts),
        "texts_sha256": texts_hash(texts),
        "rows": len(texts),
        "dtype": dtype,
        "shard_size": shard_size,
    }


def read_manifest(teacher_dir: Path) -> dict[str, Any] | None:
    """The manifest of one teacher's folder, or None when there is none."""
    path = teacher_dir / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StoreError(
            f"teacher store manifest '{path}' is damaged ({error}): delete the folder '{teacher_dir}' to recompute"
        ) from None
    if not isinstance(manifest, dict):
        raise StoreError(f"teacher store manifest '{path}' is not a JSON object: delete '{teacher_dir}' to recompute")
    return manifest


def check_manifest(manifest: dict[str, Any], expected: dict[str, Any], teacher_dir: Path) -> None:
    """A StoreError naming the first identity field where the stored manifest differs from what is expected."""
    for key in IDENTITY_FIELDS:
        if key == "dtype" and key not in expected:
            continue
        stored = manifest.get(key, IDENTITY_DEFAULTS.get(key))
        if stored != expected[key]:
            what = "texts (another corpus, or other prompts)" if key == "texts_sha256" else key
            raise StoreError(
                f"teacher store '{teacher_dir}' was computed with a different {what}: "
                f"store has {stored!r}, config/corpus gives {expected[key]!r}. "
                "Delete that folder or point store.dir elsewhere."
            )


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


VERIFY_MAX_BYTES = 1 << 30  # stores up to this size are checked against their SHA-256 whenever opened


def _verify(teacher_dir: Path, manifest: dict[str, Any]) -> None:
    """The file is whole (its size) and, up to VERIFY_MAX_BYTES, unchanged since written (its SHA-256)."""
    final = teacher_dir / "vectors.npy"
    if not final.is_file():
        raise StoreError(f"teacher store '{teacher_dir}' has no vectors.npy: delete the folder to recompute")
    size = final.stat().st_size
    if "bytes" in manifest and size != manifest["bytes"]:
        raise StoreError(
            f"teacher store file '{final}' has {size} bytes, its manifest says {manifest['bytes']}: it is truncated "
            "or was changed. Delete the folder to recompute"
        )
    if "sha256" in manifest and size <= VERIFY_MAX_BYTES and file_sha256(final) != manifest["sha256"]:
        raise StoreError(
            f"teacher store file '{final}' does not match the checksum in its manifest: it was changed after it "
            "was written. Delete the folder to recompute"
        )


class TeacherStore:
    """Read-only view of several teachers' vectors, concatenated when a batch is read."""

    def __init__(
        self, store_dir: Path, teachers: list[TeacherConfig], texts: list[str], roles: list[str] | str = "text"
    ) -> None:
        from jasper.teachers.base import teacher_inputs

        self.store_dir = Path(store_dir)
        self.names = [t.name for t in teachers]
        self.arrays: list[np.ndarray] = []
        self.dims: list[int] = []
        for config in teachers:
            inputs = teacher_inputs(config, texts, roles)
            array, dim = self._open_one(config, inputs, texts_hash(inputs))
            self.arrays.append(array)
            self.dims.append(dim)
        self.rows = len(texts)

    def _open_one(self, config: TeacherConfig, texts: list[str], digest: str) -> tuple[np.ndarray, int]:
        teacher_dir = self.store_dir / config.name
        manifest = read_manifest(teacher_dir)
        if manifest is None or not manifest.get("complete"):
            state = "missing" if manifest is None else "incomplete"
            raise StoreError(
                f"teacher '{config.name}' vectors are {state} in '{teacher_dir}': run `jasper teach` first"
            )
        expected = {
            "backend": config.backend,
            "model": config.model,
            "prompt": config.prompt,
            "prompts": dict(config.prompts),
            "texts_sha256": digest,
            "rows": len(texts),
            "shard_size": manifest.get("shard_size"),
        }
        check_manifest(manifest, expected, teacher_dir)
        _verify(teacher_dir, manifest)
        try:
            array = np.load(teacher_dir / "vectors.npy", mmap_mode="r")
        except (ValueError, OSError) as error:
            raise StoreError(
                f"teacher store file '{teacher_dir / 'vectors.npy'}' cannot be read ({error}): it is truncated or "
                "damaged. Delete the folder to recompute"
            ) from None
        if array.shape != (manifest["rows"], manifest["dim"]):
            raise StoreError(
                f"teacher store '{teacher_dir}': vectors.npy has shape {array.shape}, "
                f"manifest says ({manifest['rows']}, {manifest['dim']})"
            )
        return array, int(manifest["dim"])

    @property
    def dim(self) -> int:
        """Width of the concatenated teacher vector."""
        return sum(self.dims)

    def vectors(self, rows: np.ndarray | list[int]) -> torch.Tensor:
        """Concatenated target vectors for `rows`: each teacher normalised, joined, normalised again. (B, dim)"""
        index = np.asarray(rows)
        parts = [self._read(name, index) for name in self.names]
        parts = [torch.nn.functional.normalize(p, dim=-1) for p in parts]
        return torch.nn.functional.normalize(torch.cat(parts, dim=-1), dim=-1)

    def teacher_vectors(self, name: str, rows: np.ndarray | list[int]) -> torch.Tensor:
        """One teacher's normalised vectors for `rows`. (B, dim_teacher)"""
        return torch.nn.functional.normalize(self._read(name, np.asarray(rows)), dim=-1)

    def _read(self, name: str, index: np.ndarray) -> torch.Tensor:
        """Stored rows, checked: finite and of unit norm (as written), else an error naming file and rows."""
        part = np.asarray(self.arrays[self.names.index(name)][index], dtype=np.float32)
        norms = np.linalg.norm(np.where(np.isfinite(part), part, 0.0), axis=1)
        bad = ~np.isfinite(part).all(axis=1) | (np.abs(norms - 1.0) > UNIT_TOLERANCE)
        if bad.any():
            raise StoreError(
                f"teacher '{name}' store '{self.store_dir / name / 'vectors.npy'}' holds {int(bad.sum())} damaged "
                f"row(s) (NaN/inf or not of unit norm) among rows {index[bad][:5].tolist()}: delete the folder "
                "to recompute"
            )
        return torch.from_numpy(part)
