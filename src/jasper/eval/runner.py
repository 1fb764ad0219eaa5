"""Quick evaluation of a run: the student at every head, its initialisation and each teacher."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from jasper.config import RunConfig
from jasper.data.prepare import load_texts, split_rows
from jasper.data.store import TeacherStore
from jasper.eval import metrics
from jasper.eval.sts import StsPairs, read_sts, stsb_test_path
from jasper.teachers import Teacher

logger = logging.getLogger(__name__)
STSB_TASK = "sts-b-test"
COSINE_TASK = "teacher-cosine"
SIMILARITY_TASK = "teacher-similarity"

# texts -> {dim: vectors}
Encoder = Callable[[list[str]], dict[int, np.ndarray]]


@dataclass
class Score:
    """One cell of the report."""

    model: str
    dim: int
    task: str
    score: float


def sts_rows(model: str, encode: Encoder, pairs: StsPairs) -> list[Score]:
    """STS-B test score for every dim the encoder gives."""
    left, right = encode(pairs.left), encode(pairs.right)
    return [Score(model, dim, STSB_TASK, metrics.sts_spearman(left[dim], right[dim], pairs.scores)) for dim in left]


def agreement_rows(model: str, vectors: dict[int, np.ndarray], target: np.ndarray) -> list[Score]:
    """Agreement with the concatenated teacher vectors on held-out rows."""
    rows = []
    for dim, found in vectors.items():
        if dim == target.shape[1]:
            rows.append(Score(model, dim, COSINE_TASK, metrics.mean_teacher_cosine(found, target)))
        rows.append(Score(model, dim, SIMILARITY_TASK, metrics.similarity_agreement(found, target)))
    return rows


def _student_encoder(student: object, dims: list[int | None], batch_size: int) -> Encoder:
    from jasper.models.student import Student

    assert isinstance(student, Student)

    def encode(texts: list[str]) -> dict[int, np.ndarray]:
        found = student.encode(texts, dims, batch_size=batch_size)
        return {d if d is not None else student.hidden_size: v for d, v in found.items()}

    return encode


def _teacher_encoder(teacher: Teacher, dim: int) -> Encoder:
    return lambda texts: {dim: teacher.encode(texts)}


def evaluate_run(config: RunConfig, student_dir: Path | None = None) -> tuple[list[Score], list[str]]:
    """(scores, notes) for the run's student, its initialisation and its teachers."""
    from jasper.models.student import build_student, load_student

    notes: list[str] = []
    texts = load_texts(config)
    _, held = split_rows(len(texts), config.corpus.holdout, config.seed)
    store = TeacherStore(config.store_dir, config.teachers, texts)
    target = store.vectors(held).numpy()
    held_texts = [texts[int(i)] for i in held]
    sts_path = stsb_test_path(config.eval.stsb_dir)
    pairs = read_sts(sts_path) if sts_path else None
    if pairs is None:
        notes.append(f"STS-B skipped: no sts-test.csv under '{config.eval.stsb_dir}'")
    if len(held) < 2:
        notes.append("teacher agreement skipped: corpus.holdout < 2")

    models: list[tuple[str, Encoder]] = []
    student = load_student(student_dir or config.run_dir / "student")
    models.append(("student", _student_encoder(student, list(student.head_dims), config.eval.batch_size)))
    if config.eval.init:
        init = build_student(config.student)
        models.append(("init", _student_encoder(init, [None], config.eval.batch_size)))
    scores: list[Score] = []
    for name, encode in models:
        logger.info("evaluating %s", name)
        if pairs is not None:
            scores += sts_rows(name, encode, pairs)
        if len(held) >= 2:
            scores += agreement_rows(name, encode(held_texts), target)
    if config.eval.teachers:
        scores += _teacher_rows(config, store, held, target, pairs)
    return scores, notes


def _teacher_rows(
    config: RunConfig, store: TeacherStore, held: np.ndarray, target: np.ndarray, pairs: StsPairs | None
) -> list[Score]:
    from jasper.teachers import build_teacher

    rows: list[Score] = []
    for teacher_config, dim in zip(config.teachers, store.dims, strict=True):
        name = teacher_config.name
        if len(held) >= 2:
            own = store.teacher_vectors(name, held).numpy()
            rows.append(Score(name, dim, SIMILARITY_TASK, metrics.similarity_agreement(own, target)))
        if pairs is not None:
            logger.info("evaluating teacher %s", name)
            rows += sts_rows(name, _teacher_encoder(build_teacher(teacher_config), dim), pairs)
    return rows


def evaluate_model(name: str, stsb_dir: str | None, batch_size: int = 64) -> tuple[list[Score], list[str]]:
    """STS-B test for any sentence-transformers model (folder or hub id), e.g. an exported head."""
    from sentence_transformers import SentenceTransformer

    from jasper.assets import resolve_model

    sts_path = stsb_test_path(stsb_dir)
    if sts_path is None:
        return [], [f"STS-B skipped: no sts-test.csv under '{stsb_dir}'"]
    model = SentenceTransformer(resolve_model(name), device="cpu")

    def encode(texts: list[str]) -> dict[int, np.ndarray]:
        vectors = np.asarray(model.encode(texts, batch_size=batch_size, show_progress_bar=True))
        return {int(vectors.shape[1]): vectors}

    return sts_rows(name, encode, read_sts(sts_path)), []


def scores_as_dicts(scores: list[Score]) -> list[dict[str, object]]:
    """Rows for report.json."""
    return [asdict(s) for s in scores]
