"""The server under abuse: bodies limited while they are read, every bad input a 4xx naming the field, a bounded
queue answering 429 with Retry-After, fair batches, work for a vanished client dropped, token counting off the
event loop, slow and silent connections closed, and repeated log lines held back."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from jasper.config import StudentConfig
from jasper.models.student import build_student, save_student
from jasper.serve import Limits, load_embedder
from jasper.serve.app import create_app
from jasper.serve.batching import FAIR_AFTER_S, Batcher, Overloaded, clip
from jasper.serve.embedders import FolderEmbedder
from jasper.serve.guards import _RateLimit
from test_serve import _free_port


@pytest.fixture(scope="module")
def run_dir(tiny_bert, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("guards") / "tiny-run"
    save_student(build_student(StudentConfig(model=str(tiny_bert), heads=[12, 6], max_seq_length=8)), run / "student")
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "tiny"}))
    return run


@pytest.fixture(scope="module")
def client(run_dir):
    limits = Limits(max_inputs=10, max_body_bytes=20_000, max_input_chars=500, max_queue_texts=30)
    with TestClient(create_app(load_embedder(run_dir), limits)) as client:
        yield client


def _post(client, content: bytes, **headers):
    return client.post("/v1/embeddings", content=content, headers={"content-type": "application/json", **headers})


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        (b'{"model": "tiny", "input": ["\\ud800 lone"]}', 400, "'input' text 0 is not valid Unicode"),
        (b'{"model": "tiny", "input": "a", "dimensions": ' + b"9" * 5000 + b"}", 400, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, 413, "the limit is 20,000"),
        (b"[" * 1_900 + b"]" * 1_900, 400, "nested too deeply"),
        (b'{"model": "tiny", "input": "\xff\xfe"}', 400, "not valid JSON"),
        (json.dumps({"model": "tiny", "input": "x" * 501}).encode(), 400, "over 500 characters"),
        (
            json.dumps({"model": "tiny", "input": "a", "dimensions": 10**30}).encode(),
            400,
            "'dimensions' 100000000000... is not a head",
        ),
    ],
)
def test_every_bad_input_is_a_4xx_naming_it(client, body, status, said):
    answer = _post(client, body)
    assert answer.status_code == status, answer.text
    assert said in answer.json()["error"]["message"]


def test_a_chunked_body_is_cut_off_at_the_limit(client):
    def chunks():
        for _ in range(100):  # 100 x 1 KB, no Content-Length: the limit applies as it arrives
            yield b"x" * 1024

    answer = client.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "over the limit of 20,000 bytes" in answer.json()["error"]["message"]


class _Recorder:
    """A fake embedder that records each batch and the thread that embedded and counted it."""

    name, dims, max_length, backend = "fake", [4], 8, "fake"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[int] = set()

    def embed_each(self, texts: list[str], heads: list[int], roles: list[str]) -> dict[int, np.ndarray]:
        self.batches.append(list(texts))
        self.threads.add(threading.get_ident())
        return {4: np.ones((len(texts), 4), dtype=np.float32)}

    def token_counts(self, texts: list[str], roles: list[str]) -> list[int]:
        self.threads.add(threading.get_ident())
        return [len(t.split()) for t in texts]


def _batcher(**limits) -> tuple[Batcher, _Recorder]:
    fake = _Recorder()
    return Batcher(fake, Limits(max_wait_ms=0, **limits)), fake  # type: ignore[arg-type]


def test_fair_batches_cancelled_work_and_the_bounded_queue():
    async def scenario() -> tuple[list[list[str]], set[int], int]:
        batcher, fake = _batcher(max_batch=4, max_queue_texts=12)
        big = batcher.submit([f"big {i}" for i in range(9)], 4)
        gone = batcher.submit(["never computed"], 4)
        small = batcher.submit(["short query"], 4)
        gone.cancel()  # its client went away before the worker got to it
        with pytest.raises(Overloaded):
            batcher.submit([f"over {i}" for i in range(3)], 4)  # 9 + 1 + 1 + 3 > 12
        worker = asyncio.create_task(batcher.run())
        result = await small
        assert result.vectors.shape == (1, 4) and result.token_counts == [2]
        assert (await big).vectors.shape == (9, 4)
        worker.cancel()
        return fake.batches, fake.threads, batcher.queued_texts

    batches, threads, left = asyncio.run(scenario())
    assert batches[0][0] == "short query"  # the short request first: it waits behind no big one
    assert not any("never computed" in batch for batch in batches)
    assert all(len(batch) <= 4 for batch in batches) and sum(map(len, batches)) == 10
    assert threading.get_ident() not in threads and left == 0  # embedding and token counting off the event loop


def test_a_request_that_has_waited_goes_before_newer_shorter_ones():
    async def scenario() -> list[list[str]]:
        batcher, fake = _batcher(max_batch=4)
        big = batcher.submit([f"big {i}" for i in range(6)], 4)
        batcher.jobs[0].since -= 2 * FAIR_AFTER_S  # it has waited: shorter newcomers no longer go first
        small = batcher.submit(["short query"], 4)
        worker = asyncio.create_task(batcher.run())
        await small, await big
        worker.cancel()
        return fake.batches

    batches = asyncio.run(scenario())
    assert batches[0] == [f"big {i}" for i in range(4)]


def _word_tokenizer(texts: list[str], **_: object) -> dict[str, list[list[int]]]:
    return {"input_ids": [[0] * len(t.split()) for t in texts]}


def test_each_text_goes_through_its_own_heads_model_only():
    """Exported heads are one model per dim: a batch mixing heads runs each text through its own head's model."""
    seen: dict[int, list[str]] = {8: [], 2: []}

    def model(dim: int):
        def encode(texts: list[str], role: str) -> np.ndarray:
            seen[dim].extend(texts)
            return np.full((len(texts), dim), float(dim), dtype=np.float32)

        return encode

    async def scenario() -> tuple[np.ndarray, np.ndarray]:
        folders = FolderEmbedder({8: model(8), 2: model(2)}, _word_tokenizer, 8, "fake")
        batcher = Batcher(folders, Limits(max_wait_ms=0))
        wide = batcher.submit(["w1", "w2", "w3"], 8)
        narrow = batcher.submit(["n1"], 2)
        worker = asyncio.create_task(batcher.run())
        out = (await wide).vectors, (await narrow).vectors
        worker.cancel()
        assert batcher.batches == 1
        return out

    wide, narrow = asyncio.run(scenario())
    assert seen == {8: ["w1", "w2", "w3"], 2: ["n1"]}  # one batch, no text through both models
    assert wide.shape == (3, 8) and (wide == 8).all() and narrow.shape == (1, 2) and (narrow == 2).all()


def test_a_huge_text_is_clipped_before_it_is_tokenised():
    text = "word " * 200_000
    assert len(clip(text, 8)) == 64 * 8 and clip("short", 8) == "short"


def test_an_overloaded_queue_answers_429_with_retry_after(run_dir):
    limits = Limits(max_queue_texts=2)
    with TestClient(create_app(load_embedder(run_dir), limits)) as client:
        answer = _post(client, json.dumps({"model": "tiny", "input": ["a", "b", "c"]}).encode())
    assert answer.status_code == 429 and answer.headers["retry-after"] == "1"
    assert "the server is busy" in answer.json()["error"]["message"]


def test_repeated_log_lines_are_held_back():
    limiter = _RateLimit()
    records = [logging.LogRecord("asyncio", logging.ERROR, "f", 1, "accept() out of resources", None, None)]
    records += [logging.LogRecord("asyncio", logging.ERROR, "f", 1, "accept() out of resources", None, None)
                for _ in range(99)]  # fmt: skip
    assert sum(limiter.filter(r) for r in records) == 1


@pytest.mark.e2e
def test_silent_and_slow_connections_are_closed(run_dir):
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "jasper", "serve", str(run_dir), "--port", str(port), "--idle-timeout-s", "1",
               "--request-timeout-s", "2"]  # fmt: skip
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        silent = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n")  # headers that never end
        began = time.monotonic()
        assert silent.recv(100) == b"" and time.monotonic() - began < 5  # closed by the server: idle
        for _ in range(4):  # a trickle keeps it busy, but the request deadline closes it
            time.sleep(0.5)
            try:
                slow.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        slow.settimeout(5)
        assert slow.recv(100) in (b"",) and time.monotonic() - began < 8
    finally:
        server.terminate()
        server.wait(timeout=30)
