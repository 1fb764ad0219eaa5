"""`jasper teach`: compute and store every teacher's vectors for the run's corpus."""

from __future__ import annotations

import logging
from pathlib import Path

from jasper.config import RunConfig
from jasper.data.prepare import load_texts
from jasper.data.store import TeacherStore
from jasper.data.store_writer import Progress, compute_teacher
from jasper.distributed import setup_device

logger = logging.getLogger(__name__)


def teach(config: RunConfig, on_progress: Progress | None = None) -> TeacherStore:
    """Encode the corpus with each teacher (resuming finished shards; split over ranks when launched
    by accelerate/torchrun) and open the store; `on_progress(teacher, texts done, texts/s)` hears how it goes."""
    device, ranks = setup_device(config.device)  # first: a config for a GPU stops here on a CPU-only machine
    texts = load_texts(config)
    store_dir: Path = config.store_dir
    where = f" on {ranks.world} processes" if ranks.active else ""
    logger.info("corpus: %d texts; store: %s%s", len(texts), store_dir, where)
    for teacher in config.teachers:
        progress = on_progress if ranks.is_main else None
        compute_teacher(store_dir, teacher, texts, config.store.dtype, config.store.shard_size, str(device), ranks,
                        on_progress=progress)  # fmt: skip
    store = TeacherStore(store_dir, config.teachers, texts)
    logger.info("teachers %s: %s dims -> %d concatenated", store.names, store.dims, store.dim)
    return store
