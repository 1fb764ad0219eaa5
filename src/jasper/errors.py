"""The errors jasper raises for its users: a bad file, path, config value or environment, each said in one line.

`jasper` (the CLI) prints a `JasperError` as one red line and exits with code 2; any other exception is a bug and
keeps its traceback. `JASPER_DEBUG=1` shows the traceback of a `JasperError` too.
"""

from __future__ import annotations

import errno
import os


class JasperError(Exception):
    """An error meant for the user: what is wrong, with which file, path or key, and what to do."""


_RESUME = "rerun the same command (it resumes from what was saved)"
# OS errors a user can fix (full disk, no permission, a bad path), and what to do about each
_OS_ADVICE = {
    errno.ENOSPC: f"free some space and {_RESUME}",
    errno.EDQUOT: f"free some space and {_RESUME}",
    errno.EFBIG: f"the file is over this system's size limit (`ulimit -f`, or the file system's): lift it, {_RESUME}",
    errno.EACCES: "choose a folder you can write to (output_dir=...) or fix its permissions",
    errno.EPERM: "choose a folder you can write to (output_dir=...) or fix its permissions",
    errno.EROFS: "choose a writable folder (output_dir=...)",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    errno.EISDIR: "a folder was given where a file is needed: check the path",
    errno.ENAMETOOLONG: "use a shorter path",
}


def describe_os_error(error: OSError) -> str | None:
    """One line for an OS error the user can fix, naming the file and what to do; None for any other OS error."""
    advice = _OS_ADVICE.get(error.errno or 0)
    if advice is None:
        return None
    where = f" '{error.filename}'" if error.filename else ""
    return f"{error.strerror or 'cannot use'}{where}: {advice}"


# how libraries word a write that failed for lack of space or a file-size limit, when they raise their own types
# (torch, safetensors, protobuf, numpy): the errno's text, and Rust's "(os error N)"
_WRITE_FAILED: dict[int | None, tuple[str, ...]] = {
    errno.ENOSPC: ("No space left on device", "os error 28", "StorageFull"),
    errno.EDQUOT: ("Disk quota exceeded", "os error 122"),
    errno.EFBIG: ("File too large", "os error 27"),
    None: ("file write failed",),  # torch's words, whichever of the three it was
}
_ANY_LIMIT = f"free some space, or lift a file-size limit (`ulimit -f`), and {_RESUME}"


def write_cause(error: BaseException) -> tuple[int | None, str, str | None] | None:
    """(errno, or None where the library did not say which; what was said; the file if known) when `error`, or an
    error it came from, is a write that failed for lack of space, a quota or a file-size limit; None otherwise (and
    for an error already meant for the user)."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, JasperError):
        number = seen.errno if isinstance(seen, OSError) else None
        for code, words in _WRITE_FAILED.items():
            if number == code or any(w in str(seen) for w in words):
                # the system's words for the cause, not each library's wrapping of them
                said = os.strerror(code) if code is not None else str(seen).strip().splitlines()[0][:160]
                filename = seen.filename if isinstance(seen, OSError) and seen.filename else None
                return code, said, str(filename) if filename is not None else None
        seen = seen.__cause__ or seen.__context__
    return None


def describe_failure(error: BaseException) -> str | None:
    """One line for a failure the user can fix (an OS error of `_OS_ADVICE`, or a write that failed for lack of
    space or a size limit, whatever library raised it); None for a bug."""
    if isinstance(error, OSError):
        described = describe_os_error(error)
        if described is not None:
            return described
    cause = write_cause(error)
    if cause is None:
        return None
    code, said, filename = cause
    where = f" '{filename}'" if filename else ""
    return f"a write{where} failed ({said}): {_OS_ADVICE[code] if code is not None else _ANY_LIMIT}"
