"""`jasper serve` measured from the outside, on loopback, in three ways.

Load (the default): 32 concurrent clients for 60 s. The server (`jasper serve RUN`, a subprocess, its default
backend) serves every head of the run. Each client loops: a request of 1-64 texts (drawn from the run's corpus:
real lengths) at a random head, `encoding_format` base64 (what the `openai` client asks for) or float, and a share
of malformed requests (bad JSON, a dimension that is no head, empty input, an unknown model, token arrays, a wrong
type), each of which must get its 4xx. First, with no server running, the same texts are encoded in-process
(`Student.encode`, batch 64, FC1) for the reference rate.

Latency (`--clients 1`): one client sends one text per request, back to back: first short queries (sentences of
5-15 words from the corpus, `input_type` query), then documents that fill the model's length (`input_type` document:
SciFact's longest abstracts from `--documents`, else the corpus's longest texts); p50 and p99 of each, beside the
in-process latency of one text through `jasper.load_model(RUN).encode`.

Abuse (`--abuse`): beside a probe client that calls /health and embeds one short text every 100 ms, attackers send
chunked 600 MB bodies, four concurrent maximum-size requests, 300 idle sockets (the server under a 256-file
descriptor limit) and a stream of malformed requests. Reports the probe's p99, the server's RSS against its idle
RSS, 5xx answers, and how much the server's log grew.

    python benchmarks/serve.py runs/quickstart [--seconds 60] [--clients 32 | --clients 1 | --abuse]
Writes benchmarks/results/serve.json (load), serve_latency.json (one client) or serve_abuse.json.
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

RESULTS = Path(__file__).parent / "results"
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


def start_server(run: Path, log_file: Path, fd_limit: int | None = None) -> tuple[subprocess.Popen, int, dict]:
    """`jasper serve RUN` in a subprocess on a free port, its log in `log_file`; (process, port, /v1/models' entry)."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def limit_fds() -> None:
        if fd_limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    log = log_file.open("w")
    command = [sys.executable, "-m", "jasper", "serve", str(run), "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=limit_fds)
    for _ in range(600):
        try:
            info = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).json()["data"][0]
            return server, port, info
        except (httpx.TransportError, KeyError, ValueError):
            time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"the server did not start (see {log_file})")


def rss_mb(pid: int) -> float:
    """A process's resident set size, MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def short_queries(texts: list[str]) -> list[str]:
    """Sentences of 5 to 15 words: what a retrieval service embeds per request."""
    return [t for t in texts if 5 <= len(t.split()) <= 15]


def measure_load(args: argparse.Namespace, texts: list[str]) -> dict:
    """32 clients (by default), real request sizes, a share malformed."""
    reference = in_process_rate(args.run, texts[:2048])
    print(f"in-process encode: {reference:.1f} texts/s")
    server, port, info = start_server(args.run, Path(args.log))
    try:
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
    return {
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
        "backend": info.get("backend"),
        "clients": args.clients,
        "seconds": round(seconds, 1),
        "run": str(args.run),
        "device": "cpu",
    }


def long_documents(folder: Path | None, texts: list[str], count: int = 200) -> tuple[list[str], str]:
    """Documents that fill the model's length: SciFact abstracts when `folder` holds BEIR's SciFact, else the run
    corpus's longest texts. (documents, where they come from)"""
    if folder is not None and (folder / "corpus.jsonl").is_file():
        from jasper.eval.beir import read_beir_folder

        documents = list(read_beir_folder(folder, []).documents.values())
        source = f"SciFact abstracts ({folder})"
    else:
        documents, source = list(texts), "the run corpus's longest texts"
    return sorted(documents, key=len, reverse=True)[:count], source


def one_text_latency(port: int, model_id: str, inputs: list[str], role: str, seconds: float) -> list[float]:
    """Milliseconds of each request of one text read in `role`, one client, back to back (the first 20 warm up)."""
    timings: list[float] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        deadline = time.monotonic() + seconds
        for i, text in enumerate(inputs * 1000):
            body = {"model": model_id, "input": text, "encoding_format": "base64", "input_type": role}
            began = time.perf_counter()
            answer = http.post("/v1/embeddings", json=body)
            if i >= 20:
                timings.append(1000 * (time.perf_counter() - began))
            if answer.status_code != 200:
                raise SystemExit(f"status {answer.status_code}: {answer.text[:200]}")
            if time.monotonic() > deadline:
                break
    return timings


def percentiles(timings: list[float]) -> dict[str, float]:
    """Count, p50 and p99 of `timings` (ms)."""
    timings = sorted(timings)
    return {
        "requests": len(timings),
        "p50_ms": round(statistics.median(timings), 2),
        "p99_ms": round(timings[int(0.99 * (len(timings) - 1))], 2),
    }


def measure_latency(args: argparse.Namespace, texts: list[str]) -> dict:
    """One client: one short query per request, then one document per request that fills the model's length; and
    the same texts one at a time in-process through `jasper.load_model`."""
    from jasper import load_model

    queries = short_queries(texts)
    documents, source = long_documents(args.documents, texts)
    from jasper.encode import token_counts

    model = load_model(args.run)
    student = model.student
    tokens = token_counts(student.tokenizer, student.inputs(documents, "document"))
    in_process: dict[str, list[float]] = {"query": [], "document": []}
    for role, inputs in (("query", queries[:500]), ("document", documents)):
        for text in inputs[:20]:
            model.encode([text], prompt_name=role)  # warm up
        for text in inputs:
            began = time.perf_counter()
            model.encode([text], prompt_name=role)
            in_process[role].append(1000 * (time.perf_counter() - began))
    max_length = student.max_seq_length
    del model, student
    server, port, info = start_server(args.run, Path(args.log))
    try:
        served = {role: one_text_latency(port, info["id"], inputs, role, args.seconds / 2)
                  for role, inputs in (("query", queries), ("document", documents))}  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    median_tokens = int(statistics.median(min(n, max_length) for n in tokens))
    queries_part = {**percentiles(served["query"]), "in_process": percentiles(in_process["query"])}
    documents_part = {**percentiles(served["document"]), "in_process": percentiles(in_process["document"])}
    return {
        "queries": {**queries_part, "words_per_query": "5-15"},
        "documents": {
            **documents_part,
            "source": source,
            "max_seq_length": max_length,
            "tokens_read_median": median_tokens,
        },
        "backend": info.get("backend"),
        "run": str(args.run),
        "device": "cpu",
    }


def main() -> None:
    """Run the mode asked for and write its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--abuse", action="store_true", help="attackers beside a probe client (see above)")
    parser.add_argument("--malformed", type=float, default=0.1, help="share of malformed requests")
    parser.add_argument("--log", default="serve-benchmark.log", help="the server's log")
    parser.add_argument(
        "--documents",
        type=Path,
        default=Path("../shared/data/scifact"),
        help="a BEIR folder whose longest documents --clients 1 sends (else the corpus's longest)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    corpus = args.run / "corpus.txt"
    texts = [t for t in corpus.read_text(encoding="utf-8").splitlines() if t.strip()]
    if args.abuse:
        from serve_abuse import measure_abuse

        result, name = measure_abuse(args, short_queries(texts), start_server, rss_mb), "serve_abuse.json"
    elif args.clients == 1:
        result, name = measure_latency(args, texts), "serve_latency.json"
    else:
        result, name = measure_load(args, texts), "serve.json"
    print(json.dumps(result, indent=1))
    out = Path(args.out or RESULTS / name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
