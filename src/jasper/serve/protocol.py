"""The OpenAI embeddings protocol: the request, its checks (each refusal a 4xx naming the field), the answer."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from jasper.data.corpus import has_content
from jasper.serve.embedders import Embedder
from jasper.serve.limits import Limits


class EmbeddingRequest(BaseModel):
    """The OpenAI embeddings request (token-array inputs are not supported), and `input_type`: `query` or `document`
    reads the texts with the model's prompt for that (as sentence-transformers' encode_query / encode_document);
    left out, with its default prompt. OpenAI's client sends it through `extra_body`."""

    model_config = ConfigDict(extra="ignore")

    input: StrictStr | list[StrictStr]
    model: StrictStr
    dimensions: StrictInt | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: StrictStr | None = None
    input_type: Literal["query", "document"] | None = None


@dataclass
class Parsed:
    """A valid request: its texts, the head asked for, the answer's encoding and the texts' role."""

    texts: list[str]
    dim: int
    encoding_format: str
    role: str = "text"


class RequestError(Exception):
    """A request the server refuses: HTTP status, OpenAI error type and message."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object."""
    kind = {401: "authentication_error", 429: "rate_limit_error", 503: "server_error"}
    return {
        "error": {"message": message, "type": kind.get(status, "invalid_request_error"), "param": param, "code": code}
    }


def parse_request(body: bytes, embedder: Embedder, limits: Limits) -> Parsed:
    """The texts, head, encoding and role of a valid request body, else a RequestError (a 4xx) naming the problem."""
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"the request body is {len(body):,} bytes; the limit is {limits.max_body_bytes:,}")
    try:
        payload = json.loads(body)
    except RecursionError:
        raise RequestError(400, "the request body is JSON nested too deeply") from None
    except ValueError as error:  # not JSON, not UTF-8, or an integer of thousands of digits
        raise RequestError(400, f"the request body is not valid JSON ({str(error)[:200]})") from None
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
            f"the model '{request.model[:200]}' does not exist here; this server has '{embedder.name}'",
            param="model",
            code="model_not_found",
        )
    texts = [request.input] if isinstance(request.input, str) else request.input
    check_texts(texts, limits)
    dim = embedder.dims[0] if request.dimensions is None else request.dimensions
    if dim not in embedder.dims:
        shown = str(dim) if abs(dim) < 10**12 else f"{str(dim)[:12]}..."
        raise RequestError(
            400, f"'dimensions' {shown} is not a head of '{embedder.name}'; valid: {embedder.dims}", "dimensions"
        )
    return Parsed(texts, dim, request.encoding_format, request.input_type or "text")


def check_texts(texts: list[str], limits: Limits) -> None:
    """Refuse, naming the field: no texts, too many, empty ones, too long ones, and text that is not Unicode."""
    if not texts:
        raise RequestError(400, "'input' is empty: give a string or a list of strings", param="input")
    if len(texts) > limits.max_inputs:
        raise RequestError(400, f"'input' has {len(texts):,} texts; the limit is {limits.max_inputs:,}", "input")
    empty = [i for i, text in enumerate(texts) if not has_content(text)]
    if empty:
        raise RequestError(
            400,
            f"'input' has texts with nothing to embed (at {empty[:5]}): empty, or only whitespace, control or "
            "zero-width characters; every text needs content",
            "input",
        )
    long = [i for i, text in enumerate(texts) if len(text) > limits.max_input_chars]
    if long:
        raise RequestError(
            400, f"'input' has texts over {limits.max_input_chars:,} characters (at {long[:5]})", param="input"
        )
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(400, f"'input' text {i} is not valid Unicode (a lone surrogate)", "input") from None


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """A vector as OpenAI sends it: a list of floats, or base64 of little-endian float32."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.astype(np.float32).tolist()
