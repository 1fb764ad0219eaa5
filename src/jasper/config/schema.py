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
    output_dir: str = "runs"
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 = autocast on CUDA, as the paper trains
    compile: bool = False  # torch.compile the student's encoder (in place: checkpoints and exports unchanged)
    # replay the objective (forward and backward) as CUDA graphs, one per batch shape: CUDA only, one process,
    # teacher targets (not short_head_target=self)
    cuda_graphs: bool = False
    threads: int | None = Field(default=None, gt=0)
    corpus: CorpusConfig
    teachers: list[TeacherConfig] = Field(min_length=1)
    store: StoreConfig = StoreConfig()
    student: StudentConfig
    loss: LossConfig = LossConfig()
    stages: list[StageConfig] = Field(default_factory=paper_stages, min_length=1)
    vision: VisionConfig | None = None
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()
    log: LogConfig = LogConfig()

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
    output_dir: str = "runs"
    eval: EvalConfig = EvalConfig()

    @property
    def run_dir(self) -> Path:
        """The folder the report is written to."""
        return Path(self.output_dir) / self.name
