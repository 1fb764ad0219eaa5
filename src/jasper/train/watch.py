"""Quality while training: STS-B dev (and the run's derived retrieval task) scored every `eval_every` steps, and
the weights with the best FC1 dev score kept when a stage asks for it (`keep_best`)."""

from __future__ import annotations

import logging
from typing import Any

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
        retrieval = derived_retrieval(config.folder)
        if retrieval is not None:
            self.tasks.append(retrieval)
        self.texts = list(dict.fromkeys(t for task in self.tasks for t in task.texts))

    @property
    def best_key(self) -> str | None:
        """The score `keep_best` follows: FC1's STS-B dev, when STS-B dev is there."""
        has_dev = any(task.name == DEV_TASK for task in self.tasks)
        return watch_key(DEV_TASK, self.student.head_dims[0]) if has_dev else None

    def score(self) -> dict[str, float]:
        """{`<task>[:<metric>]@<dim>`: score x 100} for every task at every head (no dropout, no random draw)."""
        if not self.tasks:
            return {}
        dims = list(self.student.head_dims)
        vectors: dict[Any, np.ndarray] = self.student.encode(self.texts, list[int | None](dims), batch_size=128)
        row = {text: i for i, text in enumerate(self.texts)}
        scores: dict[str, float] = {}
        for task in self.tasks:
            rows = [row[text] for text in task.texts]
            for dim in dims:
                for name, value in metric_names(task.name, task.score(vectors[dim][rows])):
                    scores[watch_key(name, dim)] = float(value)
        return scores
