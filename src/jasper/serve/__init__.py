"""`jasper serve`: an OpenAI-compatible embeddings endpoint over a run's student (every head) or exported heads.

Concurrent requests are batched together: each request's texts join a queue, and one worker takes what arrived
within `max_wait_ms` (up to `max_batch` texts), embeds it in one call on a worker thread, and answers every
request from it. `jasper.serve.app` needs the `serve` extra (FastAPI, uvicorn).
"""

from jasper.serve.batching import Batcher, Limits
from jasper.serve.embedders import Embedder, FolderEmbedder, StudentEmbedder, load_embedder

__all__ = ["Batcher", "Embedder", "FolderEmbedder", "Limits", "StudentEmbedder", "load_embedder"]
