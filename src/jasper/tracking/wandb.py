"""Weights & Biases: offline (files in `runs/<name>/wandb/`) unless the user is logged in (`WANDB_API_KEY`, or a key
for W&B's host in ~/.netrc) or asks for it (`WANDB_MODE`, as W&B documents). Deciding that asks nothing and calls no
network: no login prompt ever stops a run.

W&B's service keeps what it is sent in memory until a session ends, and loses it if the process is killed, so each
flush is a short session of the same run (resumed by its id): what is flushed is stored. Each step reaches W&B once,
also when a kill lands inside a session or before jasper marked its steps sent: the offline sessions not yet marked
sent (`unsent` in the run's tracking.json, saved together with how far the log was sent) are removed before their
rows are sent again, and a resumed online run skips the steps W&B already has (its summary's last `<axis>/step`)."""

from __future__ import annotations

import netrc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jasper.runtime import kill_point
from jasper.tracking.base import missing

AXES = ("train", "dev", "teach")  # each axis plots against its own step metric, so they never interleave
DEFAULT_HOST = "https://api.wandb.ai"


def _logged_in() -> bool:
    """Whether W&B has an API key here (environment or ~/.netrc), read without W&B itself: no prompt, no network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or DEFAULT_HOST).hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbTracker:
    """A W&B run with a fixed id: every flush, and every command on the jasper run, resumes it."""

    name = "wandb"

    def __init__(
        self, folder: Path, run_id: str, project: str, run_name: str, note: Callable[[Path], object] | None = None
    ) -> None:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise missing("wandb") from None
        self.folder, self.run_id, self.project, self.run_name = Path(folder), run_id, project, run_name
        self.mode = os.environ.get("WANDB_MODE") or ("online" if _logged_in() else "offline")
        self.rows: list[dict[str, Any]] = []
        self.report: tuple[list[dict[str, Any]], dict[str, Any], list[Path]] | None = None
        self.url: str | None = None
        self.note = note or (lambda written: None)  # an offline session written: unsent until jasper marks it
        if self.mode == "online":
            self._session(lambda run: None)  # the run's URL, to say where to look

    def where(self) -> str:
        """The run's URL, or the offline folder and how to upload it."""
        if self.url is not None:
            return self.url
        wandb_dir = self.folder / "wandb"
        return f"offline run {self.run_id} in {wandb_dir} (`wandb sync --include-offline {wandb_dir}` uploads it)"

    def scalars(self, values: dict[str, float], step: int, axis: str, at: float | None = None) -> None:
        """One history row, sent at the next flush: the values under `<axis>/`, against `<axis>/step`."""
        self.rows.append({f"{axis}/{k}": v for k, v in values.items()} | {f"{axis}/step": step})

    def summary(self, table: list[dict[str, Any]], markdown: str, config: dict[str, Any], files: list[Path]) -> None:
        """The config, the table (a W&B Table and summary values) and the files (an artifact), at the next flush."""
        self.report = (table, config, files)

    def flush(self, failed: bool = False) -> None:
        """One session of the run: every row and the report held, stored when it ends."""
        if not self.rows and self.report is None:
            return
        self._session(self._write, failed)
        self.rows, self.report = [], None

    def _write(self, run: Any) -> None:
        import wandb

        # a resumed online run already holds the steps its summary ends on: those are not sent twice
        last = {axis: run.summary.get(f"{axis}/step") for axis in AXES} if self.mode == "online" else {}
        for count, row in enumerate(self.rows, start=1):
            axis = next(iter(row)).split("/", 1)[0]
            if last.get(axis) is not None and row[f"{axis}/step"] <= last[axis]:
                continue
            run.log(row)
            kill_point("JASPER_KILL_IN_WANDB", count)  # for the tests: a kill inside a session
        if self.report is not None:
            table, config, files = self.report
            run.config.update(config, allow_val_change=True)
            columns: list[str | int] = ["model", "dim", "task", "score"]
            data: list[list[Any]] = [[r[str(c)] for c in columns] for r in table]
            run.log({"eval/table": wandb.Table(columns=columns, data=data)})
            run.summary.update({f"eval/{r['model']}/{r['dim']}/{r['task']}": r["score"] for r in table})
            artifact = wandb.Artifact(f"report-{run.id}", type="report")
            for file in files:
                artifact.add_file(str(file))
            run.log_artifact(artifact)

    def _session(self, write: Any, failed: bool = False) -> None:
        import wandb

        self.folder.mkdir(parents=True, exist_ok=True)
        mode: Any = self.mode
        run = wandb.init(project=self.project, name=self.run_name, id=self.run_id, resume="allow", dir=str(self.folder),
                         mode=mode, settings=wandb.Settings(silent=True, console="off"))  # fmt: skip
        for axis in AXES:
            run.define_metric(f"{axis}/step")
            run.define_metric(f"{axis}/*", step_metric=f"{axis}/step")
        if self.mode == "online":
            self.url = str(run.url)
        elif self.rows or self.report is not None:
            self.note(Path(run.dir).parent)  # the session's folder: removed, and its rows sent again, after a kill
        write(run)
        run.finish(exit_code=1 if failed else 0)

    def close(self, failed: bool) -> None:
        """Store what is held."""
        self.flush(failed)
