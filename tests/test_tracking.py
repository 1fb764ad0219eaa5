"""Experiment tracking, read back through each tool's own reader, offline: TensorBoard's event files, MLflow's client
on its local store, W&B's offline run files. A killed and resumed run shows every step exactly once in each."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from jasper import cli
from test_cli import _jasper

from conftest import tiny_config_dict

STEPS = 12  # three stages of four steps


def _config(tmp_path: Path, tiny_bert: Path, corpus: Path, tools: list[str]) -> Path:
    data = tiny_config_dict(tiny_bert, corpus, tmp_path / "runs", log={"report_to": tools, "project": "tests"})
    for stage in data["stages"]:
        stage["checkpoint_every"] = 2
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _tensorboard(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _mlflow(store: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def _wandb_rows(folder: Path) -> list[dict[str, str]]:
    """Every history row of every offline session of the run, from W&B's record files (LevelDB log format)."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for path in sorted(folder.glob("wandb/offline-run-*/*.wandb")):
        data, pos, pending = path.read_bytes(), 7, b""
        while pos + 7 <= len(data):
            left = 32768 - pos % 32768
            if left < 7:
                pos += left
                continue
            _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
            if kind == 0:
                pos += left
                continue
            chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
            pending = chunk if kind in (1, 2) else pending + chunk
            if kind in (1, 4):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(pending)
                if record.WhichOneof("record_type") == "history":
                    rows.append(
                        {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
                    )
    return rows


@pytest.mark.e2e
def test_a_killed_and_resumed_run_reaches_every_tool_once(tiny_bert, corpus_file, tmp_path):
    import json

    path = _config(tmp_path, tiny_bert, corpus_file, ["tensorboard", "mlflow", "wandb"])
    run = tmp_path / "runs" / "tiny"
    started = _jasper("teach", str(path))
    assert started.returncode == 0, started.stderr
    said = " ".join(started.stderr.split())
    assert f"tensorboard: tensorboard --logdir {run / 'tb'}" in said and "mlflow: run " in said and "wandb:" in said
    assert _jasper("train", str(path), env={"JASPER_KILL_AFTER_STEPS": "7"}).returncode == -9
    finished = _jasper("run", str(path))
    assert finished.returncode == 0, finished.stderr
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [record["loss"] for record in log]
    state = json.loads((run / "tracking.json").read_text())

    scalars = _tensorboard(run / "tb")
    assert [step for step, _ in scalars["train/loss"]] == list(range(1, STEPS + 1))  # each step once
    assert [value for _, value in scalars["train/loss"]] == pytest.approx(losses, rel=1e-6)
    assert {"train/lr", "train/samples_per_s", "train/stage", "train/cosine@12"} <= set(scalars)
    assert "teach/ta/texts_per_s" in scalars and "teach/tb/texts_per_s" in scalars

    history = _mlflow(tmp_path / "runs", state["mlflow_run_id"], "train/loss")
    assert [step for step, _ in history] == list(range(1, STEPS + 1))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    mlflow_run = client.get_run(state["mlflow_run_id"])
    assert mlflow_run.data.params["student.heads"] == "[12, 6, 3]" and mlflow_run.info.status == "FINISHED"
    assert any(key.startswith("eval/student/12/") for key in mlflow_run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(state["mlflow_run_id"])}
    assert {"report.md", "report.json", "report_table.md"} <= artifacts

    rows = _wandb_rows(run)
    steps = [int(float(r["train/step"])) for r in rows if "train/step" in r]
    assert steps == list(range(1, STEPS + 1))
    sessions = list(run.glob("wandb/offline-run-*"))
    assert len(sessions) >= 3 and all(state["wandb_id"] in s.name for s in sessions)  # one run, resumed


def test_a_configured_tool_that_is_missing_is_one_line(tiny_bert, corpus_file, tmp_path, monkeypatch):
    path = _config(tmp_path, tiny_bert, corpus_file, ["wandb"])
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    result = CliRunner().invoke(cli.app, ["teach", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "log.report_to names wandb, which is not installed: pip install 'jasper-distill[wandb]'" in result.output
    assert not (tmp_path / "runs" / "tiny" / "teachers").exists()  # refused before any work


def _each_step_once(run: Path, store: Path) -> None:
    import json

    state = json.loads((run / "tracking.json").read_text())
    assert [step for step, _ in _tensorboard(run / "tb")["train/loss"]] == list(range(1, STEPS + 1))
    assert [step for step, _ in _mlflow(store, state["mlflow_run_id"], "train/loss")] == list(range(1, STEPS + 1))
    steps = [int(float(r["train/step"])) for r in _wandb_rows(run) if "train/step" in r]
    assert steps == list(range(1, STEPS + 1))


@pytest.mark.e2e
def test_kills_inside_a_sync_leave_each_step_once_in_every_tool(tiny_bert, corpus_file, tmp_path):
    path = _config(tmp_path, tiny_bert, corpus_file, ["tensorboard", "mlflow", "wandb"])
    run = tmp_path / "runs" / "tiny"
    assert _jasper("teach", str(path)).returncode == 0
    # every tool has stored the first checkpoint's steps, jasper has not yet noted them sent: they are sent again
    assert _jasper("train", str(path), env={"JASPER_KILL_IN_SYNC": "3"}).returncode == -9
    # then a kill inside a W&B session, after its first row
    assert _jasper("train", str(path), env={"JASPER_KILL_IN_WANDB": "1"}).returncode == -9
    finished = _jasper("run", str(path))
    assert finished.returncode == 0, finished.stderr
    _each_step_once(run, tmp_path / "runs")


def test_wandb_decides_online_or_offline_without_asking(tmp_path, monkeypatch):
    import wandb

    from jasper.tracking import wandb as tracker

    def never(*args, **kwargs):
        raise AssertionError("W&B's API was asked (it can prompt for a key and call the network)")

    monkeypatch.setattr(wandb, "Api", never)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert not tracker._logged_in()  # no key, no netrc: offline
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    assert tracker._logged_in()
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    assert not tracker._logged_in()  # the key is for another host
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert tracker._logged_in()
