"""Dynamic batching with bounded, fair work: the waiting requests are embedded (and their tokens counted) together
on a worker thread, off the event loop, in batches capped in texts and characters and filled shortest request
first, so one short query never waits behind a huge request for more than one small batch; a request that has
waited over a second goes first, so under steady load a large one is delayed, never starved. The queue is bounded in
texts and characters, and a request whose client has gone is dropped before it is computed."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from jasper.serve.embedders import Embedder
from jasper.serve.limits import Limits

logger = logging.getLogger("jasper.serve")

FAIR_AFTER_S = 1.0  # a request waiting longer than this is served before newer, shorter ones
CHARS_PER_TOKEN_BOUND = 64  # tokens are shorter than this: a text cut at 64 x max_length keeps its first tokens


class Overloaded(Exception):
    """The queue holds as much work as the limits allow."""


@dataclass
class Result:
    """One request's vectors and the token count of each of its texts (before truncation)."""

    vectors: np.ndarray
    token_counts: list[int]


@dataclass
class _Job:
    texts: list[str]
    chars: list[int]
    dim: int
    future: asyncio.Future[Result]
    role: str = "text"  # how its texts are read: text, query or document (each with the model's prompt for it)
    since: float = field(default_factory=time.monotonic)  # when it was queued
    done: int = 0  # texts embedded so far
    parts: list[np.ndarray] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    @property
    def left(self) -> int:
        return len(self.texts) - self.done


def clip(text: str, max_length: int) -> str:
    """The part of `text` that can reach the model: its first `max_length` tokens lie in this prefix, so the vectors
    and the counts up to `max_length` are the same, and a 1 MB text is not tokenised whole."""
    return text[: CHARS_PER_TOKEN_BOUND * max_length]


@dataclass
class Batcher:
    """The waiting requests, embedded in fair batches on one worker thread."""

    embedder: Embedder
    limits: Limits
    jobs: list[_Job] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="embed"))
    batches: int = 0
    queued_texts: int = 0
    queued_chars: int = 0
    arriving: int = 0  # requests being read or parsed: a batch waits for them only when there are some

    def submit(self, texts: list[str], dim: int, role: str = "text") -> asyncio.Future[Result]:
        """Queue a request (its texts read in `role`); its future gets the result (cancel it to drop the request).
        Overloaded when full."""
        clipped = [clip(text, self.embedder.max_length) for text in texts]
        chars = [len(text) for text in clipped]
        if (
            self.queued_texts + len(texts) > self.limits.max_queue_texts
            or self.queued_chars + sum(chars) > self.limits.max_queue_chars
        ):
            raise Overloaded(f"{self.queued_texts:,} texts ({self.queued_chars:,} characters) are waiting")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.queued_texts += len(texts)
        self.queued_chars += sum(chars)
        self.jobs.append(_Job(clipped, chars, dim, future, role))
        self.wake.set()
        return future

    async def run(self) -> None:
        """The worker: forever, take a batch from the waiting requests, embed and count it, hand back the parts."""
        loop = asyncio.get_running_loop()
        while True:
            taken = await self._collect()
            if not taken:
                continue
            texts = [text for job, start, stop in taken for text in job.texts[start:stop]]
            dims = [job.dim for job, start, stop in taken for _ in range(start, stop)]  # each text's head
            roles = [job.role for job, start, stop in taken for _ in range(start, stop)]  # and its role
            try:
                vectors, counts = await loop.run_in_executor(self.executor, self._embed, texts, dims, roles)
            except Exception as error:  # every request in the batch gets the error as its 500
                for job, _, _ in taken:
                    self._finish(job, error)
                continue
            self.batches += 1
            offset = 0
            for job, start, stop in taken:
                n = stop - start
                job.parts.append(vectors[job.dim][offset : offset + n])
                job.counts += counts[offset : offset + n]
                offset += n
                if job.done == len(job.texts):
                    self._finish(job)

    def _embed(self, texts: list[str], dims: list[int], roles: list[str]) -> tuple[dict[int, np.ndarray], list[int]]:
        """On the worker thread: the vectors (text i at head `dims[i]`, read in `roles[i]`) and the token count of
        each text as the model reads it (its prompt included); texts cut at the model's length are logged."""
        counts = self.embedder.token_counts(texts, roles)
        cut = sum(n > self.embedder.max_length for n in counts)
        if cut:
            logger.info("%d of %d texts in a batch are longer than max_seq_length %d and are cut there", cut,
                        len(texts), self.embedder.max_length)  # fmt: skip
        return self.embedder.embed_each(texts, dims, roles), counts

    def _finish(self, job: _Job, error: Exception | None = None) -> None:
        """Hand the request its result (or error), unless its client has gone."""
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(Result(np.concatenate(job.parts), job.counts))

    def _forget(self, job: _Job, start: int, stop: int) -> None:
        """The queue no longer holds `job`'s texts `start:stop`."""
        self.queued_texts -= stop - start
        self.queued_chars -= sum(job.chars[start:stop])

    async def _collect(self) -> list[tuple[_Job, int, int]]:
        """The next batch: (request, first text, past the last text) per request, shortest requests first, capped
        at `max_batch` texts and `max_batch_chars` characters (a request larger than that is split)."""
        while not self.jobs:
            self.wake.clear()
            await self.wake.wait()
        if self.arriving and self.limits.max_wait_ms > 0:  # others are on their way: let them join
            await asyncio.sleep(self.limits.max_wait_ms / 1000)
        for job in [j for j in self.jobs if j.future.done()]:  # clients gone (or failed): the rest is not computed
            self._forget(job, job.done, len(job.texts))
            self.jobs.remove(job)
        taken: list[tuple[_Job, int, int]] = []
        size, chars = 0, 0
        # shortest request first, except that one which has waited FAIR_AFTER_S goes first (oldest first):
        # under steady load a large request is delayed, never starved
        now = time.monotonic()
        for job in sorted(self.jobs, key=lambda j: (0, j.since) if now - j.since > FAIR_AFTER_S else (1, j.left)):
            start = stop = job.done
            while stop < len(job.texts) and size < self.limits.max_batch:
                if chars + job.chars[stop] > self.limits.max_batch_chars and size:
                    break
                chars += job.chars[stop]
                size += 1
                stop += 1
            if stop > start:
                taken.append((job, start, stop))
                self._forget(job, start, stop)
                job.done = stop
                if stop == len(job.texts):
                    self.jobs.remove(job)
        return taken
