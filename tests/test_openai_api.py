"""The OpenAI-compatible API teacher against a local server that injects 429s, 500s, timeouts and bad bodies."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from jasper.config import TeacherConfig
from jasper.data.store_writer import compute_teacher
from jasper.errors import JasperError
from jasper.teachers.openai_api import ApiError

import helpers

DIM = 6


class FakeEmbeddings:
    """State of the fake API: a script of failures to inject, and every input it was paid for."""

    def __init__(self, script: list[str] | None = None) -> None:
        self.script = list(script or [])
        self.paid: Counter[str] = Counter()
        self.requests = 0
        self.lock = threading.Lock()

    def next_action(self) -> str:
        with self.lock:
            self.requests += 1
            return self.script.pop(0) if self.script else "ok"


def _handler(state: FakeEmbeddings) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            action = state.next_action()
            if action == "timeout":
                threading.Event().wait(1.5)  # the client gives up after timeout_s=0.5
                return self._send(200, b"{}")
            if action in ("429", "500"):
                return self._send(int(action), b'{"error": "try later"}', {"Retry-After": "0"})
            if action == "echo":  # a server that echoes the request, headers included, in its error body
                return self._send(400, json.dumps({"error": "bad request", "saw": dict(self.headers)}).encode())
            if action == "malformed":
                return self._send(200, b'{"data": [{"index": 0, "embedding": "oops"')
            inputs = body["input"]
            vectors = helpers.hash_teacher(inputs, body.get("dimensions", DIM), "api")
            with state.lock:
                state.paid.update(inputs)
            data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
            data.reverse()  # the API may answer out of order: the index field decides
            return self._send(200, json.dumps({"object": "list", "data": data, "model": body["model"]}).encode())

        def _send(self, code: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client timed out
                self.wfile.write(payload)

    return Handler


@pytest.fixture()
def server():
    state = FakeEmbeddings()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _config(base: str, **extra: object) -> TeacherConfig:
    values = {"name": "api", "backend": "openai-api", "model": "fake-embed", "api_base": base, "batch_size": 8}
    values |= {"timeout_s": 0.5, "max_retries": 6, "api_key_env": "JASPER_TEST_KEY"}
    return TeacherConfig(**(values | extra))


def test_every_row_stored_once_despite_injected_failures(server, tmp_path):
    state, base = server
    state.script = ["429", "500", "timeout", "ok", "429", "ok", "500"]
    texts = helpers.sentences(60)
    folder = compute_teacher(tmp_path, _config(base), texts, "float32", shard_size=16)
    stored = np.load(folder / "vectors.npy")
    expected = helpers.hash_teacher(texts, DIM, "api")
    np.testing.assert_allclose(stored, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-5)
    assert state.paid == Counter(texts)  # every text paid for exactly once
    assert state.requests == 8 + 5  # 8 batches of 8, plus 5 failed attempts


def test_dimensions_are_sent(server, tmp_path):
    _, base = server
    folder = compute_teacher(tmp_path, _config(base, dimensions=3), helpers.sentences(5), "float32")
    assert np.load(folder / "vectors.npy").shape == (5, 3)


def test_malformed_answer_is_a_clear_error(server, tmp_path):
    state, base = server
    state.script = ["malformed"]
    with pytest.raises(ApiError, match="malformed embeddings response"):
        compute_teacher(tmp_path, _config(base), helpers.sentences(4))


def test_gives_up_after_max_retries(server, tmp_path):
    state, base = server
    state.script = ["500"] * 10
    with pytest.raises(ApiError, match="still failing after 3 attempts"):
        compute_teacher(tmp_path, _config(base, max_retries=2), helpers.sentences(4))


def test_rate_limit_spaces_requests(server, tmp_path):
    import time

    _, base = server
    began = time.monotonic()
    compute_teacher(tmp_path, _config(base, requests_per_minute=600, batch_size=2), helpers.sentences(8), "float32")
    assert time.monotonic() - began >= 3 * 0.1  # 4 requests, at least 0.1 s apart


@pytest.mark.e2e
def test_resume_after_kill_pays_nothing_twice(server, tmp_path):
    state, base = server
    texts = helpers.sentences(48)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        from jasper.config import TeacherConfig
        from jasper.data.store_writer import compute_teacher
        texts = open({str(corpus)!r}, encoding="utf-8").read().splitlines()
        config = TeacherConfig(name="api", backend="openai-api", model="fake-embed", api_base={base!r}, batch_size=8)
        compute_teacher({str(tmp_path / "store")!r}, config, texts, "float32", 16)
    """)
    env = {**os.environ, "JASPER_KILL_AFTER_SHARDS": "2"}
    assert subprocess.run([sys.executable, "-c", script], env=env, capture_output=True).returncode == -9
    assert sum(state.paid.values()) == 32  # two shards of 16 were paid and stored
    compute_teacher(tmp_path / "store", _config(base), texts, "float32", shard_size=16)
    assert state.paid == Counter(texts)


def test_missing_api_base_is_an_error(tmp_path):
    with pytest.raises(JasperError, match="needs api_base"):
        compute_teacher(tmp_path, TeacherConfig(name="api", backend="openai-api", model="m"), ["a text"])


def test_concurrent_requests_keep_order(server, tmp_path):
    state, base = server
    state.script = ["429", "ok", "500"]
    texts = helpers.sentences(40)
    folder = compute_teacher(tmp_path, _config(base, workers=3, batch_size=4), texts, "float32", shard_size=40)
    expected = helpers.hash_teacher(texts, DIM, "api")
    np.testing.assert_allclose(
        np.load(folder / "vectors.npy"), expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-5
    )
    assert state.paid == Counter(texts)


def test_error_bodies_never_show_the_key(server, tmp_path, monkeypatch):
    state, base = server
    monkeypatch.setenv("JASPER_TEST_KEY", "sk-very-secret-123")
    state.script = ["echo"]
    with pytest.raises(ApiError) as caught:
        compute_teacher(tmp_path, _config(base), helpers.sentences(4))
    assert "HTTP 400" in str(caught.value) and "sk-very-secret-123" not in str(caught.value)
    assert "***" in str(caught.value)
