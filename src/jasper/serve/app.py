"""The HTTP app: FastAPI on uvicorn (the standard ASGI pair: request validation, OpenAPI docs at /docs, and the
server the Python serving stacks use), guarded against slow, huge, malformed and abandoned requests."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

try:  # the `serve` extra; FastAPI resolves the handlers' annotations from this module's names
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.requests import ClientDisconnect
except ImportError as missing:  # pragma: no cover - only without the extra
    raise ImportError(
        "`jasper serve` needs the serve extra: pip install 'jasper-distill[serve]' (fastapi, uvicorn)"
    ) from missing

from jasper.errors import JasperError
from jasper.serve.batching import Batcher, Overloaded, Result
from jasper.serve.embedders import Embedder, load_embedder
from jasper.serve.guards import GuardedH11Protocol, limit_log_rate
from jasper.serve.limits import Limits
from jasper.serve.protocol import Parsed, RequestError, encode_vector, error_body, parse_request

logger = logging.getLogger(__name__)
RETRY_AFTER_S = 1


def refuse(error: RequestError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The OpenAI error body with the error's status."""
    body = error_body(error.status, error.message, error.param, error.code)
    return JSONResponse(body, status_code=error.status, headers=headers)


async def read_body(request: Request, limits: Limits) -> bytes:
    """The body, read with its size limit enforced as it arrives (declared or chunked) and a time limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise RequestError(413, f"the request body is {int(declared):,} bytes; the limit is {limits.max_body_bytes:,}")

    async def chunks() -> bytes:
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise RequestError(413, f"the request body is over the limit of {limits.max_body_bytes:,} bytes")
            parts.append(chunk)
        return b"".join(parts)

    try:
        return await asyncio.wait_for(chunks(), limits.request_timeout_s)
    except (TimeoutError, asyncio.TimeoutError):  # one class from Python 3.11, two before
        raise RequestError(408, f"the request body did not arrive within {limits.request_timeout_s:g} s") from None


async def until_disconnect(request: Request) -> None:
    """Returns when the client goes away (the body is already read: the next ASGI message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(embedder: Embedder, limits: Limits | None = None, api_key: str | None = None) -> Any:
    """The FastAPI app serving `embedder` (a bearer `api_key` guards /v1/* when given)."""
    limits = limits or Limits()
    batcher = Batcher(embedder, limits)
    parsing = ThreadPoolExecutor(2, thread_name_prefix="parse")  # large bodies parse off the event loop
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()
        batcher.executor.shutdown(wait=False, cancel_futures=True)
        parsing.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="jasper embeddings", lifespan=lifespan)
    app.state.batcher = batcher

    def authorised(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            what = "no API key was given" if not given else "the API key is wrong"
            raise RequestError(401, f"{what}: send 'Authorization: Bearer <key>'")

    async def parsed(request: Request) -> Parsed:
        batcher.arriving += 1
        try:
            authorised(request)
            body = await read_body(request, limits)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(parsing, parse_request, body, embedder, limits)
        finally:
            batcher.arriving -= 1

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        try:
            asked = await parsed(request)
            job = batcher.submit(asked.texts, asked.dim, asked.role)
        except RequestError as error:
            return refuse(error)
        except Overloaded as busy:
            full = RequestError(429, f"the server is busy ({busy}): retry in {RETRY_AFTER_S} s", code="overloaded")
            return refuse(full, {"Retry-After": str(RETRY_AFTER_S)})
        except ClientDisconnect:
            return None
        gone: asyncio.Future[Any] = asyncio.ensure_future(until_disconnect(request))
        await asyncio.wait([job, gone], return_when=asyncio.FIRST_COMPLETED)
        if not job.done():  # the client went away: its texts are dropped before they are embedded
            job.cancel()
            return None
        gone.cancel()
        return answer(job.result(), asked.encoding_format)

    def answer(result: Result, encoding_format: str) -> dict[str, Any]:
        used = sum(min(n, embedder.max_length) for n in result.token_counts)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode_vector(v, encoding_format)}
                for i, v in enumerate(result.vectors)
            ],
            "model": embedder.name,
            # texts longer than max_length are cut there; the counts are of the tokens embedded
            "usage": {
                "prompt_tokens": used,
                "total_tokens": used,
                "truncated_inputs": sum(n > embedder.max_length for n in result.token_counts),
            },
        }

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        try:
            authorised(request)
        except RequestError as error:
            return refuse(error)
        model = {"id": embedder.name, "object": "model", "created": created, "owned_by": "jasper"}
        return {"object": "list", "data": [model | {"dimensions": embedder.dims, "backend": embedder.backend}]}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": embedder.name,
            "dimensions": embedder.dims,
            "backend": embedder.backend,
            "max_length": embedder.max_length,
            "batches": batcher.batches,
            "queued_texts": batcher.queued_texts,
        }

    return app


def check_address(host: str, port: int) -> None:
    """One line for a port out of range, a host that is not this machine's, or an address in use."""
    import errno
    import socket

    if not 1 <= port <= 65535:
        raise JasperError(f"--port {port}: a port is a number from 1 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise JasperError(f"--host {host}: not an address of this machine ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise JasperError(f"{host}:{port} is in use by another program: choose another --port") from None
            raise JasperError(
                f"cannot listen on {host}:{port} ({error.strerror}): choose another --host or --port"
            ) from None


def serve(
    path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_env: str | None = None,
    limits: Limits | None = None,
    name: str | None = None,
    backend: str = "auto",
    threads: int | None = None,
) -> None:
    """Load the model at `path` and serve it until interrupted. `backend`: auto (the fastest the folder holds),
    torch, or an ONNX file of the exported heads (onnx, onnx-o3, onnx-int8)."""
    import os

    import uvicorn

    limits = limits or Limits()
    limits.check()
    check_address(host, port)  # before the model loads: a port in use is said at once
    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise JasperError(
                f"--api-key-env {api_key_env}: the environment variable {api_key_env} is not set or empty"
            )
    embedder = load_embedder(path, name, backend, threads)
    logger.info(
        "serving '%s' (%s, dims %s, max_length %d) on http://%s:%d/v1/embeddings%s",
        *(embedder.name, embedder.backend, embedder.dims, embedder.max_length, host, port),
        " (API key required)" if api_key else "",
    )
    limit_log_rate()
    GuardedH11Protocol.request_timeout_s = limits.request_timeout_s
    config = uvicorn.Config(create_app(embedder, limits, api_key), host=host, port=port, log_level="warning",
                            http=GuardedH11Protocol, timeout_keep_alive=max(1, int(limits.idle_timeout_s)),
                            limit_concurrency=limits.max_connections)  # fmt: skip
    uvicorn.Server(config).run()
