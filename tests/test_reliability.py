"""Reliability: one writer per run, no silent NaN, exact resume at stage starts, config changes refused on
resume, safe checkpoint loading, and errors that name the file and the fix."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from jasper.config import ConfigError, TeacherConfig, build_config, load_config
from jasper.data.corpus import CorpusError, read_corpus
from jasper.data.store import StoreError, TeacherStore
from jasper.data.store_writer import compute_teacher
from jasper.errors import JasperError
from jasper.locks import FolderLocked, folder_lock
from jasper.train.checkpoint import CheckpointError, load_checkpoint

import helpers
from conftest import tiny_config_dict

TESTS = Path(__file__).parent


def _jasper(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "jasper", *args], capture_output=True, text=True, env=full_env, timeout=600
    )


def _write_config(tmp_path: Path, tiny_bert: Path, corpus_file: Path, **extra: object) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs", **extra)))
    return path


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.e2e
def test_a_run_folder_has_one_writer(tiny_bert, corpus_file, tmp_path):
    path = _write_config(tmp_path, tiny_bert, corpus_file)
    run_dir = tmp_path / "runs" / "tiny"
    with folder_lock(run_dir, "run 'tiny'"):
        second = _jasper("train", str(path))
    assert second.returncode == 2 and "Traceback" not in second.stderr
    said = " ".join(second.stderr.split())
    assert f"is in use by PID {os.getpid()} on " in said and "jasper" in said
    assert _jasper("teach", str(path)).returncode == 0  # the lock went with its holder


def test_a_teacher_store_has_one_writer(tmp_path):
    teacher = TeacherConfig(name="ta", backend="callable", model="helpers:teacher_a")
    with folder_lock(tmp_path / "ta", "teacher store"), pytest.raises(FolderLocked, match="in use by PID"):
        compute_teacher(tmp_path, teacher, helpers.sentences(10))


@pytest.mark.e2e
def test_a_diverging_run_stops_and_keeps_its_last_good_checkpoint(tiny_bert, corpus_file, tmp_path):
    path = _write_config(tmp_path, tiny_bert, corpus_file)
    run_dir = tmp_path / "runs" / "tiny"
    assert _jasper("teach", str(path)).returncode == 0
    result = _jasper("train", str(path), "stages.1.lr=1e30")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    said = " ".join(result.stderr.split())
    assert "stage 2 's2', step" in said and "not finite" in said and "lr is 1e+30" in said
    assert not (run_dir / "student").exists()
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state is not None and all(torch.isfinite(v).all() for v in state.model.values())
    assert all(np.isfinite(r["loss"]) for r in _log(run_dir))  # no NaN step was logged


def test_a_damaged_store_is_refused_on_open_and_on_read(tmp_path):
    teacher = TeacherConfig(name="ta", backend="callable", model="helpers:teacher_a")
    texts = helpers.sentences(12)
    folder = compute_teacher(tmp_path, teacher, texts, "float32")
    vectors = np.load(folder / "vectors.npy", mmap_mode="r+")
    vectors[3, 0] = np.nan
    vectors.flush()
    del vectors
    with pytest.raises(StoreError, match="does not match the checksum"):
        TeacherStore(tmp_path, [teacher], texts)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["sha256"]  # e.g. a store too large to hash on open: the rows a batch reads are still checked
    (folder / "manifest.json").write_text(json.dumps(manifest))
    store = TeacherStore(tmp_path, [teacher], texts)
    store.vectors([0, 1])
    with pytest.raises(StoreError, match=r"damaged row\(s\).*\[3\]"):
        store.vectors([2, 3])


def test_truncated_store_files_name_the_file(tmp_path):
    teacher = TeacherConfig(name="ta", backend="callable", model="helpers:teacher_a")
    texts = helpers.sentences(12)
    folder = compute_teacher(tmp_path, teacher, texts, "float32")
    data = (folder / "vectors.npy").read_bytes()
    (folder / "vectors.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="vectors.npy' has .* bytes.*truncated"):
        TeacherStore(tmp_path, [teacher], texts)
    (folder / "manifest.json").write_text('{"teacher": "ta", "rows": 1')
    with pytest.raises(StoreError, match="manifest.json' is damaged"):
        TeacherStore(tmp_path, [teacher], texts)


def test_leftover_shards_are_cleaned_up(tmp_path):
    teacher = TeacherConfig(name="ta", backend="callable", model="helpers:teacher_a")
    texts = helpers.sentences(12)
    folder = compute_teacher(tmp_path, teacher, texts, "float32", shard_size=4)
    np.save(folder / "shard-00001.npy", np.zeros((4, 8), np.float32))  # as a kill during consolidation leaves
    compute_teacher(tmp_path, teacher, texts, "float32", shard_size=4)
    assert not list(folder.glob("shard-*.npy"))


def test_huge_finite_teacher_outputs_are_normalised_not_zeroed(tmp_path):
    teacher = TeacherConfig(name="big", backend="callable", model="helpers:teacher_huge")
    texts = helpers.sentences(6)
    folder = compute_teacher(tmp_path, teacher, texts, "float32")
    stored = np.load(folder / "vectors.npy")
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, rtol=1e-5)
    expected = helpers.hash_teacher(texts)
    np.testing.assert_allclose(stored, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-5)


def test_ragged_or_text_teacher_output_names_the_teacher(tmp_path):
    teacher = TeacherConfig(name="odd", backend="callable", model="helpers:teacher_ragged")
    with pytest.raises(JasperError, match=r"teacher 'odd' \(helpers:teacher_ragged\) returned something"):
        compute_teacher(tmp_path, teacher, helpers.sentences(4))


def _kill_and_resume(path: Path, run_dir: Path, kill_after: int) -> list[float]:
    killed = _jasper("train", str(path), env={"JASPER_KILL_AFTER_STEPS": str(kill_after)})
    assert killed.returncode == -9, killed.stderr
    resumed = _jasper("train", str(path))
    assert resumed.returncode == 0, resumed.stderr
    return [r["loss"] for r in _log(run_dir)]


@pytest.mark.e2e
def test_resume_at_a_stage_start_is_exact_with_dropout(tiny_bert, corpus_file, tmp_path):
    """A kill just after a stage boundary resumes from the stage-end checkpoint with the same dropout masks."""
    curves = {}
    for name, kill in (("straight", None), ("after-s2", 9), ("end-of-s1", 4)):
        path = _write_config(tmp_path, tiny_bert, corpus_file, name=name)
        run_dir = tmp_path / "runs" / name
        assert _jasper("teach", str(path)).returncode == 0
        if kill is None:
            assert _jasper("train", str(path)).returncode == 0
            curves[name] = [r["loss"] for r in _log(run_dir)]
        else:
            curves[name] = _kill_and_resume(path, run_dir, kill)
        assert [(r["stage"], r["step"]) for r in _log(run_dir)] == [
            (s, i) for s in ("s1", "s2", "s3") for i in range(1, 5)
        ]  # no step logged twice
    np.testing.assert_allclose(curves["after-s2"], curves["straight"], rtol=1e-6)
    np.testing.assert_allclose(curves["end-of-s1"], curves["straight"], rtol=1e-6)


@pytest.mark.e2e
def test_config_changes_on_resume_are_refused(tiny_bert, corpus_file, tmp_path):
    path = _write_config(tmp_path, tiny_bert, corpus_file)
    run_dir = tmp_path / "runs" / "tiny"
    assert _jasper("teach", str(path)).returncode == 0
    assert _jasper("train", str(path), env={"JASPER_KILL_AFTER_STEPS": "6"}).returncode == -9
    changed = _jasper("train", str(path), "stages.1.lr=0.5")
    assert changed.returncode == 2
    said = " ".join(changed.stderr.split())
    assert "stages.1.lr: 0.001 -> 0.5" in said and "new name=" in said and "--restart" in said
    assert load_config(run_dir / "config.yaml").stages[1].lr == 1e-3  # config.yaml records what was run
    assert _jasper("train", str(path), "threads=1", "eval.batch_size=8").returncode == 0  # these change nothing
    other_heads = _jasper("train", str(path), "student.heads=[12,6]")
    assert other_heads.returncode == 2 and "student.heads" in other_heads.stderr
    assert _jasper("export", str(run_dir)).returncode == 0
    restarted = _jasper("train", str(path), "stages.2.steps=2", "--restart")
    assert restarted.returncode == 0, restarted.stderr
    assert len(_log(run_dir)) == 10 and load_config(run_dir / "config.yaml").stages[2].steps == 2


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-checkpoint",))


def test_checkpoints_never_unpickle_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "last.pt"
    torch.save({"stage": 0, "step": 1, "model": {}, "rng": _Payload()}, path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned-by-checkpoint").exists()
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated, damaged"):
        load_checkpoint(path)
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_bad_inputs_get_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml' is not valid YAML at line \d+"):
        load_config(bad)
    with pytest.raises(CorpusError, match="is a folder"):
        read_corpus(tmp_path)
    base = yaml.safe_load((TESTS.parent / "configs" / "quickstart.yaml").read_text())
    with pytest.raises(ConfigError, match="loss.margin"):
        build_config(base, ["loss.margin=-0.1"])
    from jasper.assets import resolve_model

    with pytest.raises(JasperError, match="model folder './no/such/student' does not exist"):
        resolve_model("./no/such/student")


def test_unwritable_run_folder_is_one_line(tiny_bert, corpus_file, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from jasper import cli, io

    def refuse(path, write):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(io, "atomic_write", refuse)
    path = _write_config(tmp_path, tiny_bert, corpus_file)
    result = CliRunner().invoke(cli.app, ["teach", str(path)])
    assert result.exit_code == 2, result.output
    assert "Permission denied" in result.output and "Traceback" not in result.output


@pytest.mark.e2e
@pytest.mark.parametrize("seed", [0, 1])
def test_chaos_kills_change_nothing(tiny_bert, corpus_file, tmp_path, seed):
    """teach and train killed at seeded random moments (mid-shard, mid-stage, at stage boundaries, inside a
    checkpoint write; dropout on) end byte-identical to a run that was never killed, no step logged twice."""
    import random

    rng = random.Random(seed)
    outputs = {}
    for name in ("straight", "chaos"):
        path = _write_config(tmp_path, tiny_bert, corpus_file, name=name)
        kills = 0
        for command, points, count in (
            ("teach", [("JASPER_KILL_AFTER_SHARDS", 1, 3)], 1),
            ("train", [("JASPER_KILL_AFTER_STEPS", 1, 5), ("JASPER_KILL_IN_CHECKPOINT", 1, 2)], 4),
        ):
            planned = [rng.choice(points) for _ in range(count)] if name == "chaos" else []
            while True:
                variable, low, high = planned.pop(0) if planned else ("", 0, 0)
                env = {variable: str(rng.randint(low, high))} if variable else {}
                result = _jasper(command, str(path), env=env)
                if result.returncode == 0:
                    break
                assert result.returncode == -9, result.stderr
                kills += 1
        run_dir = tmp_path / "runs" / name
        log = _log(run_dir)
        assert [(r["stage"], r["step"]) for r in log] == [(s, i) for s in ("s1", "s2", "s3") for i in range(1, 5)]
        assert (kills >= 3) == (name == "chaos"), kills
        outputs[name] = {
            "store": [(run_dir / "teachers" / t / "vectors.npy").read_bytes() for t in ("ta", "tb")],
            "student": [
                (run_dir / "student" / f).read_bytes() for f in ("heads.safetensors", "backbone/model.safetensors")
            ],
            "losses": [r["loss"] for r in log],
        }
    assert outputs["chaos"] == outputs["straight"]
