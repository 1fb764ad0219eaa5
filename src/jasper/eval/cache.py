"""Scores cached per (model fingerprint, task): re-running an evaluation computes only what is new.

A run keeps its student's scores in `<run>/eval_cache.json`; models that are the same in every run (teachers,
initialisations, extra models) go to one cache shared by all runs, `$JASPER_CACHE_DIR/scores.json`
(default `~/.cache/jasper`), so a new run does not evaluate its teachers again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from jasper.eval.tasks import Task
from jasper.io import atomic_write_json

# {dim: {metric: value}}
TaskScores = dict[int, dict[str, float]]


def shared_cache_path() -> Path:
    """`$JASPER_CACHE_DIR/scores.json`, else `$XDG_CACHE_HOME/jasper/scores.json`, else under ~/.cache."""
    folder = os.environ.get("JASPER_CACHE_DIR")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = str(Path(base) / "jasper")
    return Path(folder) / "scores.json"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside `path` (runs evaluating at once each add their scores, none is lost)."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: last writer wins
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ScoreCache:
    """A JSON file `{model fingerprint: {task key: {dim: {metric: value}}}}`; path None = no file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, dict[str, dict[str, dict[str, float]]]] = self._read()

    def _read(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8")))
        except json.JSONDecodeError:
            return {}  # a cache that cannot be read is recomputed, never trusted

    @staticmethod
    def task_key(task: Task) -> str:
        """The task's name and a hash of its texts: changed data is a new entry."""
        digest = hashlib.sha256("\n".join(task.texts).encode("utf-8")).hexdigest()[:12]
        return f"{task.name}#{len(task.texts)}#{digest}"

    def get(self, fingerprint: str, task: Task) -> TaskScores | None:
        """Cached scores of this model on this task, or None."""
        found = self.data.get(fingerprint, {}).get(self.task_key(task))
        return {int(dim): values for dim, values in found.items()} if found is not None else None

    def put(self, fingerprint: str, task: Task, scores: TaskScores) -> None:
        """Store and write through (a killed evaluation keeps what it finished), merging other writers' entries."""
        entry = {str(d): v for d, v in scores.items()}
        if self.path is None:
            self.data.setdefault(fingerprint, {})[self.task_key(task)] = entry
            return
        with _locked(self.path):
            self.data = self._read()
            self.data.setdefault(fingerprint, {})[self.task_key(task)] = entry
            atomic_write_json(self.path, self.data)
