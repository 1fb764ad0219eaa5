"""Computing a teacher's vectors into the store: resumable shards, written atomically, joined into
`vectors.npy` once every shard is there (split over ranks when launched by accelerate / torchrun)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from jasper.config import TeacherConfig
from jasper.data.store import StoreError, check_manifest, file_sha256, manifest_identity, read_manifest
from jasper.distributed import Ranks, barrier
from jasper.io import atomic_save_npy, atomic_write, atomic_write_json
from jasper.locks import folder_lock
from jasper.progress import progress_bar
from jasper.runtime import kill_point
from jasper.teachers.base import Teacher

logger = logging.getLogger(__name__)


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
    on_progress: Progress | None = None,
) -> Path:
    """Encode `texts` with one teacher into `store_dir/<name>/`, resuming from finished shards.

    Under several processes each rank computes shards k with k % world == rank; rank 0 joins them once
    every rank is done. `teacher` skips building the backend (benchmarks build it ahead). `on_progress(teacher,
    texts done, texts/s)` hears how it goes every REPORT_EVERY_S seconds.
    """
    ranks = ranks or Ranks()
    teacher_dir = Path(store_dir) / config.name
    with folder_lock(teacher_dir, f"teacher store '{config.name}'"):  # one writer: nothing is paid for twice
        return _compute(teacher_dir, config, texts, dtype, shard_size, device, ranks, teacher, on_progress)


def _compute(
    teacher_dir: Path,
    config: TeacherConfig,
    texts: list[str],
    dtype: str,
    shard_size: int,
    device: str,
    ranks: Ranks,
    teacher: Teacher | None,
    on_progress: Progress | None,
) -> Path:
    expected = manifest_identity(config, texts, dtype, shard_size)
    manifest = read_manifest(teacher_dir)
    if manifest is not None:
        check_manifest(manifest, expected, teacher_dir)  # every rank checks, so a mismatch stops all of them
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
    began, first = time.monotonic(), done
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
                on_rows = _reporting(bar.update, config.name, done, on_progress)
                vectors = np.asarray(teacher.encode(texts[start:stop], on_rows=on_rows), dtype=np.float32)
                done += stop - start
                if vectors.ndim != 2 or vectors.shape[0] != stop - start:
                    raise StoreError(f"teacher '{config.name}' returned shape {vectors.shape} for {stop - start} texts")
                manifest = _check_dim(manifest, vectors, config.name, teacher_dir, ranks.is_main)
                check_vectors(vectors, start, texts[start:stop], config.name)
                for k in group:
                    part = vectors[k * shard_size - start : (k + 1) * shard_size - start]
                    writer.submit(k, _normalise(part))  # the device goes on with the next group meanwhile
        if on_progress is not None and done > first:  # the teacher's rate over this session
            on_progress(config.name, done, (done - first) / max(time.monotonic() - began, 1e-9))
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
REPORT_EVERY_S = 10.0
Progress = Callable[[str, int, float], object]  # (teacher, texts done, texts/s)


def _reporting(update: Callable[[int], object], name: str, done: int, report: Progress | None) -> Callable[[int], None]:
    """The progress bar's `update`, also telling `report` the rate every REPORT_EVERY_S seconds."""
    since, last = done, time.monotonic()

    def on_rows(count: int) -> None:
        nonlocal done, since, last
        update(count)
        done += count
        now = time.monotonic()
        if report is not None and now - last >= REPORT_EVERY_S:
            report(name, done, (done - since) / (now - last))
            since, last = done, now

    return on_rows


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
    checksum = {"bytes": final.stat().st_size, "sha256": file_sha256(final)}
    atomic_write_json(teacher_dir / "manifest.json", {**manifest, **checksum, "complete": True})
    _remove_shards(teacher_dir)


def _remove_shards(teacher_dir: Path) -> None:
    """Shards are only a step towards vectors.npy (and what a kill during consolidation leaves behind)."""
    for shard in teacher_dir.glob("shard-*.npy"):
        shard.unlink()
