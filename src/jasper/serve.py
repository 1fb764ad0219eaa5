"""`jasper serve`: an OpenAI-compatible embeddings endpoint over a run's student (every head) or a model folder.

FastAPI on uvicorn (the standard ASGI pair: request validation, OpenAPI docs at /docs, and the server the
Python serving stacks use). Concurrent requests are batched together: each request's texts join a queue,
and one worker takes what arrived within `max_wait_ms` (up to `max_batch` texts), embeds it in one call on
a worker thread, and answers every request from it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

try:  # the `serve` extra; FastAPI resolves the handlers' annotations from this module's names
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
except ImportError as missing:  # pragma: no cover - only without the extra
    raise ImportError(
        "`jasper serve` needs the serve extra: pip install 'jasper-distill[serve]' (fastapi, uvicorn)"
    ) from missing

logger = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the server needs of a model: its name, head dims, token counting and embedding."""

    name: str
    dims: list[int]
    max_length: int

    def token_counts(self, texts: list[str]) -> list[int]:
        """Token count of each text before truncation (special tokens included)."""
        ...

    def embed(self, texts: list[str], dims: list[int]) -> dict[int, np.ndarray]:
        """L2-normalised float32 vectors of `texts` at each dim in `dims`. {dim: (N, dim)}"""
        ...


def token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token count of each text before truncation (special tokens included)."""
    return [len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]]


class StudentEmbedder:
    """A run's saved student: one encoder pass serves every head."""

    def __init__(self, student: Any, name: str) -> None:
        self.student = student
        self.name = name
        self.dims = list(student.head_dims)
        self.max_length = int(student.max_length)

    def token_counts(self, texts: list[str]) -> list[int]:
        """Token count of each text before truncation."""
        return token_counts(self.student.tokenizer, texts)

    def embed(self, texts: list[str], dims: list[int]) -> dict[int, np.ndarray]:
        """Vectors at each dim, from one pass of the encoder."""
        out = self.student.encode(texts, list(dims), batch_size=64)
        return {d: out[d] for d in dims}


class FolderEmbedder:
    """Exported heads, one model per dim (sentence-transformers folders, or their ONNX copies)."""

    def __init__(
        self, encoders: dict[int, Callable[[list[str]], np.ndarray]], tokenizer: Any, max_length: int, name: str
    ) -> None:
        self.encoders = dict(sorted(encoders.items(), key=lambda item: -item[0]))
        self.dims = list(self.encoders)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.name = name

    def token_counts(self, texts: list[str]) -> list[int]:
        """Token count of each text before truncation."""
        return token_counts(self.tokenizer, texts)

    def embed(self, texts: list[str], dims: list[int]) -> dict[int, np.ndarray]:
        """Vectors at each dim, each from its own model."""
        return {d: self.encoders[d](texts) for d in dims}


def _head_folders(folder: Path) -> list[Path]:
    """The exported head folders at `folder`: itself, its `dim-*/`, or a run's `export/dim-*/`."""
    if (folder / "modules.json").is_file():
        return [folder]
    for base in (folder, folder / "export"):
        heads = sorted(p.parent for p in base.glob("dim-*/modules.json"))
        if heads:
            return heads
    return []


def load_embedder(
    path: str | Path, name: str | None = None, backend: str = "torch", onnx_file: str | None = None
) -> Embedder:
    """The model behind `jasper serve PATH`: a run folder (its student, every head), a saved student, an
    export folder holding `dim-<D>/` folders, or one sentence-transformers folder. `backend='onnx'` serves
    the exported heads' ONNX copies (`onnx_file`: which one, e.g. the int8 one)."""
    from jasper.encode import model_dim, resolve_student_dir

    folder = Path(path)
    student_dir = resolve_student_dir(folder)
    if student_dir is not None and backend == "torch":
        from jasper.models.student import load_student

        run_dir = student_dir.parent if student_dir.name == "student" else student_dir
        return StudentEmbedder(load_student(student_dir), name or _run_name(run_dir))
    heads = _head_folders(folder)
    if not heads:
        raise FileNotFoundError(
            f"'{path}' is neither a jasper run (no student/student.json), an export folder (no dim-*/), nor a "
            "sentence-transformers folder (no modules.json)"
        )
    owner = heads[0].parent.parent if heads[0].parent.name == "export" else heads[0].parent
    served = name or (heads[0].name if heads == [folder] else _run_name(owner))
    if backend == "onnx":
        from jasper.export.onnx import FP32_FILE, OnnxEmbedder

        onnx = [OnnxEmbedder(h, onnx_file or FP32_FILE) for h in heads]
        by_dim: dict[int, Callable[[list[str]], np.ndarray]] = {m.dims[0]: m.encode for m in onnx}
        return FolderEmbedder(by_dim, onnx[0].tokenizer, onnx[0].max_length, served)
    from sentence_transformers import SentenceTransformer

    models = [SentenceTransformer(str(h), device="cpu") for h in heads]
    encoders = {model_dim(m): _st_encoder(m) for m in models}
    return FolderEmbedder(encoders, models[0].tokenizer, int(models[0].max_seq_length or 512), served)


def _st_encoder(model: Any) -> Callable[[list[str]], np.ndarray]:
    def encode(texts: list[str]) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=64, normalize_embeddings=True), dtype=np.float32)

    return encode


def _run_name(run_dir: Path) -> str:
    """The run's configured name, else its folder's name."""
    config = run_dir / "config.yaml"
    if config.is_file():
        import yaml

        with contextlib.suppress(yaml.YAMLError, AttributeError):
            return str(yaml.safe_load(config.read_text(encoding="utf-8")).get("name") or run_dir.name)
    return run_dir.resolve().name


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how requests are batched."""

    max_inputs: int = 2048  # texts per request (OpenAI's limit)
    max_body_bytes: int = 8 * 2**20
    max_batch: int = 256  # texts embedded together
    max_wait_ms: float = 5.0  # how long the first queued request waits for company


@dataclass
class _Job:
    texts: list[str]
    dim: int
    future: asyncio.Future[np.ndarray]


@dataclass
class Batcher:
    """Dynamic batching: requests queued within `max_wait_ms` are embedded in one call on a worker thread."""

    embedder: Embedder
    limits: Limits
    queue: asyncio.Queue[_Job] = field(default_factory=asyncio.Queue)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="embed"))
    batches: int = 0

    async def embed(self, texts: list[str], dim: int) -> np.ndarray:
        """This request's vectors, embedded together with whatever else is queued. (N, dim)"""
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(texts, dim, future))
        return await future

    async def run(self) -> None:
        """The worker: forever, take a batch of jobs and answer them."""
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            texts = [text for job in jobs for text in job.texts]
            dims = sorted({job.dim for job in jobs}, reverse=True)
            try:
                vectors = await loop.run_in_executor(self.executor, self.embedder.embed, texts, dims)
            except Exception as error:  # every waiting request gets the error as its 500
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            self.batches += 1
            start = 0
            for job in jobs:
                if not job.future.done():  # a client that went away leaves a cancelled future
                    job.future.set_result(vectors[job.dim][start : start + len(job.texts)])
                start += len(job.texts)

    async def _collect(self) -> list[_Job]:
        jobs = [await self.queue.get()]
        size = len(jobs[0].texts)
        deadline = time.monotonic() + self.limits.max_wait_ms / 1000
        while size < self.limits.max_batch:
            if self.queue.empty():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), left)
                except TimeoutError:
                    break
            else:
                job = self.queue.get_nowait()
            jobs.append(job)
            size += len(job.texts)
        return jobs


class EmbeddingRequest(BaseModel):
    """The OpenAI embeddings request (token-array inputs are not supported)."""

    model_config = ConfigDict(extra="ignore")

    input: StrictStr | list[StrictStr]
    model: StrictStr
    dimensions: StrictInt | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: StrictStr | None = None


class RequestError(Exception):
    """A request the server refuses: HTTP status, OpenAI error type and message."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object."""
    kind = {401: "authentication_error", 404: "invalid_request_error", 413: "invalid_request_error"}
    return {
        "error": {"message": message, "type": kind.get(status, "invalid_request_error"), "param": param, "code": code}
    }


def parse_request(body: bytes, embedder: Embedder, limits: Limits) -> tuple[list[str], int, str]:
    """(texts, dim, encoding format) of a valid request body, else a RequestError naming the problem."""
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"the request body is {len(body):,} bytes; the limit is {limits.max_body_bytes:,}")
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(400, f"the request body is not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise RequestError(400, "the request body must be a JSON object")
    try:
        request = EmbeddingRequest.model_validate(payload)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"][:1]) or "body"
        hint = " (a string or a list of strings; token arrays are not supported)" if where == "input" else ""
        raise RequestError(400, f"'{where}': {first['msg']}{hint}", param=where) from None
    if request.model != embedder.name:
        raise RequestError(
            404,
            f"the model '{request.model}' does not exist here; this server has '{embedder.name}'",
            param="model",
            code="model_not_found",
        )
    texts = [request.input] if isinstance(request.input, str) else request.input
    if not texts:
        raise RequestError(400, "'input' is empty: give a string or a list of strings", param="input")
    if len(texts) > limits.max_inputs:
        raise RequestError(400, f"'input' has {len(texts):,} texts; the limit is {limits.max_inputs:,}", "input")
    empty = [i for i, text in enumerate(texts) if not text.strip()]
    if empty:
        raise RequestError(400, f"'input' has empty strings (at {empty[:5]}); every text needs content", "input")
    dim = embedder.dims[0] if request.dimensions is None else request.dimensions
    if dim not in embedder.dims:
        raise RequestError(
            400, f"'dimensions' {dim} is not a head of '{embedder.name}'; valid: {embedder.dims}", "dimensions"
        )
    return texts, dim, request.encoding_format


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """A vector as OpenAI sends it: a list of floats, or base64 of little-endian float32."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.astype(np.float32).tolist()


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
    onnx_file: str | None = None,
) -> None:
    """Load the model at `path` and serve it until interrupted."""
    import os

    import uvicorn

    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ValueError(f"--api-key-env {api_key_env}: the environment variable {api_key_env} is not set or empty")
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
