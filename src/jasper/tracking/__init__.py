"""Training watched in the tools people already use: TensorBoard, Weights & Biases and MLflow (`log.report_to`).

The run's `train_log.jsonl` stays the record; the trackers get a copy of it as far as the last checkpoint each
time one is written (every `checkpoint_every` steps and at every stage end), so a killed and resumed run sends
each step exactly once. `<run>/tracking.json` keeps the tracked run's ids (a resumed run continues the same W&B and
MLflow run, and writes to the same TensorBoard folder), how far the log has been sent, and what the tools wrote since
(removed and sent again after a kill, so that a replay writes nothing twice). Only rank 0 tracks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from jasper.config import RunConfig
from jasper.errors import JasperError
from jasper.io import atomic_write_json
from jasper.run_folder import RunFolder
from jasper.runtime import kill_point
from jasper.tracking.base import Tracker
from jasper.train.log import EVAL_KIND, TrainLog

logger = logging.getLogger("jasper")
STEP_FIELDS = ("stage_index", "stage", "step", "seconds", "kind", "texts", "tokens", "time")


class Tracking:
    """The configured trackers of one run, fed from its log."""

    def __init__(self, config: RunConfig, trackers: list[Tracker], state: dict[str, Any]) -> None:
        self.config, self.trackers, self.state = config, trackers, state
        self.failed = False

    @classmethod
    def open(cls, config: RunConfig) -> Tracking | None:
        """The trackers `log.report_to` names (None when it names none, or on a rank other than 0); a missing
        tool is a one-line error naming its extra, before any work."""
        if not config.log.report_to or int(os.environ.get("RANK", "0")) != 0:
            return None
        run = config.folder
        state = _read_state(run.tracking_state)
        state.setdefault("wandb_id", uuid.uuid4().hex[:12])
        _drop_unsent(state)
        atomic_write_json(run.tracking_state, state)

        def note(written: Path) -> None:  # a tool's file or session written: unsent until the next mark
            state["unsent"] = [*state.get("unsent", []), str(written)]
            atomic_write_json(run.tracking_state, state)

        trackers: list[Tracker] = []
        for tool in config.log.report_to:
            if tool == "tensorboard":
                from jasper.tracking.tensorboard import TensorBoardTracker

                trackers.append(TensorBoardTracker(run.tensorboard, note))
            elif tool == "wandb":
                from jasper.tracking.wandb import WandbTracker

                trackers.append(WandbTracker(run.root, state["wandb_id"], config.log.project, config.name, note))
            else:
                from jasper.tracking.mlflow import MlflowTracker

                mlflow = MlflowTracker(run.root.parent, state.get("mlflow_run_id"), config.log.project, config.name)
                state["mlflow_run_id"] = mlflow.run_id
                trackers.append(mlflow)
        tracking = cls(config, trackers, state)
        tracking._save()
        for tracker in trackers:
            logger.info("tracking: %s: %s", tracker.name, tracker.where())
        return tracking

    def _save(self) -> None:
        atomic_write_json(self.config.folder.tracking_state, self.state)

    def sync(self, through: tuple[int, int]) -> None:
        """Send the log's records up to (stage index, step) `through` that no tracker has had yet."""
        records = TrainLog(self.config.folder.train_log).read()
        sent = tuple(self.state.get("sent_through") or (-1, -1))
        offsets = _stage_offsets(records)
        for record in records:
            position = (record["stage_index"], record["step"])
            if not sent < position <= through:
                continue
            step = offsets.get(record["stage_index"], 0) + record["step"]
            values = {k: float(v) for k, v in record.items() if k not in STEP_FIELDS and isinstance(v, (int, float))}
            at = record.get("time")  # when the step was logged: a replay sends the same (MLflow keeps one copy)
            if record.get("kind") == EVAL_KIND:
                self._scalars(values, step, "dev", at)
                continue
            stage = self.config.stages[record["stage_index"]]
            if record.get("seconds"):
                values["samples_per_s"] = float(record.get("texts") or stage.batch_size) / float(record["seconds"])
                if record.get("tokens"):
                    values["tokens_per_s"] = float(record["tokens"]) / float(record["seconds"])
            self._scalars(values | {"stage": float(record["stage_index"])}, step, "train", at)
        for count, tracker in enumerate(self.trackers, start=1):
            tracker.flush()  # stored before it is marked sent: a replay after a kill writes each step once
            kill_point("JASPER_KILL_IN_SYNC", count)  # for the tests: a kill between a tool's store and the mark
        self._mark_sent({"sent_through": list(through)})

    def teach_progress(self, teacher: str, done: int, texts_per_s: float) -> None:
        """A teacher's encoding rate after `done` texts."""
        self._scalars({f"{teacher}/texts_per_s": texts_per_s}, done, "teach")

    def summary(self, rows: list[dict[str, Any]], markdown: str, files: list[Path]) -> None:
        """The final evaluation, the resolved config and the report's files."""
        config = self.config.model_dump()
        for tracker in self.trackers:
            tracker.summary(rows, markdown, config, [f for f in files if f.is_file()])

    def _scalars(self, values: dict[str, float], step: int, axis: str, at: float | None = None) -> None:
        for tracker in self.trackers:
            tracker.scalars(values, step, axis, at)

    def close(self) -> None:
        """End each tracker's session (the tracked run can be resumed by the next command)."""
        for tracker in self.trackers:
            tracker.close(self.failed)
        self._mark_sent({})  # what a close sends (teaching rates, the report) is never sent again

    def _mark_sent(self, update: dict[str, Any]) -> None:
        """Save how far the log was sent, and that every tool's files so far hold only sent rows, in one write."""
        self.state.update(update)
        self.state["unsent"] = []
        self._save()


def _drop_unsent(state: dict[str, Any]) -> None:
    """Remove what the tools wrote after the last mark (a kill came before it): those rows are sent again, and each
    step reaches each tool once. Files and sessions the tools keep apart per flush make this possible (TensorBoard's
    event files, W&B's offline sessions); MLflow's store keeps one copy of a metric sent twice at the same time."""
    for written in state.pop("unsent", []):
        path = Path(written)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
    state["unsent"] = []


def _read_state(path: Path) -> dict[str, Any]:
    """The tracked runs' ids and how far the log was sent, or {} for a new run; a damaged file is one line."""
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError):
        state = None
    if not isinstance(state, dict):
        raise JasperError(
            f"'{path}' is damaged: delete it to track this run from here on as new runs of W&B / MLflow (the "
            "run's own train_log.jsonl keeps every step)"
        )
    return state


def _stage_offsets(records: list[dict[str, Any]]) -> dict[int, int]:
    """The global step at which each stage starts: the steps of every earlier stage (complete in the log)."""
    last: dict[int, int] = {}
    for record in records:
        last[record["stage_index"]] = max(last.get(record["stage_index"], 0), record["step"])
    offsets, total = {}, 0
    for index in sorted(last):
        offsets[index] = total
        total += last[index]
    return offsets


def tracked_files(run: RunFolder) -> list[Path]:
    """What a run's summary uploads: the reports and the plots."""
    return [run.report_md, run.report_json, *sorted(run.plots.glob("*.png"))]
