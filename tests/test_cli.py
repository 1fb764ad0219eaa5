"""The `jasper` command end to end on a tiny config: kill training midway, resume, finish, export, encode."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import tiny_config_dict

TESTS = Path(__file__).parent


def _default_sigint() -> None:
    # a shell's background job starts with SIGINT ignored, and Python then never turns it into
    # KeyboardInterrupt: the Ctrl-C test needs the default, wherever the suite is launched from
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _jasper(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "jasper", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
        preexec_fn=_default_sigint,
    )


@pytest.mark.e2e
def test_run_kill_resume_finish(tiny_bert, corpus_file, tmp_path):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs")))
    run_dir = tmp_path / "runs" / "tiny"

    teach = _jasper("teach", str(config_path))
    assert teach.returncode == 0, teach.stderr
    assert (run_dir / "config.yaml").is_file()

    interrupted = _jasper("train", str(config_path), env={"JASPER_INTERRUPT_AFTER_STEPS": "3"})  # Ctrl-C
    assert interrupted.returncode == 130, interrupted.stderr
    said = " ".join(interrupted.stderr.split())
    assert "interrupted in stage 1 's1' after step 3" in said and "holds stage 1 step 2" in said, said
    assert "resumes there (1 step(s) to repeat)" in said and "Traceback" not in said
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "train_log.jsonl").unlink()

    killed = _jasper("train", str(config_path), env={"JASPER_KILL_AFTER_STEPS": "7"})
    assert killed.returncode == -9, killed.stderr
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 7  # stage s1 (4 steps) done, s2 killed after its 3rd step
    assert not (run_dir / "student").exists()

    resumed = _jasper("run", str(config_path))
    assert resumed.returncode == 0, resumed.stderr
    for noise in ("\x1b[", "\r", "LOAD REPORT", "Setting accelerator to CPU", "Loading weights"):
        assert noise not in resumed.stderr + resumed.stdout, noise  # a piped log stays plain
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    positions = [(r["stage"], r["step"]) for r in log]
    expected = [(s, i) for s in ("s1", "s2", "s3") for i in range(1, 5)]
    assert positions == expected  # every step once: none lost, none repeated
    assert {"cosine@12", "similarity@12", "resim@12", "similarity@3", "resim@3"} <= set(log[-1])

    report = json.loads((run_dir / "report.json").read_text())
    assert isinstance(report["wall_seconds"], float)
    keys = {(r["model"], r["dim"], r["task"]) for r in report["rows"]}
    for dim in (12, 6, 3):
        assert ("student", dim, "teacher-similarity") in keys
    assert ("student", 12, "teacher-cosine") in keys
    assert ("init", 16, "teacher-similarity") in keys
    assert {("ta", 8, "teacher-similarity"), ("tb", 4, "teacher-similarity")} <= keys
    assert ("teachers (concat)", 12, "lee-docsim") in keys
    assert any("STS-B test skipped" in note for note in report["notes"])
    for task in ("lee-docsim", "wordsim353", "simlex999", "polarity", "newsgroups-clustering"):
        for model, dim in (("student", 12), ("student", 3), ("init", 16), ("ta", 8), ("tb", 4)):
            assert (model, dim, task) in keys
    assert (run_dir / "report.md").read_text().startswith("# jasper run 'tiny'")
    for plot in ("scores_by_dim.png", "loss_parts.png"):
        assert (run_dir / "plots" / plot).stat().st_size > 1000
    again = _jasper("eval", str(run_dir), "--trust-config")  # everything cached: nothing to encode
    assert again.returncode == 0, again.stderr
    assert json.loads((run_dir / "report.json").read_text())["rows"] == report["rows"]
    foreign = _jasper("eval", str(run_dir))  # a run folder: its callable teachers are not imported
    assert foreign.returncode == 0, foreign.stderr
    untrusted = json.loads((run_dir / "report.json").read_text())
    assert not any(r["model"] in ("ta", "tb") and r["task"] == "lee-docsim" for r in untrusted["rows"])
    assert ("ta", 8, "teacher-similarity") in {(r["model"], r["dim"], r["task"]) for r in untrusted["rows"]}
    assert any("pass --trust-config" in note for note in untrusted["notes"])
    again = _jasper("eval", str(run_dir), "--trust-config")
    assert (run_dir / "report.md").read_text().startswith("# jasper eval 'tiny'")
    shared = json.loads((tmp_path / "jasper-cache" / "scores.json").read_text())
    assert len(shared) == 4  # the two teachers, their concatenation and the initialisation: reused by later runs
    assert len(json.loads((run_dir / "eval_cache.json").read_text())) == 1  # the run's own student
    umask = os.umask(0)
    os.umask(umask)
    for written in ("report.json", "config.yaml", "train_log.jsonl", "checkpoints/last.pt"):
        assert (run_dir / written).stat().st_mode & 0o777 == 0o666 & ~umask, written
    for dim in (12, 6, 3):
        assert (run_dir / "export" / f"dim-{dim}" / "modules.json").is_file()

    texts = tmp_path / "texts.txt"
    texts.write_text("the cat saw a dog\nmusic and film\n", encoding="utf-8")
    encoded = _jasper("encode", str(run_dir), "--input", str(texts), "--out", str(tmp_path / "v.npy"), "--dim", "6")
    assert encoded.returncode == 0, encoded.stderr
    from sentence_transformers import SentenceTransformer

    exported = SentenceTransformer(str(run_dir / "export" / "dim-6"), device="cpu")
    np.testing.assert_allclose(
        np.load(tmp_path / "v.npy"), exported.encode(["the cat saw a dog", "music and film"]), atol=1e-5
    )

    too_short = tmp_path / "v32.npy"
    refused = _jasper("encode", str(run_dir / "export" / "dim-6"), "--input", str(texts), "--out", str(too_short))
    assert refused.returncode == 0, refused.stderr  # its own dim is fine
    for target in (run_dir, run_dir / "export" / "dim-6"):  # one rule: a dim that is no head is refused
        refused = _jasper("encode", str(target), "--input", str(texts), "--out", str(too_short), "--dim", "5")
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    refused = _jasper(
        "encode", str(run_dir / "export" / "dim-6"), "--input", str(texts), "--out", "x.npy", "--dim", "3"
    )
    assert refused.returncode == 2 and "use the 3-d head's export" in " ".join(refused.stderr.split())

    evalout = tmp_path / "evalout"
    plain = _jasper(
        "eval", str(run_dir / "export" / "dim-6"), f"eval.stsb_dir={tmp_path / 'no-stsb'}", f"output_dir={evalout}"
    )
    assert plain.returncode == 0, plain.stderr
    assert "STS-B test skipped" in plain.stdout and "no sts-test.csv" in plain.stdout
    assert "evaluate a run" in plain.stdout  # the note speaks of what exists: no run, so no derived retrieval
    plain_report = json.loads((evalout / "eval-dim-6" / "report.json").read_text())
    assert {r["task"] for r in plain_report["rows"]} >= {"lee-docsim", "polarity"}
    assert plain.stdout.startswith("jasper eval ") and "| model | dim |" in plain.stdout  # Markdown when piped
    wrong = _jasper("eval", str(run_dir / "export" / "dim-6"), "foo=1")
    assert wrong.returncode == 2 and "does not apply to a plain model" in wrong.stderr

    if importlib.util.find_spec("mteb") is not None:
        offline = _jasper("eval", str(run_dir), "--mteb", "STSBenchmark")
        assert offline.returncode == 0, offline.stderr
        assert "MTEB task 'STSBenchmark' at dim 12 failed" in " ".join(offline.stdout.split())

    out = tmp_path / "single"
    single = _jasper("export", str(run_dir), "--dim", "3", "--out", str(out))
    assert single.returncode == 0, single.stderr
    assert (out / "modules.json").is_file()


@pytest.mark.e2e
def test_resume_matches_uninterrupted(tiny_bert, corpus_file, tmp_path):
    """A killed-and-resumed run ends with the same loss curve as one that ran straight through."""
    curves = []
    for name, kill in (("straight", None), ("killed", "5")):
        config = tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs", name=name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        assert _jasper("teach", str(path)).returncode == 0
        if kill:
            assert _jasper("train", str(path), env={"JASPER_KILL_AFTER_STEPS": kill}).returncode == -9
        result = _jasper("train", str(path))
        assert result.returncode == 0, result.stderr
        log = (tmp_path / "runs" / name / "train_log.jsonl").read_text().splitlines()
        curves.append([json.loads(line)["loss"] for line in log])
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-4)


@pytest.mark.e2e
def test_cli_errors_are_one_clear_line(tiny_bert, corpus_file, tmp_path):
    config = tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    unknown = _jasper("teach", str(path), "student.colour=red")
    assert unknown.returncode == 2
    assert "unknown key 'student.colour'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    untaught = _jasper("train", str(path))
    assert untaught.returncode == 2
    assert "jasper teach" in untaught.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    bad_corpus = _jasper("teach", str(path), f"corpus.path={empty}")
    assert bad_corpus.returncode == 2 and "is empty" in bad_corpus.stderr
    bad_yaml = _jasper("teach", str(path), "stages.0.heads=[1,2")
    assert bad_yaml.returncode == 2 and "not valid YAML" in bad_yaml.stderr and "Traceback" not in bad_yaml.stderr


@pytest.mark.e2e
def test_help_and_version():
    short = _jasper("-h")
    assert short.returncode == 0 and "teach" in short.stdout
    assert _jasper("eval", "-h").returncode == 0
    version = _jasper("--version")
    assert version.returncode == 0 and version.stdout.startswith("jasper ")


@pytest.mark.e2e
def test_unreachable_hub_fails_fast_in_one_line(tmp_path):
    env = {"HF_HUB_OFFLINE": "", "HF_ENDPOINT": "http://127.0.0.1:9", "JASPER_CACHE_DIR": str(tmp_path)}
    online = _jasper("eval", "someone/no-such-model", env=env)  # nothing listens on port 9: no network
    assert online.returncode == 2, online.stderr
    assert "cannot reach the Hugging Face hub" in online.stderr and "HF_HUB_OFFLINE=1" in online.stderr
    assert "Traceback" not in online.stderr and len(online.stderr.strip().splitlines()) <= 2
    offline = _jasper("eval", "someone/no-such-model", env={**env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 2 and "not in the local Hugging Face cache" in offline.stderr


@pytest.mark.e2e
def test_gpu_config_refuses_clearly_on_a_cpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    root = TESTS.parent
    result = _jasper("run", str(root / "configs" / "wiki_gpu.yaml"), f"output_dir={tmp_path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "asks for device 'cuda'" in result.stderr and "no CUDA GPU" in result.stderr
    assert not (tmp_path / "wiki-gpu" / "teachers").exists()  # stopped before any work
