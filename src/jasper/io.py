"""Atomic writes of files and folders: a killed process never leaves a half-written one under the final name."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from jasper.errors import JasperError, write_cause


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def write_failure(path: Path, error: BaseException) -> JasperError | None:
    """A one-line error for a write that failed for lack of space, a quota or a file-size limit, naming `path` and
    what to do; None for any other failure (and for an error already meant for the user)."""
    cause = write_cause(error)
    if cause is None:
        return None
    code, said, _ = cause
    what = {
        errno.EFBIG: "the file is over this system's size limit (`ulimit -f`)",
        None: "the disk is full, or a file-size limit (`ulimit -f`) was reached",
    }.get(code, "the disk is full")
    return JasperError(
        f"cannot write '{path}' ({said}): {what}. Free some space (or lift the limit) and rerun the same command: it "
        "resumes from what was saved"
    )


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp_path)` then rename the temporary file onto `path` (a full disk: one clear error)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files 600; a plain open() would honour the umask
        os.replace(tmp, path)
    except Exception as error:
        failure = write_failure(path, error)
        if failure is not None:
            raise failure from error
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to `path` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """np.save to `path` atomically (through a file handle: np.save would append .npy to a temp name)."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.save(handle, array, allow_pickle=False)

    atomic_write(path, write)


def staging_path(target: Path) -> Path:
    """Where a folder is written before it is swapped in: hidden beside `target` (no `dim-*` glob sees it)."""
    target = Path(target)
    return target.with_name(f".{target.name}.tmp")


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where that is unavailable."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_cwd, exchange = -100, 2
    return int(renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), exchange)) == 0


def replace_folder(new: Path, target: Path) -> None:
    """Put the folder `new` in place of `target`: a kill at any moment leaves the old folder or the new one, whole.

    Where the file system can swap two folders atomically (Linux), it does; elsewhere the old folder is moved
    aside first and a leftover is restored by the next `folder_swap` on the same target.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new)  # it now holds the old folder
        return
    aside = target.with_name(f".{target.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(target, aside)
    os.replace(new, target)
    shutil.rmtree(aside)


@contextlib.contextmanager
def folder_swap(target: Path) -> Iterator[Path]:
    """Write a folder in a staging place beside `target` and swap it in whole when the block ends without error
    (the staging folder is removed on an error)."""
    target = Path(target)
    aside = target.with_name(f".{target.name}.old")
    if aside.is_dir() and not target.exists():  # a kill in replace_folder's fallback, between its two renames
        os.replace(aside, target)
    staging = staging_path(target)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        failure = write_failure(target, error) if isinstance(error, Exception) else None
        if failure is not None:
            raise failure from error
        raise
    replace_folder(staging, target)
