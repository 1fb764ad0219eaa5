"""Evaluate a run: the student at every head, its initialisation, each teacher and any extra model,
on every offline task plus agreement with the teachers; results cached per (model, dim, task)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jasper.config import EvalConfig, RunConfig, TeacherConfig
from jasper.data.prepare import load_corpus, split_rows
from jasper.data.store import TeacherStore
from jasper.eval import metrics
from jasper.eval.cache import ScoreCache, shared_cache_path
from jasper.eval.offline_tasks import benchmark_tasks, offline_tasks
from jasper.eval.scores import Score
from jasper.eval.tasks import Task, metric_names
from jasper.models.student import Student
from jasper.progress import progress_bar

logger = logging.getLogger(__name__)
COSINE_TASK = "teacher-cosine"
SIMILARITY_TASK = "teacher-similarity"
ENCODE_CHUNK = 256

# (texts, role) -> {dim: L2-normalised vectors}: each model reads a text in a role with its own prompt for it
Encoder = Callable[[list[str], str], dict[int, np.ndarray]]


@dataclass
class Candidate:
    """A model to evaluate: its name in the report, a cache fingerprint, and how to embed texts."""

    name: str
    fingerprint: str
    dims: list[int]
    encode: Encoder
    shared: bool = False  # the same model in every run (teacher, initialisation): scores go to the shared cache
    teacher: bool = False  # a teacher or their concatenation (tasks may leave teachers out: `eval.retrieval`)
    # (role, text) -> {dim: vector}: tasks sharing texts (newsgroups classification and clustering, the splits of a
    # retrieval benchmark) embed them once
    memo: dict[tuple[str, str], dict[int, np.ndarray]] = field(default_factory=dict)


def task_scores(candidate: Candidate, tasks: list[Task], cache: ScoreCache) -> list[Score]:
    """Every task for every dim of the candidate, computing only what the cache lacks."""
    rows: list[Score] = []
    for task in tasks:
        if candidate.teacher and not getattr(task, "with_teachers", True):
            continue
        cached = cache.get(candidate.fingerprint, task)
        if cached is None:
            vectors = _encode_all(candidate, task.texts, task.roles, task.name)
            cached = {dim: task.score(vectors[dim]) for dim in candidate.dims}
            cache.put(candidate.fingerprint, task, cached)
        for dim, values in cached.items():
            rows += [Score(candidate.name, int(dim), name, value) for name, value in metric_names(task.name, values)]
    return rows


def _encode_all(candidate: Candidate, texts: list[str], roles: list[str], task: str) -> dict[int, np.ndarray]:
    """{dim: (len(texts), dim)} normalised vectors, text i read in role i; what the memo holds is not embedded again."""
    keys = list(zip(roles, texts, strict=True))
    missing = [key for key in dict.fromkeys(keys) if key not in candidate.memo]
    with progress_bar(len(missing), f"{candidate.name} {task}", "text") as bar:
        for role in dict.fromkeys(r for r, _ in missing):
            mine = [text for r, text in missing if r == role]
            for start in range(0, len(mine), ENCODE_CHUNK):
                batch = mine[start : start + ENCODE_CHUNK]
                found = candidate.encode(batch, role)
                for row, text in enumerate(batch):
                    candidate.memo[(role, text)] = {dim: vectors[row] for dim, vectors in found.items()}
                bar.update(len(batch))
    return {d: metrics.normalize_rows(np.stack([candidate.memo[k][d] for k in keys])) for d in candidate.dims}


def agreement_rows(model: str, vectors: dict[int, np.ndarray], target: np.ndarray) -> list[Score]:
    """Agreement with the concatenated teacher vectors on held-out rows."""
    rows = []
    for dim, found in vectors.items():
        if dim == target.shape[1]:
            rows.append(Score(model, dim, COSINE_TASK, metrics.mean_teacher_cosine(found, target)))
        rows.append(Score(model, dim, SIMILARITY_TASK, metrics.similarity_agreement(found, target)))
    return rows


def _lazy(factory: Callable[[], Encoder]) -> Encoder:
    """An encoder that loads its model on first use, so fully cached models are never loaded."""
    loaded: list[Encoder] = []

    def encode(texts: list[str], role: str) -> dict[int, np.ndarray]:
        if not loaded:
            loaded.append(factory())
        return loaded[0](texts, role)

    return encode


def _student_encoder(student: object, dims: list[int | None], batch_size: int, prompts: bool = True) -> Encoder:
    """The student at `dims`, reading at its max_seq_length; `prompts=False` reads every text as given (the
    initialisation: the base model has no prompts of its own)."""
    from jasper.models.student import Student

    assert isinstance(student, Student)

    def encode(texts: list[str], role: str) -> dict[int, np.ndarray]:
        found = student.encode(texts, dims, batch_size=batch_size, role=role if prompts else None)
        return {d if d is not None else student.hidden_size: v for d, v in found.items()}

    return encode


def _teacher_encoder(config: TeacherConfig, dim: int) -> Encoder:
    from jasper.teachers import build_teacher
    from jasper.teachers.base import teacher_inputs

    teacher = build_teacher(config)
    return lambda texts, role: {dim: teacher.encode(teacher_inputs(config, texts, role))}


def _sentence_transformer_encoder(name: str, batch_size: int) -> Encoder:
    from jasper.encode import load_sentence_transformer, st_encode

    model = load_sentence_transformer(name)

    def encode(texts: list[str], role: str) -> dict[int, np.ndarray]:
        vectors = st_encode(model, texts, batch_size, normalize=False, role=role)
        return {int(vectors.shape[1]): vectors}

    return encode


def _sentence_transformer_candidate(name: str, batch_size: int) -> Candidate:
    encoder = _sentence_transformer_encoder(name, batch_size)
    dim = next(iter(encoder(["dimension probe"], "text")))
    return Candidate(name, _key("model", [name, _stat_fingerprint(name)]), [dim], encoder, shared=True)


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _stat_fingerprint(name: str) -> str:
    """For a local file or folder: every file's path, size and mtime (cheap, changes on any rewrite); a hub id or
    `module:function` is its own fingerprint."""
    path = Path(name)
    if not path.exists():
        return ""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(str(p.relative_to(path)) if p != path else p.name, p.stat().st_size, p.stat().st_mtime) for p in files]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


# teacher settings that change its vectors (not its name, batch size or workers)
TEACHER_IDENTITY = ("backend", "model", "prompt", "prompts", "max_length", "trust_remote_code", "dtype", "dimensions")


def teacher_fingerprint(teacher: TeacherConfig) -> str:
    """The same teacher in any run gets the same key in the shared score cache."""
    identity = teacher.model_dump(include=set(TEACHER_IDENTITY))
    return _key("teacher", [identity, _stat_fingerprint(teacher.model)])


def _key(kind: str, data: object) -> str:
    return f"{kind}:" + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def runs_foreign_code(teacher: TeacherConfig) -> bool:
    """Whether evaluating this teacher would import code or call an endpoint that its config names."""
    return teacher.backend != "sentence-transformers" or teacher.trust_remote_code


def run_candidates(
    config: RunConfig, store: TeacherStore, student: Student, student_dir: Path, trusted: bool = True
) -> tuple[list[Candidate], list[str]]:
    """(candidates, notes): the student (every head), its initialisation, each teacher and `eval.models`;
    untrusted, teachers whose config names code or an endpoint are left out (their stored vectors still serve
    the agreement rows)."""
    batch = config.eval.batch_size
    notes: list[str] = []
    found = [
        Candidate(
            "student",
            _key("student", _folder_fingerprint(student_dir)),
            list(student.head_dims),
            _student_encoder(student, list(student.head_dims), batch),
        )
    ]
    if config.eval.init and config.student.trust_remote_code and not trusted:
        notes.append("init skipped: its model needs trust_remote_code; a run folder cannot grant it (--trust-config)")
    elif config.eval.init:
        # the base model as it comes: no prompts, reading as long as the student does
        init_config = config.student.model_dump(include={"model", "keep_layers"}) | {"reads": student.max_seq_length}
        found.append(
            Candidate(
                "init",
                _key("init", [init_config, _stat_fingerprint(config.student.model)]),
                [student.hidden_size],
                _lazy(lambda: _student_encoder(_initialisation(config, student.max_seq_length), [None], batch, False)),
                shared=True,
            )
        )
    if config.eval.teachers:
        for teacher, dim in zip(config.teachers, store.dims, strict=True):
            if runs_foreign_code(teacher) and not trusted:
                notes.append(
                    f"teacher '{teacher.name}' not evaluated on the tasks: its config names code or an endpoint "
                    f"({teacher.backend}: {teacher.model}) that a run folder may not run; pass --trust-config"
                )
                continue
            encoder = _lazy(lambda t=teacher, d=dim: _teacher_encoder(t, d))  # type: ignore[misc]
            found.append(Candidate(teacher.name, teacher_fingerprint(teacher), [dim], encoder, True, True))
        parts = [c for c in found if c.name in store.names]
        if len(parts) == len(store.names) > 1:
            found.append(concatenated_teachers(parts))
    for name in config.eval.models:
        found.append(_sentence_transformer_candidate(name, batch))
    return found, notes


def _initialisation(config: RunConfig, reads: int) -> Student:
    """The student's starting point as its base model comes: no prompts, reading `reads` tokens."""
    from jasper.models.student import build_student, pack_for_inference

    plain = config.student.model_copy(update={"prompts": {}, "default_prompt_name": None, "max_seq_length": reads})
    return pack_for_inference(build_student(plain).eval())


CONCAT_NAME = "teachers (concat)"


def concatenated_teachers(teachers: list[Candidate]) -> Candidate:
    """The student's target itself: each teacher's vector normalised, concatenated (normalised again when
    scored). Encodes through the teachers' own candidates, so texts they embedded are not embedded again."""

    def encode(texts: list[str], role: str) -> dict[int, np.ndarray]:
        vectors = [_encode_all(t, texts, [role] * len(texts), "concat")[t.dims[0]] for t in teachers]
        joined = np.concatenate(vectors, axis=1)
        return {joined.shape[1]: joined}

    dim = sum(t.dims[0] for t in teachers)
    fingerprint = _key("concat", [t.fingerprint for t in teachers])
    return Candidate(CONCAT_NAME, fingerprint, [dim], encode, shared=True, teacher=True)


def evaluate_run(
    config: RunConfig, student_dir: Path | None = None, trusted: bool = True
) -> tuple[list[Score], list[str]]:
    """(scores, notes): every candidate on every offline task, plus teacher agreement on held-out rows.
    `trusted=False` (a run folder from elsewhere) runs no code that the run's config names."""
    from jasper.models.student import load_student

    student_dir = student_dir or config.folder.student
    corpus = load_corpus(config)
    _, held = split_rows(len(corpus), config.corpus.holdout, config.seed)
    store = TeacherStore(config.store_dir, config.teachers, corpus.texts, corpus.roles)
    settings = config.eval
    tasks, notes = offline_tasks(settings.stsb_dir, config.run_dir, list(settings.sts_files), settings.stsb_dev)
    found, skipped = benchmark_tasks(settings.retrieval)
    tasks, notes = tasks + found, notes + skipped
    student = load_student(student_dir, inference=True)
    run_cache, shared_cache = ScoreCache(config.folder.eval_cache), ScoreCache(shared_cache_path())
    scores: list[Score] = []
    target = store.vectors(held).numpy()
    held_texts = [corpus.texts[int(i)] for i in held]
    held_roles = [corpus.roles[int(i)] for i in held]
    candidates, skipped = run_candidates(config, store, student, student_dir, trusted)
    notes += skipped
    for candidate in candidates:
        logger.info("evaluating %s", candidate.name)
        scores += task_scores(candidate, tasks, shared_cache if candidate.shared else run_cache)
        if len(held) >= 2 and candidate.name not in store.names and candidate.name != CONCAT_NAME:
            scores += agreement_rows(
                candidate.name, _encode_all(candidate, held_texts, held_roles, "agreement"), target
            )
    if len(held) < 2:
        notes.append("teacher agreement skipped: corpus.holdout < 2")
    elif config.eval.teachers:  # each teacher's stored vectors against the concatenation: no model to run
        for name, dim in zip(store.names, store.dims, strict=True):
            own = store.teacher_vectors(name, held).numpy()
            scores.append(Score(name, dim, SIMILARITY_TASK, metrics.similarity_agreement(own, target)))
    if config.vision is not None:
        from jasper.eval.vision import vision_scores

        image_scores, image_notes = vision_scores(config, student)
        scores, notes = scores + image_scores, notes + image_notes
    return scores, notes


def evaluate_model(name: str, settings: EvalConfig, run_dir: Path | None = None) -> tuple[list[Score], list[str]]:
    """Every offline task for any sentence-transformers model (folder or hub id), e.g. an exported head.

    `run_dir` adds that run's derived retrieval task (its held-out articles), to compare with the run's student.
    """
    tasks, notes = offline_tasks(settings.stsb_dir, run_dir, list(settings.sts_files), settings.stsb_dev)
    found, skipped = benchmark_tasks(settings.retrieval)
    tasks, notes = tasks + found, notes + skipped
    candidate = _sentence_transformer_candidate(name, settings.batch_size)
    return task_scores(candidate, tasks, ScoreCache(shared_cache_path())), notes
