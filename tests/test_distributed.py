"""Two processes (torchrun, gloo, CPU) with the global batch fixed follow the one-process loss curve, and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import helpers
from conftest import tiny_config_dict

TESTS = Path(__file__).parent
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="gloo on loopback")


def _run(args: list[str], processes: int, env: dict | None = None) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "jasper"]
    if processes > 1:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            "jasper",
        ]
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(launcher + args, capture_output=True, text=True, env=full_env, timeout=600)


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


def test_two_processes_match_one_and_resume(corpus_file, tmp_path):
    model = helpers.make_tiny_bert(tmp_path / "model", dropout=0.0)  # no dropout: ranks draw no different masks
    store = tmp_path / "store"
    curves = {}
    for name, processes, kill in (("one", 1, None), ("two", 2, None), ("two-killed", 2, "6")):
        config = tiny_config_dict(
            model, corpus_file, tmp_path / "runs", name=name, store={"dir": str(store), "shard_size": 32}
        )
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        assert _run(["teach", str(path)], 1).returncode == 0
        if kill:
            killed = _run(["train", str(path)], processes, {"JASPER_KILL_AFTER_STEPS": kill})
            assert killed.returncode != 0
            assert not (tmp_path / "runs" / name / "student").exists()
        result = _run(["train", str(path)], processes)
        assert result.returncode == 0, result.stderr[-3000:]
        assert (tmp_path / "runs" / name / "student" / "student.json").is_file()
        curves[name] = _losses(tmp_path / "runs" / name)
    assert len(curves["one"]) == len(curves["two"]) == len(curves["two-killed"]) == 12
    np.testing.assert_allclose(curves["two"], curves["one"], rtol=1e-4)
    np.testing.assert_allclose(curves["two-killed"], curves["two"], rtol=1e-4)
