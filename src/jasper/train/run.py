"""`jasper train`: the text stages, then the vision stages on the saved text student."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from jasper.config import RunConfig
from jasper.data.prepare import load_corpus
from jasper.data.store import TeacherStore
from jasper.distributed import barrier, setup_device
from jasper.errors import JasperError
from jasper.io import folder_swap
from jasper.models.student import Student, build_student, save_student
from jasper.runtime import seed_everything
from jasper.train.loop import StageRunner
from jasper.train.vision import check_training_images, train_vision

logger = logging.getLogger(__name__)


def train(config: RunConfig, on_checkpoint: Callable[[tuple[int, int]], object] | None = None) -> Path:
    """Train the run's student through all stages (the vision ones last); returns the saved student's folder.
    `on_checkpoint((stage index, step))` follows each checkpoint written (experiment trackers sync there)."""
    run = config.folder
    if config.has_vision_stage:
        check_training_images(config)  # a bad image stops the run now, not after the text stages
    if run.has_student:
        logger.info("run '%s': the text student is already trained: %s", config.name, run.student)
    else:
        _train_text(config, on_checkpoint)
    if config.has_vision_stage:
        train_vision(config, run.student, on_checkpoint)
    return run.student


def training_student(config: RunConfig, device: torch.device) -> Student:
    """The run's fresh student on `device`, its encoder compiled when `compile: true`."""
    student = build_student(config.student).to(device)
    if config.compile:
        student.backbone.compile()  # in place: parameter names, checkpoints and exports stay as they are
    return student


def _train_text(config: RunConfig, on_checkpoint: Callable[[tuple[int, int]], object] | None) -> None:
    seed_everything(config.seed)
    corpus = load_corpus(config)
    store = TeacherStore(config.store_dir, config.teachers, corpus.texts, corpus.roles)
    fc1 = config.student.heads[0]
    if fc1 != store.dim and any("cosine" in s.fc1_losses for s in config.stages):
        raise JasperError(
            f"student FC1 has {fc1} dims but the teachers give {'+'.join(map(str, store.dims))}={store.dim}: "
            "set student.heads[0] to the teacher dim"
        )
    device, ranks = setup_device(config.device)
    if config.cuda_graphs and (device.type != "cuda" or ranks.active):
        raise JasperError("cuda_graphs: true needs one CUDA device and one process; set it to false here")
    student = training_student(config, device)
    texts = student.inputs(corpus.texts, corpus.roles)  # what the student reads: each text behind its prompt
    if ranks.is_main:
        _log_cut_texts(student, texts)
    StageRunner(config, student, texts, store, ranks, on_checkpoint if ranks.is_main else None).run()
    if ranks.is_main:
        with folder_swap(config.folder.student) as staging:
            save_student(student, staging)
    barrier(ranks)


def _log_cut_texts(student: Student, texts: list[str]) -> None:
    """Say how many training texts are longer than the student's max_length (they are cut)."""
    lengths = [len(ids) for ids in student.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
    cut = sum(n > student.max_length for n in lengths)
    share = 100 * cut / max(1, len(texts))
    logger.info("student max_length %d (training cut): %s of %s texts (%.1f%%) are longer and cut; exports read %d",
                student.max_length, f"{cut:,}", f"{len(texts):,}", share, student.max_seq_length)  # fmt: skip
