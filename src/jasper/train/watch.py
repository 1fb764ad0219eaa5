"""Quality while training: STS-B dev (and the dev split of the run's derived retrieval task) scored every
`eval_every` steps, and the weights with the best dev score kept when a stage asks for it (`keep_best`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from jasper.config import RunConfig
from jasper.eval.offline_tasks import derived_retrieval
from jasper.eval.sts import stsb_split
from jasper.eval.tasks import PairSimilarityTask, Task, metric_names
from jasper.models.student import Student

logger = logging.getLogger(__name__)
DEV_TASK = "sts-b-dev"


def watch_key(task: str, dim: int) -> str:
    """The name of a score in an evaluation record of train_log.jsonl: `<task>@<dim>`."""
    return f"{task}@{dim}"


def selection_score(scores: dict[str, float], dims: list[int], tasks: Sequence[str] = (DEV_TASK,)) -> float:
    """What `keep_best` compares: the mean of the dev `tasks` (`<task>` or `<task>:<metric>`) over `dims`, NaN (or a
    missing score) counting as the worst."""
    values = [scores.get(watch_key(task, dim), math.nan) for task in tasks for dim in dims]
    mean = float(np.mean(values)) if values else math.nan
    return mean if math.isfinite(mean) else -math.inf


class DevWatch:
    """The run's dev tasks, built once, scored on the student's current weights at every head."""

    def __init__(self, config: RunConfig, student: Student) -> None:
        self.student = student
        self.tasks: list[Task] = []
        pairs, origin = stsb_split("dev", config.eval.stsb_dir)
        if pairs is not None:
            self.tasks.append(PairSimilarityTask(DEV_TASK, pairs.left, pairs.right, pairs.scores))
        else:
            logger.warning("eval_every: STS-B dev is not scored during training (%s)", origin)
        retrieval = derived_retrieval(config.folder, split="dev")  # never the reported split
        if retrieval is not None:
            self.tasks.append(retrieval)
        # every (role, text) the tasks read, embedded once per evaluation
        self.keys = list(dict.fromkeys(k for task in self.tasks for k in zip(task.roles, task.texts, strict=True)))

    def missing(self, names: list[str]) -> list[str]:
        """The dev tasks among `names` (`<task>` or `<task>:<metric>`) that this watch does not score."""
        return [name for name in names if name.split(":")[0] not in {task.name for task in self.tasks}]

    def score(self) -> dict[str, float]:
        """{`<task>[:<metric>]@<dim>`: score x 100} for every task at every head (no dropout, no random draw)."""
        if not self.tasks:
            return {}
        dims = list(self.student.head_dims)
        vectors = {d: np.zeros((len(self.keys), d), dtype=np.float32) for d in dims}
        for role in dict.fromkeys(r for r, _ in self.keys):
            rows = [i for i, (r, _) in enumerate(self.keys) if r == role]
            found = self.student.encode([self.keys[i][1] for i in rows], list[int | None](dims), 128, role=role)
            for dim in dims:
                vectors[dim][rows] = found[dim]
        row = {key: i for i, key in enumerate(self.keys)}
        scores: dict[str, float] = {}
        for task in self.tasks:
            rows = [row[key] for key in zip(task.roles, task.texts, strict=True)]
            for dim in dims:
                for name, value in metric_names(task.name, task.score(vectors[dim][rows])):
                    scores[watch_key(name, dim)] = float(value)
        return scores
