"""MLflow: a local SQLite store beside the runs (`<output_dir>/mlflow.db`, artifacts in `<output_dir>/mlartifacts`)
unless `MLFLOW_TRACKING_URI` names another; through MLflow's own client."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jasper.tracking.base import flat, missing

PARAM_CHARS = 500  # MLflow refuses longer parameter values


class MlflowTracker:
    """An MLflow run (its id kept in the run folder): every session of a jasper run logs to it."""

    name = "mlflow"

    def __init__(self, store: Path, run_id: str | None, experiment: str, run_name: str) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise missing("mlflow") from None
        store = Path(store).resolve()
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store / 'mlflow.db'}"
        store.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            artifacts = (store / "mlartifacts").as_uri()
            experiment_id = self.client.create_experiment(experiment, artifact_location=artifacts)
        else:
            experiment_id = found.experiment_id
        if run_id is None:
            run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id

    def where(self) -> str:
        """The run id and the command that shows the store."""
        return f"run {self.run_id} (mlflow ui --backend-store-uri {self.uri})"

    def scalars(self, values: dict[str, float], step: int, axis: str, at: float | None = None) -> None:
        """One batch of metrics at `step`, named `<axis>/<name>` (MLflow's key characters only), stamped with the
        time the step was logged: a replay after a kill sends the same metrics, which MLflow's store keeps once."""
        from mlflow.entities import Metric

        now = int(at * 1000) if at is not None else _now_ms()
        metrics = [Metric(_key(f"{axis}/{k}"), float(v), now, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def summary(self, table: list[dict[str, Any]], markdown: str, config: dict[str, Any], files: list[Path]) -> None:
        """The config as parameters, every score as a metric, the table and the files as artifacts."""
        from mlflow.entities import Metric, Param

        logged = self.client.get_run(self.run_id).data.params  # a parameter, once logged, cannot change
        items = [(_key(k), v if isinstance(v, str) else json.dumps(v)) for k, v in flat(config).items()]
        fresh = [Param(k, v[:PARAM_CHARS]) for k, v in items if k not in logged]
        for start in range(0, len(fresh), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(self.run_id, params=fresh[start : start + 100])
        now = _now_ms()
        scores = [Metric(_key(f"eval/{r['model']}/{r['dim']}/{r['task']}"), float(r["score"]), now, 0) for r in table]
        for start in range(0, len(scores), 1000):
            self.client.log_batch(self.run_id, metrics=scores[start : start + 1000])
        self.client.log_text(self.run_id, markdown, "report_table.md")
        for file in files:
            self.client.log_artifact(self.run_id, str(file))

    def flush(self) -> None:
        """Nothing to do: every call to the store returns once the store has it."""

    def close(self, failed: bool) -> None:
        """Mark this session's end (a later command on the run sets it running again)."""
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


def _key(name: str) -> str:
    """MLflow keys take letters, digits, `_ - . / :` and spaces: anything else becomes `_`."""
    return "".join(c if c.isalnum() or c in "_-./: " else "_" for c in name)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
