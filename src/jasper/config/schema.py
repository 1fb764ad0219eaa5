"""The typed config tree: every key of a run, its default and its check; unknown keys are errors. The sections
live in `base`, `data`, `student`, `stages` and `outputs`; the whole run here."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from jasper.config.base import ROLES, ConfigError, LossName, Role, Strict
from jasper.config.data import CorpusConfig, SourceConfig, StoreConfig, TeacherConfig
from jasper.config.outputs import EvalConfig, ExportConfig, LogConfig, RetrievalBenchmarkConfig, VisionConfig
from jasper.config.stages import StageConfig, paper_stages
from jasper.config.student import LossConfig, StudentConfig
from jasper.run_folder import RunFolder

__all__ = [
    "ROLES",
    "ConfigError",
    "CorpusConfig",
    "EvalConfig",
    "ExportConfig",
    "LogConfig",
    "LossConfig",
    "LossName",
    "ModelEvalConfig",
    "RetrievalBenchmarkConfig",
    "Role",
    "RunConfig",
    "SourceConfig",
    "StageConfig",
    "StoreConfig",
    "StudentConfig",
    "TeacherConfig",
    "VisionConfig",
    "paper_stages",
]


class RunConfig(Strict):
    """A whole run: corpus, teachers, student, losses, stages, eval and export."""

    # the run folder a command was given (`jasper export PATH/TO/RUN`): it wins over output_dir/name, from any cwd
    _folder: Path | None = PrivateAttr(default=None)

    name: str
    """The run's name: its folder is `<output_dir>/<name>`."""
    output_dir: str = "runs"
    """Where run folders go."""
    seed: int = 0
    """Seeds the corpus sample, the held-out rows and articles, the batches and the initialisation."""
    device: str = "auto"
    """`auto` (CUDA when there is one), `cpu`, `cuda` or `cuda:N`."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """`bf16`: autocast on CUDA, as the paper trains (float32 on a CPU)."""
    compile: bool = False
    """`torch.compile` the student's encoder (in place: checkpoints and exports are unchanged)."""
    cuda_graphs: bool = False
    """Replay the objective (forward and backward) as CUDA graphs, one per batch shape: CUDA, one process and
    teacher targets only."""
    threads: int | None = Field(default=None, gt=0)
    """CPU threads for torch and OpenMP teachers; unset, their defaults."""
    corpus: CorpusConfig
    """The training texts."""
    teachers: list[TeacherConfig] = Field(min_length=1)
    """The teachers; their L2-normalised vectors, concatenated and normalised again, are the target."""
    store: StoreConfig = StoreConfig()
    """The teacher-vector store."""
    student: StudentConfig
    """The student."""
    loss: LossConfig = LossConfig()
    """The losses' weights."""
    stages: list[StageConfig] = Field(default_factory=paper_stages, min_length=1)
    """The training stages, in order; unset, the paper's stages 1-3."""
    vision: VisionConfig | None = None
    """Stage 4's image side (a stage with `train: vision` needs it)."""
    eval: EvalConfig = EvalConfig()
    """The evaluation after training."""
    export: ExportConfig = ExportConfig()
    """What `jasper run` exports."""
    log: LogConfig = LogConfig()
    """Experiment tracking."""

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        names = [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"teacher names must be unique, got {names}")
        kinds = [stage.train == "vision" for stage in self.stages]
        if any(kinds) and self.vision is None:
            raise ValueError("a stage with train: vision needs a `vision:` section (encoder, data)")
        if any(kinds) and not all(kinds[kinds.index(True) :]):
            raise ValueError("vision stages come after every text stage (the text side is frozen by then)")
        if all(kinds):
            raise ValueError("a vision stage needs a trained text student: list the text stages before it")
        for stage in self.stages:
            listed = stage.heads if isinstance(stage.heads, list) else []
            for dim in listed + (stage.train_heads or []):
                if dim not in self.student.heads:
                    raise ValueError(f"stage '{stage.name}' uses head {dim}, student.heads is {self.student.heads}")
        for dim in self.export.dims or []:
            if dim not in self.student.heads:
                raise ValueError(f"export dim {dim} is not a head, student.heads is {self.student.heads}")
        return self

    @property
    def run_dir(self) -> Path:
        """The folder this run writes to: the one a command named, else `output_dir/name`."""
        return self._folder if self._folder is not None else Path(self.output_dir) / self.name

    @property
    def folder(self) -> RunFolder:
        """The run folder's layout: every path the run reads or writes."""
        return RunFolder(self.run_dir)

    @property
    def has_vision_stage(self) -> bool:
        """Whether a stage trains the image side (the validator ensures a `vision:` section then)."""
        return any(stage.train == "vision" for stage in self.stages)

    @property
    def store_dir(self) -> Path:
        """The folder of the teacher-vector store."""
        return Path(self.store.dir) if self.store.dir else self.folder.teachers


class ModelEvalConfig(Strict):
    """`jasper eval MODEL` on a plain model: where its report goes, and the evaluation settings."""

    name: str
    """The report's folder name (default `eval-<model folder>`)."""
    output_dir: str = "runs"
    """Where the report's folder goes."""
    eval: EvalConfig = EvalConfig()
    """The evaluation settings."""

    @property
    def run_dir(self) -> Path:
        """The folder the report is written to."""
        return Path(self.output_dir) / self.name
