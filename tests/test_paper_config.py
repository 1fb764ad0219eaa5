"""The paper's config runs its stage logic end to end on a tiny random Qwen2 with 12288-d stand-in teachers."""

from __future__ import annotations

import json
from pathlib import Path

from jasper.config import load_config
from jasper.teach import teach
from jasper.train.run import train

import helpers

ROOT = Path(__file__).resolve().parents[1]


def test_paper_stages_on_tiny_qwen2(tiny_qwen2, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(helpers.sentences(40)) + "\n", encoding="utf-8")
    overrides = [
        f"output_dir={tmp_path / 'runs'}",
        "device=cpu",
        f"corpus.path={corpus}",
        "corpus.holdout=8",
        "teachers.0.backend=callable",
        "teachers.0.model=helpers:teacher_paper_nv",
        "teachers.0.trust_remote_code=false",
        "teachers.1.backend=callable",
        "teachers.1.model=helpers:teacher_paper_stella",
        "teachers.1.trust_remote_code=false",
        "store.shard_size=16",
        f"student.model={tiny_qwen2}",
        "student.trust_remote_code=false",
        "student.max_length=16",
    ]
    for index in range(3):
        overrides += [f"stages.{index}.steps=2", f"stages.{index}.batch_size=4"]
    overrides += ["stages.2.micro_batch_size=2", "student.gradient_checkpointing=true"]  # memory savers
    config = load_config(ROOT / "configs" / "jasper_paper.yaml", overrides)
    store = teach(config)
    assert store.dim == 12288 == config.student.heads[0]
    student_dir = train(config)
    meta = json.loads((student_dir / "student.json").read_text())
    assert meta["heads"] == [12288, 1024, 512, 256]
    log = [json.loads(line) for line in (config.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log] == ["stage1"] * 2 + ["stage2"] * 2 + ["stage3"] * 2
    assert set(log[0]) >= {"cosine@12288", "similarity@12288", "resim@12288"}
    assert "resim@256" in log[-1] and "cosine@256" not in log[-1]


def test_self_distilled_short_heads_train_without_fc1_losses(tiny_bert, corpus_file, tmp_path):
    from jasper.config import build_config

    from conftest import tiny_config_dict

    data = tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs")
    data["stages"] = [{"name": "short", "train": "all", "heads": [6, 3], "lr": 1e-3, "batch_size": 8, "steps": 2}]
    config = build_config(data, ["loss.short_head_target=self"])
    teach(config)
    train(config)
    log = [json.loads(line) for line in (config.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert set(log[0]) >= {"similarity@6", "resim@3"} and not any("@12" in key for key in log[0])
