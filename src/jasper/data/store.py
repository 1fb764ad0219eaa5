"""The teacher-vector store: one folder per teacher, written in resumable shards, read by row.

Layout of `<store>/<teacher>/`: `manifest.json` (teacher, model, prompt, dim, rows, dtype, texts hash),
`shard-NNNNN.npy` while computing, `vectors.npy` (memory-mappable, L2-normalised rows) once complete.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from jasper.config import TeacherConfig
from jasper.data.corpus import texts_hash
from jasper.io import atomic_save_npy, atomic_write, atomic_write_json
from jasper.runtime import kill_point

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# fields that must match between a manifest and the config/corpus that opens it
IDENTITY_FIELDS = ("backend", "model", "prompt", "texts_sha256", "rows", "dtype", "shard_size")


class StoreError(ValueError):
    """A teacher store that does not match the corpus or config, or bad teacher output."""


def _identity(config: TeacherConfig, texts: list[str], dtype: str, shard_size: int) -> dict[str, Any]:
    return {
        "format": FORMAT_VERSION,
        "teacher": config.name,
        "backend": config.backend,
        "model": config.model,
        "prompt": config.prompt,
        "texts_sha256": texts_hash(texts),
        "rows": len(texts),
        "dtype": dtype,
        "shard_size": shard_size,
    }


def read_manifest(teacher_dir: Path) -> dict[str, Any] | None:
    """The manifest of one teacher's folder, or None when there is none."""
    import json

    path = teacher_dir / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _mismatch(manifest: dict[str, Any], expected: dict[str, Any], teacher_dir: Path) -> None:
    for key in IDENTITY_FIELDS:
        if key == "dtype" and key not in expected:
            continue
        if manifest.get(key) != expected[key]:
            what = "texts (another corpus)" if key == "texts_sha256" else key
            raise StoreError(
                f"teacher store '{teacher_dir}' was computed with a different {what}: "
                f"store has {manifest.get(key)!r}, config/corpus gives {expected[key]!r}. "
                "Delete that folder or point store.dir elsewhere."
            )


def check_vectors(vectors: np.ndarray, offset: int, texts: list[str], teacher: str) -> None:
    """Refuse NaN/inf or zero rows, naming the rows and their texts."""
    finite = np.isfinite(vectors).all(axis=1)
    norms = np.linalg.norm(np.where(np.isfinite(vectors), vectors, 0.0), axis=1)
    bad = np.flatnonzero(~finite | (norms == 0))
    if bad.size:
        shown = "; ".join(f"row {offset + i} {texts[i][:60]!r}" for i in bad[:5])
        kind = "NaN/inf" if not finite[bad[0]] else "zero"
        raise StoreError(f"teacher '{teacher}' gave {bad.size} unusable vector(s) (first is {kind}): {shown}")


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def compute_teacher(
    store_dir: Path,
    config: TeacherConfig,
    texts: list[str],
    dtype: str = "float16",
    shard_size: int = 1024,
    device: str = "cpu",
) -> Path:
    """Encode `texts` with one teacher into `store_dir/<name>/`, resuming from finished shards."""
    teacher_dir = Path(store_dir) / config.name
    expected = _identity(config, texts, dtype, shard_size)
    manifest = read_manifest(teacher_dir)
    if manifest is not None:
        _mismatch(manifest, expected, teacher_dir)
        if manifest.get("complete"):
            logger.info("teacher '%s': store complete, nothing to compute", config.name)
            return teacher_dir
    else:
        manifest = {**expected, "dim": None, "complete": False}
        atomic_write_json(teacher_dir / "manifest.json", manifest)

    n_shards = (len(texts) + shard_size - 1) // shard_size
    todo = [k for k in range(n_shards) if not (teacher_dir / f"shard-{k:05d}.npy").is_file()]
    if todo and len(todo) < n_shards:
        logger.info("teacher '%s': resuming, %d of %d shards done", config.name, n_shards - len(todo), n_shards)
    teacher = None
    with tqdm(total=len(texts), desc=f"teacher {config.name}", unit="text") as bar:
        bar.update(sum(min(shard_size, len(texts) - k * shard_size) for k in range(n_shards) if k not in todo))
        for done, k in enumerate(todo, start=1):
            if teacher is None:
                from jasper.teachers import build_teacher

                teacher = build_teacher(config, device)
            batch = texts[k * shard_size : (k + 1) * shard_size]
            vectors = np.asarray(teacher.encode(batch), dtype=np.float32)
            manifest = _check_dim(manifest, vectors, len(batch), config.name, teacher_dir)
            check_vectors(vectors, k * shard_size, batch, config.name)
            atomic_save_npy(teacher_dir / f"shard-{k:05d}.npy", _normalise(vectors).astype(dtype))
            bar.update(len(batch))
            kill_point("JASPER_KILL_AFTER_SHARDS", done)
    _consolidate(teacher_dir, manifest, n_shards)
    return teacher_dir


def _check_dim(manifest: dict[str, Any], vectors: np.ndarray, n: int, name: str, teacher_dir: Path) -> dict[str, Any]:
    if vectors.ndim != 2 or vectors.shape[0] != n:
        raise StoreError(f"teacher '{name}' returned shape {vectors.shape} for {n} texts")
    dim = int(vectors.shape[1])
    if manifest.get("dim") is None:
        manifest = {**manifest, "dim": dim}
        atomic_write_json(teacher_dir / "manifest.json", manifest)
    elif manifest["dim"] != dim:
        raise StoreError(
            f"teacher '{name}' now returns {dim}-dim vectors, the store '{teacher_dir}' holds "
            f"{manifest['dim']}-dim ones: its output dim changed. Delete that folder to recompute."
        )
    return manifest


def _consolidate(teacher_dir: Path, manifest: dict[str, Any], n_shards: int) -> None:
    shards = [teacher_dir / f"shard-{k:05d}.npy" for k in range(n_shards)]
    final = teacher_dir / "vectors.npy"

    def write(tmp: Path) -> None:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=manifest["dtype"], shape=(manifest["rows"], manifest["dim"])
        )
        row = 0
        for shard in shards:
            part = np.load(shard)
            out[row : row + len(part)] = part
            row += len(part)
        if row != manifest["rows"]:
            raise StoreError(f"teacher store '{teacher_dir}': shards hold {row} rows, expected {manifest['rows']}")
        out.flush()
        del out

    atomic_write(final, write)
    atomic_write_json(teacher_dir / "manifest.json", {**manifest, "complete": True})
    for shard in shards:
        shard.unlink()


class TeacherStore:
    """Read-only view of several teachers' vectors, concatenated when a batch is read."""

    def __init__(self, store_dir: Path, teachers: list[TeacherConfig], texts: list[str]) -> None:
        self.store_dir = Path(store_dir)
        self.names = [t.name for t in teachers]
        self.arrays: list[np.ndarray] = []
        self.dims: list[int] = []
        digest = texts_hash(texts)
        for config in teachers:
            array, dim = self._open_one(config, texts, digest)
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
            "texts_sha256": digest,
            "rows": len(texts),
            "shard_size": manifest.get("shard_size"),
        }
        _mismatch(manifest, expected, teacher_dir)
        array = np.load(teacher_dir / "vectors.npy", mmap_mode="r")
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
        parts = [torch.from_numpy(np.asarray(a[index], dtype=np.float32)) for a in self.arrays]
        parts = [torch.nn.functional.normalize(p, dim=-1) for p in parts]
        return torch.nn.functional.normalize(torch.cat(parts, dim=-1), dim=-1)

    def teacher_vectors(self, name: str, rows: np.ndarray | list[int]) -> torch.Tensor:
        """One teacher's normalised vectors for `rows`. (B, dim_teacher)"""
        array = self.arrays[self.names.index(name)]
        part = torch.from_numpy(np.asarray(array[np.asarray(rows)], dtype=np.float32))
        return torch.nn.functional.normalize(part, dim=-1)
