"""Dynamic batching: requests that arrive within `max_wait_ms` are embedded in one call on a worker thread."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from jasper.serve.embedders import Embedder


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
