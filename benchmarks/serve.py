"""`jasper serve` under load: 32 concurrent clients on loopback for 60 s, against in-process encoding.

The server (`jasper serve RUN`, a subprocess) serves every head of the run. Each client loops: a request of
1-64 texts (drawn from the run's corpus: real lengths) at a random head, `encoding_format` base64 (what the
`openai` client asks for) or float, and a share of malformed requests (bad JSON, a dimension that is no head,
empty input, an unknown model, token arrays, a wrong type), each of which must get its 4xx. First, with no
server running, the same texts are encoded in-process (`Student.encode`, batch 64, FC1) for the reference
rate.

    python benchmarks/serve.py runs/quickstart [--seconds 60] [--clients 32]
Writes benchmarks/results/serve.json: {requests, errors_by_status, p50_ms, p99_ms, texts_per_s, ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

RESULTS = Path(__file__).parent / "results" / "serve.json"
# (what is wrong, the body, the status it must get)
MALFORMED = [
    ("bad JSON", b'{"model": ', 400),
    ("no such head", {"input": ["a text"], "dimensions": 7}, 400),
    ("empty input", {"input": []}, 400),
    ("unknown model", {"input": ["a text"], "model": "nope"}, 404),
    ("token arrays", {"input": [[101, 2023, 102]]}, 400),
    ("wrong type", {"input": "a text", "dimensions": "64"}, 400),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def in_process_rate(run: Path, texts: list[str]) -> float:
    """Texts/s of the run's student encoding `texts` in this process (FC1, batch 64), after a warm-up."""
    from jasper.models.student import load_student

    student = load_student(run / "student")
    fc1 = student.head_dims[0]
    student.encode(texts[:256], [fc1])
    began = time.perf_counter()
    student.encode(texts, [fc1], batch_size=64)
    return len(texts) / (time.perf_counter() - began)


async def client(
    http: httpx.AsyncClient,
    name: str,
    dims: list[int],
    texts: list[str],
    share: float,
    deadline: float,
    seed: int,
    log: list[tuple[int, float, int, str]],
) -> None:
    """One client's loop until the deadline; appends (status, ms, texts embedded, malformed kind) per request."""
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        kind = ""
        if rng.random() < share:
            kind, body, _ = rng.choice(MALFORMED)
            content = body if isinstance(body, bytes) else json.dumps({"model": name, **body}).encode()
            n = 0
        else:
            n = rng.randint(1, 64)
            start = rng.randrange(len(texts) - n)
            body = {
                "model": name,
                "input": texts[start : start + n],
                "dimensions": rng.choice(dims),
                "encoding_format": rng.choice(["base64", "base64", "float"]),
            }
            content = json.dumps(body).encode()
        began = time.perf_counter()
        try:
            answer = await http.post("/v1/embeddings", content=content, headers={"content-type": "application/json"})
            status = answer.status_code
            if status == 200 and len(answer.json()["data"]) != n:
                status = -2  # a wrong answer
        except httpx.TransportError:
            status = -1  # a dropped connection
        log.append((status, 1000 * (time.perf_counter() - began), n if status == 200 else 0, kind))


async def load(port: int, name: str, dims: list[int], texts: list[str], args: argparse.Namespace) -> tuple[list, float]:
    """Run every client; returns the request log and the seconds it took."""
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=120) as http:
        log: list[tuple[int, float, int, str]] = []
        began = time.monotonic()
        deadline = began + args.seconds
        await asyncio.gather(
            *(client(http, name, dims, texts, args.malformed, deadline, seed, log) for seed in range(args.clients))
        )
        return log, time.monotonic() - began


def main() -> None:
    """Measure in-process encoding, start the server, load it, write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--malformed", type=float, default=0.1, help="share of malformed requests")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    corpus = args.run / "corpus.txt"
    texts = [t for t in corpus.read_text(encoding="utf-8").splitlines() if t.strip()]
    reference = in_process_rate(args.run, texts[:2048])
    print(f"in-process encode: {reference:.1f} texts/s")
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "jasper", "serve", str(args.run), "--port", str(port)], env=env)
    try:
        for _ in range(600):
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).json()["data"][0]
                break
            except (httpx.TransportError, KeyError, ValueError):
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not start")
        log, seconds = asyncio.run(load(port, info["id"], info["dimensions"], texts, args))
        batches = httpx.get(f"http://127.0.0.1:{port}/health").json()["batches"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    statuses = Counter(str(status) for status, *_ in log)
    latencies = sorted(ms for status, ms, _, kind in log if status == 200)
    embedded = sum(n for *_, n, _ in log)
    malformed = [(kind, status) for status, _, _, kind in log if kind]
    expected = {kind: status for kind, _, status in MALFORMED}
    result = {
        "requests": len(log),
        "errors_by_status": {s: c for s, c in sorted(statuses.items()) if s != "200"},
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 1),
        "texts_per_s": round(embedded / seconds, 1),
        "in_process_texts_per_s": round(reference, 1),
        "share_of_in_process": round(embedded / seconds / reference, 3),
        "malformed_sent": len(malformed),
        "malformed_with_their_4xx": sum(status == expected[kind] for kind, status in malformed),
        "server_5xx": sum(c for s, c in statuses.items() if s.startswith("5")),
        "dropped_connections": statuses.get("-1", 0),
        "wrong_answers": statuses.get("-2", 0),
        "encoder_batches": batches,
        "clients": args.clients,
        "seconds": round(seconds, 1),
        "run": str(args.run),
        "device": "cpu",
    }
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
