"""The errors jasper raises for its users: a bad file, path, config value or environment, each said in one line.

`jasper` (the CLI) prints a `JasperError` as one red line and exits with code 2; any other exception is a bug and
keeps its traceback. `JASPER_DEBUG=1` shows the traceback of a `JasperError` too.
"""

from __future__ import annotations

import errno


class JasperError(Exception):
    """An error meant for the user: what is wrong, with which file, path or key, and what to do."""


# OS errors a user can fix (full disk, no permission, a bad path), and what to do about each
_OS_ADVICE = {
    errno.ENOSPC: "free some space and rerun the same command (it resumes from what was saved)",
    errno.EDQUOT: "free some space and rerun the same command (it resumes from what was saved)",
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
