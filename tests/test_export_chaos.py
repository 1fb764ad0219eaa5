"""`jasper export` (the sentence-transformers folder, its card and its ONNX copies) killed at 20 seeded random
moments: every time, the head folder is the old export or the new one, whole, and it loads."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from jasper.config import StudentConfig
from jasper.export.onnx import FP32_FILE, INT8_FILE, O3_FILE, OnnxEmbedder
from jasper.models.student import build_student, save_student
from test_cli import _jasper

from conftest import tiny_config_dict

TEXTS = ["the cat saw a dog", "music", "an old king wrote a long book about the war", "a red bird"]
KILLS = 20


def _vectors(folder) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(TEXTS, normalize_embeddings=True)


def _which(head, references: dict[str, np.ndarray]) -> str:
    """Which student's export the folder holds, checked whole: torch and every ONNX file agree with it."""
    found = _vectors(head)
    matches = [name for name, expected in references.items() if np.abs(found - expected).max() <= 1e-5]
    assert len(matches) == 1, "the folder is neither the old export nor the new one"
    expected = references[matches[0]]
    for file, minimum in ((FP32_FILE, 0.99999), (O3_FILE, 0.9999), (INT8_FILE, 0.9)):
        cosines = (OnnxEmbedder(head, file).encode(TEXTS) * expected).sum(axis=1)
        assert cosines.min() > minimum, (file, cosines)
    assert (head / "README.md").is_file()
    return matches[0]


def _leftovers(export) -> list[str]:
    """What an export that was stopped leaves beside the heads: its staging folder (`.dim-<D>.tmp`, which the next
    export clears) or the old folder moved aside (`.dim-<D>.old`, where the file system cannot swap in one step)."""
    return sorted(p.name for p in export.iterdir() if p.name.startswith(".dim-"))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0])
def test_killed_exports_leave_the_old_or_the_new_export(tiny_bert, corpus_file, tmp_path, seed):
    config = tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    students = {}
    for name, init_seed in (("a", 1), ("b", 2)):
        import torch

        torch.manual_seed(init_seed)
        student = build_student(StudentConfig(model=str(tiny_bert), keep_layers=[0, 1], max_length=16, heads=[12, 6]))
        save_student(student, tmp_path / f"student-{name}")
        students[name] = tmp_path / f"student-{name}"
    command = ["export", str(run), "--dim", "6", "--format", "onnx", "--quantize", "int8"]
    references = {}
    durations = []
    for name, folder in students.items():
        shutil.rmtree(run / "student", ignore_errors=True)
        shutil.copytree(folder, run / "student")
        began = time.monotonic()
        done = _jasper(*command)
        durations.append(time.monotonic() - began)
        assert done.returncode == 0, done.stderr
        references[name] = _vectors(run / "export" / "dim-6")
    head = run / "export" / "dim-6"
    rng = random.Random(seed)
    seen = []
    for kill in range(KILLS):
        name = "a" if kill % 2 == 0 else "b"  # each export replaces the other student's
        shutil.rmtree(run / "student")
        shutil.copytree(students[name], run / "student")
        process = subprocess.Popen([sys.executable, "-m", "jasper", *command], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=_env())  # fmt: skip
        time.sleep(rng.uniform(0.2, 1.0) * max(durations))
        process.send_signal(signal.SIGKILL)
        process.wait()
        staged = bool(_leftovers(run / "export"))  # the kill landed while the new export was being written
        seen.append((name, process.returncode, _which(head, references), staged))
    assert any(rc == -9 for _, rc, _, _ in seen), "no export was killed: the kill times are too late"
    assert {held for _, _, held, _ in seen} == {"a", "b"}  # some kills left the old export, some the new
    assert any(staged for *_, staged in seen), "no kill landed inside the staging and swap of an export"
    assert _jasper(*command).returncode == 0 and _which(head, references) == seen[-1][0]
    assert _leftovers(run / "export") == []  # the next export clears what a killed one left


def _env() -> dict[str, str]:
    import os
    from pathlib import Path

    return {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "HF_HUB_OFFLINE": "1"}
