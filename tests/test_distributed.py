"""Two processes (torchrun, gloo, CPU) with the global batch fixed follow the one-process loss curve, and resume."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import helpers
from conftest import tiny_config_dict

TESTS = Path(__file__).parent
ZERO2 = str(TESTS.parent / "configs" / "accelerate" / "zero2.yaml")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="gloo on loopback")


def _run(
    args: list[str], processes: int, env: dict | None = None, accelerate_config: str | None = None
) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "jasper"]
    if accelerate_config:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", accelerate_config]
        launcher += ["--num_processes", str(processes), "-m", "jasper"]
    elif processes > 1:
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


PROBE = "a probe of the teacher's dimension"  # what teach asks a new teacher first, to check FC1's size


def _encoded(log: Path) -> Counter:
    lines = (line for part in log.glob("*.txt") for line in part.read_text(encoding="utf-8").splitlines())
    return Counter(line for line in lines if line != PROBE)


@pytest.mark.e2e
def test_two_processes_teach_the_same_store_and_resume(corpus_file, tmp_path):
    model = helpers.make_tiny_bert(tmp_path / "model")
    texts = corpus_file.read_text(encoding="utf-8").splitlines()
    teacher = {"name": "tc", "backend": "callable", "model": "helpers:teacher_logged", "batch_size": 8}
    vectors = {}
    for name, processes in (("one", 1), ("two", 2)):
        config = tiny_config_dict(
            model, corpus_file, tmp_path / "runs", name=name, teachers=[teacher], store={"shard_size": 16}
        )
        config["student"]["heads"] = [8, 4]  # FC1 is the one teacher's 8 dims
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        folder = tmp_path / "runs" / name / "teachers" / "tc"
        if processes > 1:  # each rank is killed after writing its first shard, then the job is run again
            first = tmp_path / f"log-{name}-killed"
            first.mkdir()
            killed = _run(["teach", str(path)], 2, {"JASPER_KILL_AFTER_SHARDS": "1", "TEACH_LOG": str(first)})
            assert killed.returncode != 0
            done = sorted(p.name for p in folder.glob("shard-*.npy"))
            assert done and not (folder / "vectors.npy").exists()
        log = tmp_path / f"log-{name}"
        log.mkdir()
        result = _run(["teach", str(path)], processes, {"TEACH_LOG": str(log)})
        assert result.returncode == 0, result.stderr[-3000:]
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["complete"] and manifest["dim"] == 8
        assert not list(folder.glob("shard-*.npy"))
        vectors[name] = np.load(folder / "vectors.npy")
        if processes > 1:
            stored_before = Counter(t for p in done for t in texts[int(p[6:11]) * 16 : int(p[6:11]) * 16 + 16])
            assert _encoded(log) == Counter(texts) - stored_before  # the rerun encodes only what is missing
            assert len(list(log.glob("*.txt"))) == 2  # both ranks worked
        else:
            assert _encoded(log) == Counter(texts)
    np.testing.assert_array_equal(vectors["two"], vectors["one"])


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.e2e
def test_two_processes_match_one_and_resume(corpus_file, tmp_path):
    model = helpers.make_tiny_bert(tmp_path / "model", dropout=0.0)  # no dropout: ranks draw no different masks
    store = tmp_path / "store"
    curves = {}
    runs = (("one", 1, None, None), ("two", 2, None, None), ("two-killed", 2, "6", None), ("two-micro", 2, None, 2))
    for name, processes, kill, micro in runs:
        config = tiny_config_dict(
            model, corpus_file, tmp_path / "runs", name=name, store={"dir": str(store), "shard_size": 32}
        )
        for stage in config["stages"]:
            stage["micro_batch_size"] = micro  # 2 processes x 4 rows, in micro-batches of 2: gradient caching
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
    assert len(curves["one"]) == len(curves["two"]) == len(curves["two-killed"]) == len(curves["two-micro"]) == 12
    np.testing.assert_allclose(curves["two"], curves["one"], rtol=1e-4)
    np.testing.assert_allclose(curves["two-killed"], curves["two"], rtol=1e-4)
    np.testing.assert_allclose(curves["two-micro"], curves["one"], rtol=1e-4)


@pytest.mark.e2e
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed")
def test_deepspeed_zero2_matches_one_process_and_resumes(corpus_file, tmp_path):
    """`accelerate launch` with the shipped ZeRO-2 config (2 CPU processes): the 1-process curve, and a resume."""
    model = helpers.make_tiny_bert(tmp_path / "model", dropout=0.0)
    store = tmp_path / "store"
    curves = {}
    for name, processes, kill in (("one", 1, None), ("zero2", 2, None), ("zero2-killed", 2, "6")):
        config = tiny_config_dict(
            model, corpus_file, tmp_path / "runs", name=name, store={"dir": str(store), "shard_size": 32}
        )
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        assert _run(["teach", str(path)], 1).returncode == 0
        launch = ZERO2 if processes > 1 else None
        if kill:
            killed = _run(["train", str(path)], processes, {"JASPER_KILL_AFTER_STEPS": kill}, launch)
            assert killed.returncode != 0
            shards = list((tmp_path / "runs" / name / "checkpoints" / "deepspeed").glob("*/*optim_states.pt"))
            assert len(shards) == 2  # one optimizer shard per rank, of the last checkpoint only
        result = _run(["train", str(path)], processes, None, launch)
        assert result.returncode == 0, result.stderr[-3000:]
        if launch:
            assert "DeepSpeed ZeRO-2 over 2 processes" in " ".join((result.stderr + result.stdout).split())
            engine_dir = tmp_path / "runs" / name / "checkpoints" / "deepspeed"
            assert engine_dir.is_dir() and not [p for p in engine_dir.iterdir() if p.is_dir()]  # gone with the stages
        curves[name] = _losses(tmp_path / "runs" / name)
    assert len(curves["zero2"]) == len(curves["zero2-killed"]) == 12
    np.testing.assert_allclose(curves["zero2"], curves["one"], rtol=1e-4)
    np.testing.assert_allclose(curves["zero2-killed"], curves["zero2"], rtol=1e-6)


@pytest.mark.e2e
@pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None or not torch.cuda.is_available(), reason="needs deepspeed and CUDA"
)
def test_deepspeed_zero2_on_cuda_bf16_resumes(corpus_file, tmp_path):
    """One GPU under the ZeRO-2 accelerate config, bf16 autocast: the plain run's curve, and a resume."""
    model = helpers.make_tiny_bert(tmp_path / "model", dropout=0.0)
    store = tmp_path / "store"
    curves = {}
    runs = (("fp32", None, None), ("plain", None, None), ("zero2", ZERO2, None), ("zero2-killed", ZERO2, "6"))
    for name, launch, kill in runs:
        config = tiny_config_dict(
            model, corpus_file, tmp_path / "runs", name=name, device="cuda",
            precision="fp32" if name == "fp32" else "bf16", store={"dir": str(store), "shard_size": 32},
        )  # fmt: skip
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        assert _run(["teach", str(path)], 1).returncode == 0
        if kill:
            assert _run(["train", str(path)], 1, {"JASPER_KILL_AFTER_STEPS": kill}, launch).returncode != 0
        result = _run(["train", str(path)], 1, None, launch)
        assert result.returncode == 0, result.stderr[-3000:]
        if launch:
            assert "DeepSpeed ZeRO-2 over 1 processes" in " ".join((result.stderr + result.stdout).split())
        curves[name] = _losses(tmp_path / "runs" / name)
    print({name: [round(v, 4) for v in curve] for name, curve in curves.items()})
    assert not np.allclose(curves["zero2"], curves["fp32"], rtol=1e-5)  # bf16 autocast did reach the engine
    np.testing.assert_allclose(curves["zero2"], curves["plain"], rtol=1e-4)
    np.testing.assert_allclose(curves["zero2-killed"], curves["zero2"], rtol=1e-5)
