"""Scores cached per (model fingerprint, task): re-running an evaluation computes only what is new."""

from __future__ import annotations

import json
from pathlib import Path

from jasper.eval.tasks import Task
from jasper.io import atomic_write_json

# {dim: {metric: value}}
TaskScores = dict[int, dict[str, float]]


class ScoreCache:
    """A JSON file `{model fingerprint: {task key: {dim: {metric: value}}}}`; path None = no file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        if path is not None and path.is_file():
            self.data = json.loads(path.read_text(encoding="utf-8"))

    @staticmethod
    def task_key(task: Task) -> str:
        """The task's name and size: a changed data file is a new entry."""
        return f"{task.name}#{len(task.texts)}"

    def get(self, fingerprint: str, task: Task) -> TaskScores | None:
        """Cached scores of this model on this task, or None."""
        found = self.data.get(fingerprint, {}).get(self.task_key(task))
        return {int(dim): values for dim, values in found.items()} if found is not None else None

    def put(self, fingerprint: str, task: Task, scores: TaskScores) -> None:
        """Store and write through (a killed evaluation keeps what it finished)."""
        self.data.setdefault(fingerprint, {})[self.task_key(task)] = {str(d): v for d, v in scores.items()}
        if self.path is not None:
            atomic_write_json(self.path, self.data)
