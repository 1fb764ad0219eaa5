"""The typed config tree (`schema`) and how a run's config is loaded (`load`)."""

from jasper.config.load import build_config, load_config, model_eval_config, save_config
from jasper.config.schema import (
    ConfigError,
    CorpusConfig,
    EvalConfig,
    ExportConfig,
    LogConfig,
    LossConfig,
    LossName,
    ModelEvalConfig,
    RunConfig,
    SourceConfig,
    StageConfig,
    StoreConfig,
    StudentConfig,
    TeacherConfig,
    VisionConfig,
    paper_stages,
)

__all__ = [
    "ConfigError",
    "CorpusConfig",
    "EvalConfig",
    "ExportConfig",
    "LogConfig",
    "LossConfig",
    "LossName",
    "ModelEvalConfig",
    "RunConfig",
    "SourceConfig",
    "StageConfig",
    "StoreConfig",
    "StudentConfig",
    "TeacherConfig",
    "VisionConfig",
    "build_config",
    "load_config",
    "model_eval_config",
    "paper_stages",
    "save_config",
]
