"""`jasper serve`: an OpenAI-compatible embeddings endpoint over a run's student (every head) or exported heads.

Concurrent requests are batched together: each request's texts join a bounded queue, and one worker takes what
arrived within `max_wait_ms` (up to `max_batch` texts), embeds it in one call on a worker thread, and answers every
request from it. `jasper.serve.app` needs the `serve` extra (FastAPI, uvicorn). The names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jasper.serve.batching import Batcher
    from jasper.serve.embedders import Embedder, FolderEmbedder, StudentEmbedder, load_embedder
    from jasper.serve.limits import Limits

_NAMES = {
    "Batcher": "jasper.serve.batching",
    "Embedder": "jasper.serve.embedders",
    "FolderEmbedder": "jasper.serve.embedders",
    "Limits": "jasper.serve.limits",
    "StudentEmbedder": "jasper.serve.embedders",
    "load_embedder": "jasper.serve.embedders",
}
__all__ = ["Batcher", "Embedder", "FolderEmbedder", "Limits", "StudentEmbedder", "load_embedder"]


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'jasper.serve' has no attribute '{name}'")
    return getattr(importlib.import_module(_NAMES[name]), name)
