"""`benchmarks/serve.py --abuse`: attackers beside a probe client, against `jasper serve` under a 256-descriptor limit.

Attackers: chunked 600 MB bodies (raw sockets, `Transfer-Encoding: chunked`), four concurrent maximum-size requests
(just under the body limit, in a loop), 300 idle sockets kept open (reopened when the server closes them), and a
stream of malformed requests (bad JSON, a lone surrogate, an integer of thousands of digits, JSON nested 100,000
deep, bad UTF-8, token arrays, unknown heads). The probe calls /health and embeds one short text every 100 ms.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

IDLE_SOCKETS = 300
FD_LIMIT = 256
CHUNK = b"x" * 2**20
MALFORMED_BODIES: list[bytes] = [
    b'{"model": ',
    b'{"model": "M", "input": ["\\ud800 lone surrogate"]}',
    b'{"model": "M", "input": "a text", "dimensions": ' + b"9" * 5000 + b"}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"model": "M", "input": "\xff\xfe not utf-8"}',
    b'{"model": "M", "input": [[101, 2023, 102]]}',
    b'{"model": "M", "input": "a text", "dimensions": 7}',
    b'{"model": "M", "input": []}',
]


async def chunked_flood(port: int, deadline: float, statuses: Counter) -> None:
    """Send 600 MB bodies in 1 MB chunks until the server answers or hangs up."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
            for _ in range(600):
                writer.write(f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n")
                await writer.drain()
                if reader.at_eof() or time.monotonic() > deadline:
                    break
            line = await asyncio.wait_for(reader.readline(), 10)
            statuses[line.split(b" ")[1].decode() if line.count(b" ") >= 2 else "closed"] += 1
            writer.close()
        except (OSError, TimeoutError, IndexError):
            statuses["closed"] += 1
            await asyncio.sleep(0.1)


async def post_loop(port: int, bodies: Any, deadline: float, statuses: Counter, pause: float) -> None:
    """Post `bodies()` to /v1/embeddings until the deadline, counting the answers' statuses."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
        while time.monotonic() < deadline:
            try:
                answer = await http.post(
                    "/v1/embeddings", content=bodies(), headers={"content-type": "application/json"}
                )
                statuses[str(answer.status_code)] += 1
            except httpx.TransportError:
                statuses["dropped"] += 1
            await asyncio.sleep(pause)


async def max_size(port: int, name: str, deadline: float, statuses: Counter) -> None:
    """Requests just under the 8 MiB body limit: 1,900 texts of ~4,000 characters."""
    text = ("a long text about nothing in particular " * 100)[:4000]
    body = json.dumps({"model": name, "input": [text] * 1900}).encode()
    await post_loop(port, lambda: body, deadline, statuses, 0.0)


async def idle_sockets(port: int, deadline: float, opened: Counter) -> None:
    """Keep IDLE_SOCKETS connections open that never send a byte."""
    held: list[asyncio.StreamWriter] = []
    while time.monotonic() < deadline:
        held = [w for w in held if not w.is_closing() and not w.transport.is_closing()]
        while len(held) < IDLE_SOCKETS and time.monotonic() < deadline:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
                held.append(writer)
                opened["opened"] += 1
            except (OSError, TimeoutError):
                opened["refused"] += 1
                break
        await asyncio.sleep(0.5)
    for writer in held:
        writer.close()


async def malformed(port: int, name: str, deadline: float, statuses: Counter) -> None:
    """A stream of malformed requests, each of which must get a 4xx."""
    rng = random.Random(0)
    model = json.dumps(name).encode()
    await post_loop(port, lambda: rng.choice(MALFORMED_BODIES).replace(b'"M"', model), deadline, statuses, 0.02)


async def probe(
    port: int, name: str, queries: list[str], deadline: float, timings: list[float], fails: Counter
) -> None:
    """Every 100 ms: /health, then one short text embedded; the time of each, in ms."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        i = 0
        while time.monotonic() < deadline:
            embed = {"model": name, "input": queries[i % len(queries)]}
            for method, path, body in (("GET", "/health", None), ("POST", "/v1/embeddings", embed)):
                began = time.perf_counter()
                try:
                    answer = await http.request(method, path, json=body)
                    if answer.status_code != 200:
                        fails[str(answer.status_code)] += 1
                except httpx.TransportError:
                    fails["transport"] += 1
                timings.append(1000 * (time.perf_counter() - began))
            i += 1
            await asyncio.sleep(0.1)


async def attack(port: int, name: str, queries: list[str], seconds: float, pid: int, rss_mb: Any) -> dict[str, Any]:
    """Every attacker and the probe at once; the server's RSS polled throughout."""
    deadline = time.monotonic() + seconds
    counts = {k: Counter() for k in ("chunked", "max_size", "idle", "malformed", "probe_failures")}
    timings: list[float] = []
    peak = [0.0]

    async def watch() -> None:
        while time.monotonic() < deadline:
            peak[0] = max(peak[0], rss_mb(pid))
            await asyncio.sleep(0.5)

    probing = asyncio.ensure_future(probe(port, name, queries, deadline, timings, counts["probe_failures"]))
    await asyncio.sleep(1)  # the probe holds its connection before the descriptors run short
    await asyncio.gather(
        probing,
        watch(),
        idle_sockets(port, deadline, counts["idle"]),
        *(chunked_flood(port, deadline, counts["chunked"]) for _ in range(2)),
        *(max_size(port, name, deadline, counts["max_size"]) for _ in range(4)),
        *(malformed(port, name, deadline, counts["malformed"]) for _ in range(2)),
    )
    timings.sort()
    return {"timings": timings, "peak": peak[0], **{k: dict(v) for k, v in counts.items()}}


def measure_abuse(args: Any, queries: list[str], start_server: Any, rss_mb: Any) -> dict[str, Any]:
    """Start the server under the descriptor limit, attack it, report what the probe saw and what it cost."""
    log = Path(args.log)
    server, port, info = start_server(args.run, log, fd_limit=FD_LIMIT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for query in queries[:20]:  # warm up, then the idle footprint
                http.post("/v1/embeddings", json={"model": info["id"], "input": query})
        time.sleep(2)
        idle_rss, log_before = rss_mb(server.pid), log.stat().st_size
        seen = asyncio.run(attack(port, info["id"], queries, args.seconds, server.pid, rss_mb))
        time.sleep(2)
        alive = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    timings = seen.pop("timings")
    statuses = Counter()
    for key in ("chunked", "max_size", "malformed"):
        statuses.update(seen[key])
    return {
        "probe_requests": len(timings),
        "probe_p50_ms": round(statistics.median(timings), 1),
        "probe_p99_ms": round(timings[int(0.99 * (len(timings) - 1))], 1),
        "probe_failures": seen["probe_failures"],
        "rss_idle_mb": round(idle_rss, 1),
        "rss_peak_mb": round(seen["peak"], 1),
        "rss_peak_over_idle": round(seen["peak"] / idle_rss, 2),
        "server_5xx": sum(c for s, c in statuses.items() if s.startswith("5")),
        "log_growth_bytes": log.stat().st_size - log_before,
        "alive_after": alive,
        "chunked_600mb": seen["chunked"],
        "max_size_requests": seen["max_size"],
        "malformed": seen["malformed"],
        "idle_sockets": seen["idle"],
        "fd_limit": FD_LIMIT,
        "seconds": args.seconds,
        "backend": info.get("backend"),
        "run": str(args.run),
    }
