"""Checks of the paths a user hands a command, made before any work: each mistake is one line, and nothing a user
owns is moved or removed (a folder is replaced only when it is jasper's own output, and only when asked)."""

from __future__ import annotations

import os
from pathlib import Path

from jasper.errors import JasperError
from jasper.run_folder import IMAGE_DIR

EXPORT_META = "jasper_head.json"  # beside each exported head's modules: which head of which heads it is
# what marks a run folder: its resolved config and any of what a run writes
RUN_MARKS = ("checkpoints", "student", "train_log.jsonl", "teachers", "export", "report.json")


class PathMistake(JasperError):
    """A path argument that cannot be used as given."""


def _in_use(path: Path) -> bool:
    """The current folder or one above it: a folder that cannot be replaced while commands run inside it."""
    here = Path.cwd().resolve()
    return path.name in (".", "..") or path.resolve() in (here, *here.parents)


def check_parents(path: Path, what: str) -> None:
    """`path` can be created: no part of the way to it is a file, and the nearest existing folder is writable."""
    for parent in Path(os.path.abspath(path)).parents:
        if parent.exists():
            if not parent.is_dir():
                raise PathMistake(f"{what} '{path}': '{parent}' is a file, so nothing can be created under it")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise PathMistake(f"{what} '{path}': the folder '{parent}' is not writable; choose another place")
            return


def check_output_file(path: Path, what: str = "--out") -> None:
    """A file a command will write (whole, atomically): not a folder, not `.` or `..`, creatable where it is."""
    path = Path(path)
    if path.name in ("", ".", "..") or path.is_dir() or str(path).endswith(os.sep):
        raise PathMistake(f"{what} '{path}' is a folder: give a file name (e.g. {Path(path, 'vectors.npy')})")
    if path.exists() and not path.is_file():
        raise PathMistake(f"{what} '{path}' is not a regular file (a pipe, socket or device): give a file name")
    check_parents(path, what)


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` holds a jasper run: its config.yaml and something a run writes."""
    return (folder / "config.yaml").is_file() and any((folder / mark).exists() for mark in RUN_MARKS)


def enclosing_run(path: Path) -> Path | None:
    """The run folder `path` is, or lies inside, else None."""
    resolved = Path(path).resolve()
    return next((p for p in (resolved, *resolved.parents) if is_run_folder(p)), None)


def is_export(folder: Path) -> bool:
    """A jasper export: one exported head (its `jasper_head.json`), or a folder of `dim-<D>/` heads (and the image
    side beside them), nothing else (hidden entries are staging and lock files)."""
    if (folder / EXPORT_META).is_file():
        return True
    entries = [entry for entry in folder.iterdir() if not entry.name.startswith(".")]
    heads = [entry for entry in entries if entry.name.startswith("dim-") and (entry / EXPORT_META).is_file()]
    return bool(heads) and all(entry in heads or entry.name == IMAGE_DIR for entry in entries)


def check_export_target(out: Path, force: bool = False) -> None:
    """`--out` of `jasper export`: a new or empty folder, or (with `force`) an earlier jasper export to replace;
    never the current folder, a file, a folder of the user's or anything inside a run."""
    out = Path(out)
    if _in_use(out):
        raise PathMistake(f"--out '{out}' is the current folder or one above it: give the name of a new folder")
    if out.exists() and not out.is_dir():
        raise PathMistake(f"--out '{out}' is a file, not a folder: give the name of a new folder")
    check_parents(out, "--out")
    run = enclosing_run(out)
    if run is not None:
        raise PathMistake(
            f"--out '{out}' is inside the run folder '{run}' (its student, checkpoints and exports live there): "
            f"give a folder outside it, or leave --out out to write {Path(run, 'export')}"
        )
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not is_export(out):
        raise PathMistake(
            f"--out '{out}' holds files that are not a jasper export, and exporting would replace them: "
            "give an empty or new folder"
        )
    if not force:
        raise PathMistake(f"--out '{out}' holds an earlier jasper export: pass --force to replace it")
