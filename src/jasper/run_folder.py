"""The layout of a run folder: every path jasper reads or writes under `runs/<name>/`, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jasper.io import staging_path

STUDENT_META = "student.json"  # marks a saved student folder
IMAGE_DIR = "image"  # the trained image side: in a run folder, and beside its exported heads


@dataclass(frozen=True)
class RunFolder:
    """One run's folder: its config, teachers, checkpoints, log, student, image side, exports and reports."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        """The resolved config of what was run."""
        return self.root / "config.yaml"

    @property
    def teachers(self) -> Path:
        """The default teacher-vector store (`store.dir` may put it elsewhere)."""
        return self.root / "teachers"

    @property
    def corpus(self) -> Path:
        """A built-in corpus, written once."""
        return self.root / "corpus.txt"

    @property
    def corpus_documents(self) -> Path:
        """The built-in corpus's documents (`corpus.documents`), written once."""
        return self.root / "corpus_documents.txt"

    def heldout_articles(self, split: str = "test") -> Path:
        """The built-in corpus's held-out Wikipedia articles of a split of the derived retrieval task (test: the
        reported one; dev: the one `eval_every` watches)."""
        return self.root / ("heldout_articles.json" if split == "test" else f"heldout_{split}_articles.json")

    def heldout_retrieval(self, split: str = "test") -> Path:
        """A split of the derived retrieval task of a corpus with article ids."""
        return self.root / ("heldout_retrieval.json" if split == "test" else f"heldout_retrieval_{split}.json")

    @property
    def checkpoints(self) -> Path:
        """Training state: `last.pt`, `vision.pt`, DeepSpeed shards."""
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        """Where the text stages resume from."""
        return self.checkpoints / "last.pt"

    @property
    def vision_checkpoint(self) -> Path:
        """Where the vision stages resume from."""
        return self.checkpoints / "vision.pt"

    def best_checkpoint(self, stage_index: int) -> Path:
        """The weights with the best dev score so far in a stage (`keep_best`)."""
        return self.checkpoints / f"best-stage{stage_index}.pt"

    @property
    def clusters(self) -> Path:
        """k-means clusters of the training rows' teacher vectors (`batching: clustered`), computed once."""
        return self.root / "clusters"

    @property
    def deepspeed(self) -> Path:
        """The ranks' DeepSpeed optimizer shards, one folder per checkpoint tag."""
        return self.checkpoints / "deepspeed"

    @property
    def train_log(self) -> Path:
        """One JSON line per optimizer step (and per periodic evaluation)."""
        return self.root / "train_log.jsonl"

    @property
    def student(self) -> Path:
        """The trained text student (backbone, tokenizer, heads)."""
        return self.root / "student"

    @property
    def image(self) -> Path:
        """The trained image side (projections and `tower.json`)."""
        return self.root / IMAGE_DIR

    @property
    def vision_work(self) -> Path:
        """The vision stage's caches: image features, caption vectors, hub copies."""
        return self.root / "vision"

    @property
    def export(self) -> Path:
        """Exported sentence-transformers folders, `dim-<D>/` per head."""
        return self.root / "export"

    def export_head(self, dim: int) -> Path:
        """The exported folder of head `dim`."""
        return self.export / f"dim-{dim}"

    @property
    def report_json(self) -> Path:
        """The evaluation's rows, notes and wall time."""
        return self.root / "report.json"

    @property
    def report_md(self) -> Path:
        """The evaluation table, notes and plots, for people."""
        return self.root / "report.md"

    @property
    def plots(self) -> Path:
        """PNG plots of the run."""
        return self.root / "plots"

    @property
    def eval_cache(self) -> Path:
        """Scores of this run's student, by fingerprint."""
        return self.root / "eval_cache.json"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard's event files (`log.report_to: [tensorboard]`)."""
        return self.root / "tb"

    @property
    def tracking_state(self) -> Path:
        """The tracked runs' ids (W&B, MLflow) and how far the log has been sent to them."""
        return self.root / "tracking.json"

    @property
    def has_student(self) -> bool:
        """Whether the text student is trained and saved."""
        return (self.student / STUDENT_META).is_file()

    @property
    def training_outputs(self) -> tuple[Path, ...]:
        """What `--restart` discards: everything training wrote (teacher vectors stay)."""
        return (self.checkpoints, self.train_log, self.student, staging_path(self.student), self.export, self.image,
                staging_path(self.image), self.tensorboard, self.tracking_state)  # fmt: skip


def saved_student(path: str | Path) -> Path | None:
    """The saved student a folder names: a student folder itself, or a run folder's `student/`; else None."""
    path = Path(path)
    if (path / STUDENT_META).is_file():
        return path
    run = RunFolder(path)
    return run.student if run.has_student else None


def run_holding(path: Path) -> RunFolder | None:
    """The run folder whose `student/` or `export/` `path` is, or None."""
    run = RunFolder(Path(path).parent)
    return run if Path(path) in (run.student, run.export) else None
