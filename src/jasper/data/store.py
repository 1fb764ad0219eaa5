"""The teacher-vector store: one folder per teacher, written in resumable shards, read by row.

Layout of `<store>/<teacher>/`: `manifest.json` (teacher, model, prompt, dim, rows, dtype, texts hash),
`shard-NNNNN.npy` while computing, `vectors.npy` (memory-mappable, L2-normalised rows) once complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jasper.config import TeacherConfig
from jasper.data.corpus import texts_hash
from jasper.distributed import Ranks, barrier
from jasper.io import atomic_save_npy, atomic_write, atomic_write_json
from jasper.locks import folder_lock
from jasper.progress import progress_bar
from jasper.runtime import kill_point
from jasper.teachers.base import Teacher

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
UNIT_TOLERANCE = 0.01  # stored rows are unit vectors, rounded to float16
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


def _norms(vectors: np.ndarray) -> np.ndarray:
    """Row norms in float64, scaled first, so that huge finite entries (1e20) neither overflow nor vanish."""
    wide = np.where(np.isfinite(vectors), vectors, 0.0).astype(np.float64)
    scale = np.abs(wide).max(axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    return np.linalg.norm(wide / scale, axis=1) * scale[:, 0]


def check_vectors(vectors: np.ndarray, offset: int, texts: list[str], teacher: str) -> None:
    """Refuse NaN/inf rows and rows whose norm is not finite and positive, naming the rows and their texts."""
    finite = np.isfinite(vectors).all(axis=1)
    norms = _norms(vectors)
    bad = np.flatnonzero(~finite | ~np.isfinite(norms) | (norms <= 0))
    if bad.size:
        shown = "; ".join(f"row {offset + i} {texts[i][:60]!r}" for i in bad[:5])
        kind = "NaN/inf" if not finite[bad[0]] else "zero"
        raise StoreError(f"teacher '{teacher}' gave {bad.size} unusable vector(s) (first is {kind}): {shown}")


def _normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit rows, computed in float64 (then float32); rows were checked finite with a positive norm."""
    return (vectors.astype(np.float64) / _norms(vectors)[:, None]).astype(np.float32)


def compute_teacher(
    store_dir: Path,
    config: TeacherConfig,
    texts: list[str],
    dtype: str = "float16",
    shard_size: int = 1024,
    device: str = "cpu",
    ranks: Ranks | None = None,
    teacher: Teacher | None = None,
) -> Path:
    """Encode `texts` with one teacher into `store_dir/<name>/`, resuming from finished shards.

    Under several processes each rank computes shards k with k % world == rank; rank 0 joins them once
    every rank is done. `teacher` skips building the backend (benchmarks build it ahead).
    """
    ranks = ranks or Ranks()
    teacher_dir = Path(store_dir) / config.name
    with folder_lock(teacher_dir, f"teacher store '{config.name}'"):  # one writer: nothing is paid for twice
        return _compute(teacher_dir, config, texts, dtype, shard_size, device, ranks, teacher)


def _compute(
    teacher_dir: Path,
    config: TeacherConfig,
    texts: list[str],
    dtype: str,
    shard_size: int,
    device: str,
    ranks: Ranks,
    teacher: Teacher | None,
) -> Path:
    expected = _identity(config, texts, dtype, shard_size)
    manifest = read_manifest(teacher_dir)
    if manifest is not None:
        _mismatch(manifest, expected, teacher_dir)  # every rank checks, so a mismatch stops all of them
        if manifest.get("complete"):
            logger.info("teacher '%s': store complete, nothing to compute", config.name)
            if ranks.is_main:
                _remove_shards(teacher_dir)  # left by a kill between the manifest and the clean-up
            return teacher_dir
    elif ranks.is_main:
        manifest = {**expected, "dim": None, "complete": False}
        atomic_write_json(teacher_dir / "manifest.json", manifest)
    barrier(ranks)
    manifest = read_manifest(teacher_dir) or {}

    n_shards = (len(texts) + shard_size - 1) // shard_size
    mine = [k for k in range(n_shards) if k % ranks.world == ranks.rank]
    todo = [k for k in mine if not _shard_path(teacher_dir, k).is_file()]
    if todo and len(todo) < len(mine):
        logger.info("teacher '%s': resuming, %d of %d shards done", config.name, len(mine) - len(todo), len(mine))
    rows = {k: min(shard_size, len(texts) - k * shard_size) for k in mine}
    # a local model overlaps encoding with writing; a paid backend writes each shard before the next request,
    # so that a kill never loses rows already paid for
    local = config.backend == "sentence-transformers"
    done = sum(rows[k] for k in mine if k not in todo)
    try:
        with (
            progress_bar(sum(rows.values()), f"teacher {config.name}", "text", done, not ranks.is_main) as bar,
            ShardWriter(teacher_dir, dtype, background=local) as writer,
        ):
            for group in _groups(todo, max(1, GROUP_TEXTS // shard_size) if local else 1):
                if teacher is None:
                    from jasper.teachers import build_teacher

                    teacher = build_teacher(config, device)
                start, stop = group[0] * shard_size, min(len(texts), (group[-1] + 1) * shard_size)
                # encoding several shards at once lets the teacher sort a larger pool into length buckets
                vectors = np.asarray(teacher.encode(texts[start:stop], on_rows=bar.update), dtype=np.float32)
                if vectors.ndim != 2 or vectors.shape[0] != stop - start:
                    raise StoreError(f"teacher '{config.name}' returned shape {vectors.shape} for {stop - start} texts")
                manifest = _check_dim(manifest, vectors, config.name, teacher_dir, ranks.is_main)
                check_vectors(vectors, start, texts[start:stop], config.name)
                for k in group:
                    part = vectors[k * shard_size - start : (k + 1) * shard_size - start]
                    writer.submit(k, _normalise(part))  # the device goes on with the next group meanwhile
        cut = getattr(teacher, "cut_rows", None)
        if cut:
            limit = getattr(teacher, "max_length", None)
            logger.info("teacher '%s': %s of the texts encoded reached its max_length %s: cut", config.name, cut, limit)
    except KeyboardInterrupt:
        stored = sum(_shard_path(teacher_dir, k).is_file() for k in mine)
        logger.warning(
            "teacher '%s' interrupted: %d of %d shards stored in %s; `jasper teach` computes only the other %d",
            *(config.name, stored, len(mine), teacher_dir, len(mine) - stored),
        )
        raise
    barrier(ranks)
    if ranks.is_main:
        _consolidate(teacher_dir, manifest, n_shards)
    barrier(ranks)
    return teacher_dir


GROUP_TEXTS = 16384  # texts handed to a local model at once (whole shards)


def _groups(shards: list[int], per_group: int) -> list[list[int]]:
    """Runs of consecutive shard numbers handed to the teacher in one call, at most `per_group` shards (a
    larger pool sorts into tighter length buckets)."""
    groups: list[list[int]] = []
    for k in shards:
        if groups and k == groups[-1][-1] + 1 and len(groups[-1]) < per_group:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def _shard_path(teacher_dir: Path, k: int) -> Path:
    return teacher_dir / f"shard-{k:05d}.npy"


class ShardWriter:
    """Writes shards atomically, in order, on a background thread or at once; the kill point counts them."""

    def __init__(self, teacher_dir: Path, dtype: str, background: bool = True) -> None:
        self.teacher_dir, self.dtype, self.background = teacher_dir, dtype, background
        self.pool = ThreadPoolExecutor(1)
        self.pending: list[Future[None]] = []
        self.written = 0

    def submit(self, k: int, vectors: np.ndarray) -> None:
        """Queue shard `k` (raising any earlier write's error here, in the caller)."""
        if not self.background:
            self._write(k, vectors.astype(self.dtype))
            return
        for future in [f for f in self.pending if f.done()]:
            future.result()
            self.pending.remove(future)
        self.pending.append(self.pool.submit(self._write, k, vectors.astype(self.dtype)))

    def _write(self, k: int, vectors: np.ndarray) -> None:
        atomic_save_npy(_shard_path(self.teacher_dir, k), vectors)
        self.written += 1
        kill_point("JASPER_KILL_AFTER_SHARDS", self.written)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True)  # shards already computed are kept even when an error ends the run
        for future in self.pending:
            if exc[0] is None:
                future.result()


def _check_dim(
    manifest: dict[str, Any], vectors: np.ndarray, name: str, teacher_dir: Path, write: bool
) -> dict[str, Any]:
    dim = int(vectors.shape[1])
    if manifest.get("dim") is None:
        manifest = {**manifest, "dim": dim}
        if write:
            atomic_write_json(teacher_dir / "manifest.json", manifest)
    elif manifest["dim"] != dim:
        raise _dim_changed(name, dim, manifest["dim"], teacher_dir)
    return manifest


def _dim_changed(name: str, dim: int, stored: int, teacher_dir: Path) -> StoreError:
    return StoreError(
        f"teacher '{name}' now returns {dim}-dim vectors, the store '{teacher_dir}' holds "
        f"{stored}-dim ones: its output dim changed. Delete that folder to recompute."
    )


def _consolidate(teacher_dir: Path, manifest: dict[str, Any], n_shards: int) -> None:
    shards = [_shard_path(teacher_dir, k) for k in range(n_shards)]
    missing = [s.name for s in shards if not s.is_file()]
    if missing:
        raise StoreError(f"teacher store '{teacher_dir}': shards {missing[:5]} are missing; run `jasper teach` again")
    dims = {int(np.load(s, mmap_mode="r").shape[1]) for s in shards}
    if len(dims) > 1 or (manifest.get("dim") is not None and manifest["dim"] not in dims):
        raise _dim_changed(manifest["teacher"], max(dims), manifest.get("dim") or min(dims), teacher_dir)
    manifest = {**manifest, "dim": dims.pop()}
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
    checksum = {"bytes": final.stat().st_size, "sha256": _sha256(final)}
    atomic_write_json(teacher_dir / "manifest.json", {**manifest, **checksum, "complete": True})
    _remove_shards(teacher_dir)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove_shards(teacher_dir: Path) -> None:
    """Shards are only a step towards vectors.npy (and what a kill during consolidation leaves behind)."""
    for shard in teacher_dir.glob("shard-*.npy"):
        shard.unlink()


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
    if "sha256" in manifest and size <= VERIFY_MAX_BYTES and _sha256(final) != manifest["sha256"]:
        raise StoreError(
            f"teacher store file '{final}' does not match the checksum in its manifest: it was changed after it "
            "was written. Delete the folder to recompute"
        )


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
