"""`jasper teach`: compute and store every teacher's vectors for the run's corpus."""

from __future__ import annotations

import logging
from pathlib import Path

from jasper.config import RunConfig
from jasper.data.prepare import load_corpus
from jasper.data.store import TeacherStore
from jasper.data.store_writer import Progress, compute_teacher
from jasper.distributed import setup_device
from jasper.teachers.base import teacher_inputs

logger = logging.getLogger(__name__)


def teach(config: RunConfig, on_progress: Progress | None = None) -> TeacherStore:
    """Encode the corpus with each teacher (resuming finished shards; split over ranks when launched
    by accelerate/torchrun) and open the store; `on_progress(teacher, texts done, texts/s)` hears how it goes."""
    device, ranks = setup_device(config.device)  # first: a config for a GPU stops here on a CPU-only machine
    corpus = load_corpus(config)
    store_dir: Path = config.store_dir
    where = f" on {ranks.world} processes" if ranks.active else ""
    roles = ", ".join(f"{corpus.roles.count(r):,} {r}" for r in dict.fromkeys(corpus.roles))
    logger.info("corpus: %d texts (%s); store: %s%s", len(corpus), roles, store_dir, where)
    for teacher in config.teachers:
        progress = on_progress if ranks.is_main else None
        inputs = teacher_inputs(teacher, corpus.texts, corpus.roles)  # what it reads: each text behind its prompt
        compute_teacher(store_dir, teacher, inputs, config.store.dtype, config.store.shard_size, str(device), ranks,
                        on_progress=progress)  # fmt: skip
    store = TeacherStore(store_dir, config.teachers, corpus.texts, corpus.roles)
    logger.info("teachers %s: %s dims -> %d concatenated", store.names, store.dims, store.dim)
    return store
