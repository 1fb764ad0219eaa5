"""A teacher behind any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, TEI, LiteLLM...).

Batches requests, retries 429 / 5xx / timeouts with exponential backoff (honouring Retry-After), keeps
under a requests-per-minute limit, and refuses malformed answers with a clear error. Resuming after an
interruption re-requests only the store shard that was in flight: rows already stored are never paid for
twice (a smaller `store.shard_size` makes that shard cheaper).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np

from jasper.config import TeacherConfig
from jasper.errors import JasperError
from jasper.teachers.base import RowsDone, encode_in_batches

logger = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_BACKOFF_S = 60.0


class ApiError(JasperError):
    """The endpoint answered something that is not a valid embeddings response, or kept failing."""


class OpenAIEmbeddingsTeacher:
    """POSTs `{"model", "input", "dimensions"?}` to `<api_base>/embeddings`, batch by batch."""

    def __init__(self, config: TeacherConfig) -> None:
        if not config.api_base:
            raise JasperError(
                f"teacher '{config.name}': backend openai-api needs api_base (e.g. https://api.openai.com/v1)"
            )
        self.name = config.name
        self.config = config
        self.url = config.api_base.rstrip("/") + "/embeddings"
        self.api_key = os.environ.get(config.api_key_env, "")
        if not self.api_key:
            logger.warning("teacher '%s': $%s is not set; sending no API key", config.name, config.api_key_env)
        self._lock = threading.Lock()
        self._next_request = 0.0

    def encode(self, texts: list[str], on_rows: RowsDone | None = None) -> np.ndarray:
        """Vectors for `texts`, shape (len(texts), dim), float32; `workers` requests may be in flight."""
        return encode_in_batches(texts, self.config, self._embed, on_rows)

    def _wait_for_rate_limit(self) -> None:
        if not self.config.requests_per_minute:
            return
        with self._lock:
            now = time.monotonic()
            delay = max(0.0, self._next_request - now)
            self._next_request = max(now, self._next_request) + 60.0 / self.config.requests_per_minute
        if delay:
            time.sleep(delay)

    def _embed(self, batch: list[str]) -> np.ndarray:
        body: dict[str, Any] = {"model": self.config.model, "input": batch, "encoding_format": "float"}
        if self.config.dimensions:
            body["dimensions"] = self.config.dimensions
        payload = json.dumps(body).encode("utf-8")
        for attempt in range(self.config.max_retries + 1):
            self._wait_for_rate_limit()
            try:
                return self._parse(self._post(payload), len(batch))
            except _Retryable as error:
                if attempt == self.config.max_retries:
                    raise ApiError(
                        f"teacher '{self.name}': {self.url} still failing after {attempt + 1} attempts: {error}"
                    ) from None
                delay = error.retry_after if error.retry_after is not None else min(MAX_BACKOFF_S, 0.5 * 2**attempt)
                logger.info("teacher '%s': %s; retrying in %.1f s", self.name, error, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _post(self, payload: bytes) -> bytes:
        request = urllib.request.Request(self.url, data=payload, method="POST")
        request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as error:
            if error.code in RETRY_STATUS:
                retry_after = error.headers.get("Retry-After")
                raise _Retryable(f"HTTP {error.code}", float(retry_after) if retry_after else None) from None
            detail = self._redact(error.read()[:300].decode("utf-8", "replace"))
            raise ApiError(f"teacher '{self.name}': {self.url} answered HTTP {error.code}: {detail}") from None
        except (TimeoutError, urllib.error.URLError, ConnectionError) as error:
            raise _Retryable(f"{type(error).__name__}: {error}", None) from None

    def _redact(self, text: str) -> str:
        """The endpoint's words without the API key (a server that echoes the request would print it)."""
        return text.replace(self.api_key, "***") if self.api_key else text

    def _parse(self, raw: bytes, expected: int) -> np.ndarray:
        try:
            data = json.loads(raw)["data"]
            rows = sorted(data, key=lambda item: item["index"])
            vectors = np.asarray([item["embedding"] for item in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as error:
            raise ApiError(
                f"teacher '{self.name}': malformed embeddings response from {self.url} "
                f"({type(error).__name__}: {error}); body starts {self._redact(repr(raw[:120]))}"
            ) from None
        if vectors.ndim != 2 or len(vectors) != expected or [r["index"] for r in rows] != list(range(expected)):
            raise ApiError(
                f"teacher '{self.name}': {self.url} returned {len(rows)} embeddings (shape {vectors.shape}) "
                f"for {expected} inputs"
            )
        return vectors


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
