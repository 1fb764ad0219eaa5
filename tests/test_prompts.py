"""Roles and prompts: what a teacher reads (and the store keys), the student's own prompts in its exports
(`encode_query` / `encode_document` in sentence-transformers), the server's `input_type`, `jasper encode
--prompt-name`, and how long an export reads (`max_seq_length`) apart from the training cut (`max_length`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import openai
import pytest
from typer.testing import CliRunner

from jasper import cli
from jasper.config import StudentConfig, TeacherConfig
from jasper.data.store import StoreError, TeacherStore
from jasper.data.store_writer import compute_teacher
from jasper.export.sentence_transformers import export_all
from jasper.models.student import build_student, load_student, save_student
from jasper.serve import load_embedder
from jasper.serve.app import create_app

import helpers

TEXTS = ["the cat saw a dog", "music", "an old king wrote a long book about the war and the peace"]
PROMPTS = {"query": "music ", "document": "history "}  # words of the tiny vocabulary: prompts it can read


@pytest.fixture(scope="module")
def prompted_run(tiny_bert, tmp_path_factory) -> Path:
    """A saved student with its own prompts (query by default), trained at 6 tokens, exported: heads 12 and 6."""
    run = tmp_path_factory.mktemp("prompts") / "prompted"
    config = StudentConfig(
        model=str(tiny_bert), heads=[12, 6], max_length=6, prompts=PROMPTS, default_prompt_name="query"
    )
    student = build_student(config)
    save_student(student, run / "student")
    export_all(student, [12, 6], run / "export")
    (run / "config.yaml").write_text("name: prompted\n")
    return run


def _student_vectors(run: Path, role: str, dim: int = 12) -> np.ndarray:
    return load_student(run / "student").encode(TEXTS, [dim], role=role)[dim]


def test_exports_read_their_own_length_not_the_training_cut(prompted_run, tiny_bert):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(prompted_run / "export" / "dim-12"), device="cpu")
    # the training cut was 6 tokens; the export reads what the base model reads (the tiny BERT's 64 positions)
    assert model.max_seq_length == 64 and load_student(prompted_run / "student").max_seq_length == 64
    assert load_student(prompted_run / "student").max_length == 6
    long_text = " ".join(["music"] * 40)
    cut = model.encode([long_text], prompt="")
    assert not np.allclose(cut, model.encode([" ".join(["music"] * 4)], prompt=""))  # past 6 tokens is read
    explicit = build_student(StudentConfig(model=str(tiny_bert), heads=[12], max_length=6, max_seq_length=16))
    assert explicit.max_seq_length == 16


def test_encode_query_and_encode_document_give_the_students_prompted_vectors(prompted_run):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(prompted_run / "export" / "dim-12"), device="cpu")
    assert model.prompts["query"] == "music " and model.prompts["document"] == "history "
    assert model.default_prompt_name == "query"
    queries = model.encode_query(TEXTS, normalize_embeddings=True)
    documents = model.encode_document(TEXTS, normalize_embeddings=True)
    assert np.abs(queries - _student_vectors(prompted_run, "query")).max() <= 1e-5
    assert np.abs(documents - _student_vectors(prompted_run, "document")).max() <= 1e-5
    assert np.abs(model.encode(TEXTS, normalize_embeddings=True) - queries).max() <= 1e-6  # the default prompt
    assert np.abs(queries - documents).max() > 1e-3  # the prompts do change the vectors
    plain = model.encode(["history " + t for t in TEXTS], prompt="", normalize_embeddings=True)
    assert np.abs(plain - documents).max() <= 1e-5  # a prompt is the text put before


def test_the_server_input_type_gives_the_same_vectors(prompted_run):
    import socket

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    for target in (prompted_run, prompted_run / "export"):  # the run's student, and the exported heads
        server = uvicorn.Server(uvicorn.Config(create_app(load_embedder(target)), port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            for _ in range(200):
                if server.started:
                    break
                time.sleep(0.05)
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
            for role in ("query", "document"):
                out = client.embeddings.create(model="prompted", input=TEXTS, extra_body={"input_type": role})
                found = np.array([d.embedding for d in out.data])
                assert np.abs(found - _student_vectors(prompted_run, role)).max() <= 1e-5, (target, role)
            plain = client.embeddings.create(model="prompted", input=TEXTS)  # no input_type: the default prompt
            found = np.array([d.embedding for d in plain.data])
            assert np.abs(found - _student_vectors(prompted_run, "query")).max() <= 1e-5
            with pytest.raises(openai.BadRequestError, match="input_type"):
                client.embeddings.create(model="prompted", input=TEXTS, extra_body={"input_type": "passage"})
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def test_jasper_encode_prompt_name(prompted_run, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n")
    long = tmp_path / "long.txt"
    long.write_text(" ".join(["music"] * 100) + "\nshort\n")
    said = CliRunner().invoke(
        cli.app, ["encode", str(prompted_run), "--input", str(long), "--out", str(tmp_path / "l.npy")]
    )
    assert said.exit_code == 0 and "1 of 2 texts are longer than its max_seq_length 64" in " ".join(said.output.split())
    for role in ("query", "document"):
        out = tmp_path / f"{role}.npy"
        result = CliRunner().invoke(
            cli.app, ["encode", str(prompted_run), "--input", str(texts), "--out", str(out), "--prompt-name", role]
        )
        assert result.exit_code == 0, result.output
        assert np.abs(np.load(out) - _student_vectors(prompted_run, role)).max() <= 1e-6
    refused = CliRunner().invoke(
        cli.app, ["encode", str(prompted_run), "--input", str(texts), "--out", str(out), "--prompt-name", "passage"]
    )
    assert refused.exit_code == 2 and "choose query or document" in refused.output


def test_a_teacher_reads_each_row_with_its_roles_prompt(tmp_path):
    helpers.SEEN.clear()
    teacher = TeacherConfig(
        name="t", backend="callable", model="helpers:recording_teacher", prompt="t: ", prompts={"query": "q: "}
    )
    texts, roles = ["alpha", "beta", "gamma"], ["query", "document", "text"]
    compute_teacher(tmp_path, teacher, [teacher.prompt_for(r) + t for t, r in zip(texts, roles, strict=True)])
    assert helpers.SEEN == ["q: alpha", "t: beta", "t: gamma"]  # documents fall back to `prompt` here
    assert TeacherStore(tmp_path, [teacher], texts, roles).rows == 3


def test_a_changed_prompt_never_reuses_stored_vectors(tmp_path):
    teacher = TeacherConfig(name="t", backend="callable", model="helpers:teacher_a", prompts={"query": "q: "})
    texts = helpers.sentences(6)
    roles = ["query"] * 3 + ["document"] * 3
    compute_teacher(tmp_path, teacher, [teacher.prompt_for(r) + t for t, r in zip(texts, roles, strict=True)])
    TeacherStore(tmp_path, [teacher], texts, roles)  # the same prompts: the store opens
    changed = teacher.model_copy(update={"prompts": {"query": "search: "}})
    with pytest.raises(StoreError, match="different prompts"):
        TeacherStore(tmp_path, [changed], texts, roles)
    with pytest.raises(StoreError, match="other prompts"):  # the same prompts, other roles: other texts were read
        TeacherStore(tmp_path, [teacher], texts, ["query"] * 6)
