"""Weights & Biases: offline (files in `runs/<name>/wandb/`) unless the user is logged in; their own environment
(`WANDB_MODE`, `WANDB_API_KEY`, ~/.netrc) decides, as W&B documents.

W&B's service keeps what it is sent in memory until a session ends, and loses it if the process is killed, so each
flush is a short session of the same run (resumed by its id): what is flushed is stored."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jasper.tracking.base import missing

AXES = ("train", "dev", "teach")  # each axis plots against its own step metric, so they never interleave


def _logged_in() -> bool:
    """Whether W&B has an API key here (environment or ~/.netrc), without a network call."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import wandb

    try:
        return bool(wandb.Api().api_key)
    except Exception:  # no key, no settings: not logged in
        return False


class WandbTracker:
    """A W&B run with a fixed id: every flush, and every command on the jasper run, resumes it."""

    name = "wandb"

    def __init__(self, folder: Path, run_id: str, project: str, run_name: str) -> None:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise missing("wandb") from None
        self.folder, self.run_id, self.project, self.run_name = Path(folder), run_id, project, run_name
        self.mode = os.environ.get("WANDB_MODE") or ("online" if _logged_in() else "offline")
        self.rows: list[dict[str, Any]] = []
        self.report: tuple[list[dict[str, Any]], dict[str, Any], list[Path]] | None = None
        self.url: str | None = None
        if self.mode == "online":
            self._session(lambda run: None)  # the run's URL, to say where to look

    def where(self) -> str:
        """The run's URL, or the offline folder and how to upload it."""
        if self.url is not None:
            return self.url
        wandb_dir = self.folder / "wandb"
        return f"offline run {self.run_id} in {wandb_dir} (`wandb sync --include-offline {wandb_dir}` uploads it)"

    def scalars(self, values: dict[str, float], step: int, axis: str) -> None:
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

        for row in self.rows:
            run.log(row)
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
        write(run)
        run.finish(exit_code=1 if failed else 0)

    def close(self, failed: bool) -> None:
        """Store what is held."""
        self.flush(failed)
