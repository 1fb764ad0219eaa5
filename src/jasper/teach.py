"""`jasper teach`: compute and store every teacher's vectors for the run's corpus."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from jasper.config import RunConfig
from jasper.data.prepare import load_corpus
from jasper.data.store import TeacherStore, read_manifest
from jasper.data.store_writer import Progress, compute_teacher
from jasper.distributed import setup_device
from jasper.errors import JasperError
from jasper.teachers import build_teacher
from jasper.teachers.base import Teacher, teacher_inputs

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
    built = check_target_dim(config, str(device))  # before any teacher's long (or paid) pass
    for teacher in config.teachers:
        progress = on_progress if ranks.is_main else None
        inputs = teacher_inputs(teacher, corpus.texts, corpus.roles)  # what it reads: each text behind its prompt
        compute_teacher(store_dir, teacher, inputs, config.store.dtype, config.store.shard_size, str(device), ranks,
                        teacher=built.get(teacher.name), on_progress=progress)  # fmt: skip
    store = TeacherStore(store_dir, config.teachers, corpus.texts, corpus.roles)
    logger.info("teachers %s: %s dims -> %d concatenated", store.names, store.dims, store.dim)
    return store


def check_target_dim(config: RunConfig, device: str) -> dict[str, Teacher]:
    """Each teacher's dim, from its store's manifest or from one short probe text (the teachers probed are returned,
    built, for the pass that follows); one line when FC1 cannot learn their concatenation by cosine."""
    dims: dict[str, int] = {}
    built: dict[str, Teacher] = {}
    for teacher in config.teachers:
        manifest = read_manifest(config.store_dir / teacher.name)
        if manifest is not None and manifest.get("dim"):
            dims[teacher.name] = int(manifest["dim"])
            continue
        built[teacher.name] = build_teacher(teacher, device)
        probe = built[teacher.name].encode(teacher_inputs(teacher, ["a probe of the teacher's dimension"]))
        dims[teacher.name] = int(np.asarray(probe).shape[-1])
    fc1, total = config.student.heads[0], sum(dims.values())
    if fc1 != total and any("cosine" in stage.fc1_losses for stage in config.stages if stage.train != "vision"):
        said = " + ".join(f"{name} {dim}" for name, dim in dims.items())
        raise JasperError(
            f"student.heads[0] (FC1) is {fc1}, but the teachers' vectors concatenate to {said} = {total} dims: set "
            f"student.heads[0] to {total} (nothing was taught yet)"
        )
    return built
