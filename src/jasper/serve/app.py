"""The HTTP app: FastAPI on uvicorn (the standard ASGI pair: request validation, OpenAPI docs at /docs, and the
server the Python serving stacks use)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

try:  # the `serve` extra; FastAPI resolves the handlers' annotations from this module's names
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
except ImportError as missing:  # pragma: no cover - only without the extra
    raise ImportError(
        "`jasper serve` needs the serve extra: pip install 'jasper-distill[serve]' (fastapi, uvicorn)"
    ) from missing

from jasper.errors import JasperError
from jasper.serve.batching import Batcher, Limits
from jasper.serve.embedders import Embedder, load_embedder
from jasper.serve.protocol import RequestError, encode_vector, error_body, parse_request

logger = logging.getLogger(__name__)


def create_app(embedder: Embedder, limits: Limits | None = None, api_key: str | None = None) -> Any:
    """The FastAPI app serving `embedder` (a bearer `api_key` guards /v1/* when given)."""
    limits = limits or Limits()
    batcher = Batcher(embedder, limits)
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()
        batcher.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="jasper embeddings", lifespan=lifespan)
    app.state.batcher = batcher

    def refuse(error: RequestError) -> JSONResponse:
        return JSONResponse(error_body(error.status, error.message, error.param, error.code), status_code=error.status)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        if api_key is not None and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                what = "no API key was given" if not given else "the API key is wrong"
                return refuse(RequestError(401, f"{what}: send 'Authorization: Bearer <key>'"))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            return refuse(
                RequestError(
                    413, f"the request body is {int(declared):,} bytes; the limit is {limits.max_body_bytes:,}"
                )
            )
        return await call_next(request)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        try:
            texts, dim, encoding_format = parse_request(await request.body(), embedder, limits)
        except RequestError as error:
            return refuse(error)
        counts = embedder.token_counts(texts)
        vectors = await batcher.embed(texts, dim)
        used = sum(min(n, embedder.max_length) for n in counts)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode_vector(v, encoding_format)}
                for i, v in enumerate(vectors)
            ],
            "model": embedder.name,
            # texts longer than max_length are cut there; the counts are of the tokens embedded
            "usage": {
                "prompt_tokens": used,
                "total_tokens": used,
                "truncated_inputs": sum(n > embedder.max_length for n in counts),
            },
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": embedder.name,
                    "object": "model",
                    "created": created,
                    "owned_by": "jasper",
                    "dimensions": embedder.dims,
                }
            ],
        }

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": embedder.name,
            "dimensions": embedder.dims,
            "max_length": embedder.max_length,
            "batches": batcher.batches,
        }

    return app


def serve(
    path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_env: str | None = None,
    limits: Limits | None = None,
    name: str | None = None,
    backend: str = "torch",
    quantized: bool = False,
) -> None:
    """Load the model at `path` and serve it until interrupted (`backend` torch, or onnx: the exported heads' ONNX
    copies, their int8 ones when `quantized`)."""
    import os

    import uvicorn

    if backend not in ("torch", "onnx"):
        raise JasperError(f"--backend {backend}: choose torch or onnx")
    onnx_file = None
    if backend == "onnx":
        from jasper.export.onnx import FP32_FILE, INT8_FILE

        onnx_file = INT8_FILE if quantized else FP32_FILE
    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise JasperError(
                f"--api-key-env {api_key_env}: the environment variable {api_key_env} is not set or empty"
            )
    embedder = load_embedder(path, name, backend, onnx_file)
    logger.info(
        "serving '%s' (%s, dims %s, max_length %d) on http://%s:%d/v1/embeddings%s",
        embedder.name,
        backend,
        embedder.dims,
        embedder.max_length,
        host,
        port,
        " (API key required)" if api_key else "",
    )
    uvicorn.run(create_app(embedder, limits, api_key), host=host, port=port, log_level="warning")
