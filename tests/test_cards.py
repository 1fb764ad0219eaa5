"""Model cards of exported heads, and `--push-to-hub` (the upload call replaced: tests never go online)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from jasper.config import build_config
from jasper.errors import JasperError
from jasper.export.card import write_cards
from jasper.export.hub import push_folder
from jasper.export.sentence_transformers import export_all
from jasper.models.student import build_student

from conftest import tiny_config_dict


def _exported(tiny_bert: Path, corpus_file: Path, tmp_path: Path, **extra: object) -> tuple[object, list[Path]]:
    config = build_config(tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs", **extra))
    student = build_student(config.student)
    return config, export_all(student, [12, 6, 3], config.run_dir / "export")


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_card_has_metadata_teachers_training_usage_and_then_the_evaluation(tiny_bert, corpus_file, tmp_path):
    config, paths = _exported(tiny_bert, corpus_file, tmp_path)
    cards = write_cards(config, paths)
    card = cards[1].read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "sentence-transformers" and meta["base_model"] == str(tiny_bert)
    assert meta["license"] == "other" and "Not set (`export.license`" in card
    assert "| ta | `helpers:teacher_a` | callable | ? | (none) |" in card and "| tb |" in card  # no store: dim unknown
    assert "layers [0, 1] kept" in card and "max length 16 tokens" in card
    assert "| s1 | heads |" in card and "| s2 | last_layers (last 1) |" in card
    assert "dimensions=6)" in card and "jasper serve" in card and "SentenceTransformer(" in card
    assert "Not evaluated yet" in card
    report = {
        "rows": [
            {"model": "student", "dim": 6, "task": "sts-b-test", "score": 71.234},
            {"model": "student", "dim": 12, "task": "sts-b-test", "score": 70.0},
            {"model": "init", "dim": 6, "task": "sts-b-test", "score": 55.0},
        ]
    }
    (config.run_dir / "report.json").write_text(json.dumps(report))
    card = write_cards(config, paths)[1].read_text()
    assert "| sts-b-test | 71.23 |" in card and "70.00" not in card and "55.00" not in card


def test_card_licence_from_the_config(tiny_bert, corpus_file, tmp_path):
    config, paths = _exported(tiny_bert, corpus_file, tmp_path, export={"license": "apache-2.0"})
    card = write_cards(config, paths[:1])[0].read_text()
    assert _front_matter(card)["license"] == "apache-2.0" and "`apache-2.0`" in card


def test_push_to_hub_uploads_the_folder(tmp_path, monkeypatch):
    import huggingface_hub

    import jasper.hub

    calls = []
    monkeypatch.setattr(jasper.hub, "offline_mode", lambda: False)
    monkeypatch.setattr(jasper.hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "create_repo",
        lambda self, repo_id, **kw: (
            calls.append(("create", repo_id, kw["private"])) or f"https://huggingface.co/{repo_id}"
        ),
    )
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "upload_folder",
        lambda self, **kw: calls.append(("upload", kw["repo_id"], kw["folder_path"])),
    )
    (tmp_path / "dim-6").mkdir()
    url = push_folder(tmp_path / "dim-6", "me/tiny-6", private=True)
    assert url == "https://huggingface.co/me/tiny-6"
    assert calls == [("create", "me/tiny-6", True), ("upload", "me/tiny-6", str(tmp_path / "dim-6"))]


def test_push_to_hub_offline_says_so(tmp_path, monkeypatch):
    import jasper.hub

    monkeypatch.setattr(jasper.hub, "offline_mode", lambda: True)
    with pytest.raises(JasperError, match="HF_HUB_OFFLINE=1 is set; .* can be uploaded later"):
        push_folder(tmp_path, "me/tiny")


@pytest.mark.e2e
def test_cli_export_onnx_int8_with_cards_and_push_refusals(tiny_bert, corpus_file, tmp_path):
    import os
    import subprocess
    import sys

    from jasper.models.student import save_student

    data = tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs")
    config = build_config(data)
    save_student(build_student(config.student), config.run_dir / "student")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "HF_HUB_OFFLINE": "1"}

    def jasper(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "jasper", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)

    done = jasper("export", str(path), "--dim", "6", "--format", "onnx", "--quantize", "int8")
    assert done.returncode == 0, done.stderr
    head = config.run_dir / "export" / "dim-6"
    assert (head / "onnx" / "model.onnx").is_file() and (head / "onnx" / "model_qint8_avx512_vnni.onnx").is_file()
    assert "# tiny (6-d)" in (head / "README.md").read_text()
    for args, said in (
        (("--push-to-hub", "me/x"), "uploads one head: choose it with --dim"),
        (("--dim", "6", "--quantize", "int8"), "use --format onnx [--quantize int8]"),
        (("--dim", "6", "--push-to-hub", "me/x"), "can be uploaded later"),
    ):
        refused = jasper("export", str(path), *args)
        assert refused.returncode == 2 and said in " ".join(refused.stderr.split()), refused.stderr
