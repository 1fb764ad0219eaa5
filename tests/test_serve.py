"""`jasper serve`: the OpenAI embeddings format, every 4xx, the bearer key, head selection, dynamic batching,
and the vectors the official `openai` client gets against `SentenceTransformer(export).encode`."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
import time
from pathlib import Path

import numpy as np
import openai
import pytest
import yaml
from fastapi.testclient import TestClient

from jasper.config import StudentConfig
from jasper.errors import JasperError
from jasper.export.sentence_transformers import export_all
from jasper.models.student import build_student, save_student
from jasper.serve import Limits, load_embedder
from jasper.serve.app import create_app

TEXTS = ["the cat saw a dog", "music", "an old king wrote a long book about the war"]
KEY = "s3cret-key-for-tests"


@pytest.fixture(scope="module")
def run_dir(tiny_bert, tmp_path_factory) -> Path:
    """A tiny trained-looking run: a saved student with heads 12 and 6, both exported."""
    run = tmp_path_factory.mktemp("serve") / "tiny-run"
    student = build_student(StudentConfig(model=str(tiny_bert), heads=[12, 6], max_length=4, max_seq_length=8))
    save_student(student, run / "student")
    export_all(student, [12, 6], run / "export")
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "tiny"}))
    return run


@pytest.fixture(scope="module")
def client(run_dir):
    with TestClient(create_app(load_embedder(run_dir), Limits(max_inputs=10, max_body_bytes=4000))) as client:
        yield client


def _post(client, body, **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/v1/embeddings", content=data, headers={"content-type": "application/json", **headers})


def test_response_format_usage_and_heads(client, run_dir, caplog):
    from sentence_transformers import SentenceTransformer

    with caplog.at_level(logging.INFO, logger="jasper.serve"):
        answer = _post(client, {"model": "tiny", "input": TEXTS, "dimensions": 6})
    assert "1 of 3 texts in a batch are longer than max_seq_length 8" in caplog.text  # the server says what it cut
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "list" and body["model"] == "tiny"
    assert [d["index"] for d in body["data"]] == [0, 1, 2] and all(d["object"] == "embedding" for d in body["data"])
    found = np.array([d["embedding"] for d in body["data"]])
    expected = SentenceTransformer(str(run_dir / "export" / "dim-6"), device="cpu").encode(
        TEXTS, normalize_embeddings=True
    )
    assert found.shape == (3, 6) and np.abs(found - expected).max() <= 1e-5
    # usage: real token counts, cut at max_length 8 (the long text has more), and how many were cut
    tokenizer = load_embedder(run_dir).student.tokenizer
    counts = [len(tokenizer(t)["input_ids"]) for t in TEXTS]
    assert body["usage"]["prompt_tokens"] == sum(min(n, 8) for n in counts) == body["usage"]["total_tokens"]
    assert body["usage"]["truncated_inputs"] == sum(n > 8 for n in counts) == 1
    fc1 = _post(client, {"model": "tiny", "input": "music"}).json()  # no dimensions: FC1
    assert len(fc1["data"][0]["embedding"]) == 12
    packed = _post(client, {"model": "tiny", "input": "music", "dimensions": 6, "encoding_format": "base64"}).json()
    vector = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert np.abs(vector - found[1]).max() <= 1e-6


def test_models_and_health(client):
    models = client.get("/v1/models").json()
    assert models["data"][0]["id"] == "tiny" and models["data"][0]["dimensions"] == [12, 6]
    assert client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        (b"{not json", 400, "not valid JSON"),
        ("[1, 2]", 400, "JSON object"),
        ({"model": "tiny"}, 400, "'input'"),
        ({"model": "tiny", "input": 5}, 400, "token arrays are not supported"),
        ({"model": "tiny", "input": [[1, 2, 3]]}, 400, "token arrays are not supported"),
        ({"model": "tiny", "input": "a", "dimensions": "6"}, 400, "'dimensions'"),
        ({"model": "tiny", "input": "a", "encoding_format": "int8"}, 400, "'encoding_format'"),
        ({"model": "tiny", "input": ""}, 400, "nothing to embed"),
        ({"model": "tiny", "input": ["ok", "\u200b\ufeff\u0007\ue000"]}, 400, "nothing to embed (at [1])"),
        ({"model": "tiny", "input": []}, 400, "'input' is empty"),
        ({"model": "tiny", "input": ["a"] * 11}, 400, "limit is 10"),
        ({"model": "tiny", "input": "a", "dimensions": 7}, 400, "valid: [12, 6]"),
        ({"model": "other", "input": "a"}, 404, "this server has 'tiny'"),
        ({"model": "tiny", "input": ["word " * 100] * 10}, 413, "limit is 4,000"),
    ],
)
def test_bad_requests_get_their_4xx(client, body, status, said):
    answer = _post(client, body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert said in error["message"] and error["type"]


def test_bearer_key(run_dir, caplog):
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(load_embedder(run_dir), api_key=KEY)) as client:
        body = {"model": "tiny", "input": "music"}
        missing = _post(client, body)
        wrong = _post(client, body, authorization="Bearer nope")
        assert (missing.status_code, wrong.status_code) == (401, 401)
        assert "no API key" in missing.json()["error"]["message"] and "wrong" in wrong.json()["error"]["message"]
        assert _post(client, body, authorization=f"Bearer {KEY}").status_code == 200
        assert client.get("/v1/models").status_code == 401
        assert client.get("/health").status_code == 200  # liveness probes need no key
    assert KEY not in caplog.text


def test_concurrent_requests_are_batched_and_answered_each_their_own(run_dir):
    import httpx

    app = create_app(load_embedder(run_dir), Limits(max_wait_ms=50))
    single = {}

    async def go() -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for dim in (12, 6):
                answer = await c.post("/v1/embeddings", json={"model": "tiny", "input": TEXTS, "dimensions": dim})
                single[dim] = np.array([d["embedding"] for d in answer.json()["data"]])
            before = app.state.batcher.batches
            requests = [
                c.post("/v1/embeddings", json={"model": "tiny", "input": TEXTS[i % 3 :], "dimensions": (12, 6)[i % 2]})
                for i in range(16)
            ]
            answers = await asyncio.gather(*requests)
            app.state.batches_used = app.state.batcher.batches - before
            return [a.json() for a in answers]

    answers = asyncio.run(go())
    assert app.state.batches_used < 16  # several requests shared one encoder call
    for i, answer in enumerate(answers):
        got = np.array([d["embedding"] for d in answer["data"]])
        np.testing.assert_allclose(got, single[(12, 6)[i % 2]][i % 3 :], atol=1e-5)


def test_an_export_folder_and_a_single_model_folder_are_served(run_dir):
    export = load_embedder(run_dir / "export")
    assert export.name == "tiny" and export.dims == [12, 6]
    one = load_embedder(run_dir / "export" / "dim-6")
    assert one.name == "dim-6" and one.dims == [6]
    with pytest.raises(JasperError, match="neither a jasper run"):
        load_embedder(run_dir / "student" / "backbone")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_openai_client_gets_the_sentence_transformers_vectors(run_dir):
    import uvicorn
    from sentence_transformers import SentenceTransformer

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(load_embedder(run_dir), api_key=KEY), port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY)
        for dim in (6, 12):
            out = client.embeddings.create(model="tiny", input=TEXTS, dimensions=dim)  # the client asks for base64
            found = np.array([d.embedding for d in out.data])
            model = SentenceTransformer(str(run_dir / "export" / f"dim-{dim}"), device="cpu")
            expected = model.encode(TEXTS, normalize_embeddings=True)
            assert found.shape == (3, dim) and np.abs(found - expected).max() <= 1e-5
        floats = client.embeddings.create(model="tiny", input="music", dimensions=6, encoding_format="float")
        assert len(floats.data[0].embedding) == 6 and out.usage.prompt_tokens > 0
        with pytest.raises(openai.BadRequestError, match="valid: \\[12, 6\\]"):
            client.embeddings.create(model="tiny", input="music", dimensions=64)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong").embeddings.create(
                model="tiny", input="music"
            )
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--api-key-env", "JASPER_TEST_NO_SUCH_KEY"), "the environment variable JASPER_TEST_NO_SUCH_KEY is not set"),
        (("--backend", "tensorrt"), "--backend tensorrt: choose one of auto, torch, onnx, onnx-o3, onnx-int8"),
        (("--backend", "onnx"), "run `jasper export RUN --format onnx` first"),
    ],
)
def test_serve_command_refuses_bad_settings_in_one_line(run_dir, args, said):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "JASPER_TEST_NO_SUCH_KEY"} | {"HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "jasper", "serve", str(run_dir), "--port", str(_free_port()), *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert said in " ".join(done.stderr.split())
