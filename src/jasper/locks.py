"""One writer at a time: an OS file lock on a run folder (or a teacher's store folder), released when the holder
dies, so a second `jasper train` or `jasper teach` on the same folder stops with the holder's PID and host."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from jasper.errors import JasperError

LOCK_NAME = ".jasper.lock"


class FolderLocked(JasperError):
    """Another process holds the folder's lock."""


def _holder(handle: IO[str]) -> str:
    handle.seek(0)
    try:
        info = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"PID {info.get('pid')} on {info.get('host')} (`{info.get('command')}`, since {since})"


@contextlib.contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold `folder`'s lock for the block; FolderLocked (naming the holder) if another process has it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    if int(os.environ.get("RANK", "0")) != 0:  # under a launcher, rank 0 holds the lock for the job
        yield
        return
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
    except PermissionError:
        raise JasperError(f"cannot write to {what} '{folder}': permission denied (read-only?)") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderLocked(
                f"{what} '{folder}' is in use by {_holder(handle)}: wait for it to finish or stop it "
                "(the lock goes with the process)"
            ) from None
        handle.seek(0)
        handle.truncate()
        command = " ".join(["jasper", *sys.argv[1:3]])
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": time.time()}
        handle.write(json.dumps(holder))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock; the file stays (its content names the last holder)
