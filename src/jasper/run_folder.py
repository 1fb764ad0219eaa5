"""A run folder's record of what was run: `config.yaml` is written only for work that uses it, and a config that
would change a started run's training is refused with the difference (or the run is restarted on request)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from jasper.config import ConfigError, RunConfig, load_config, save_config

logger = logging.getLogger(__name__)
CONFIG_NAME = "config.yaml"
# keys that never change what training computes: free to change between commands on one run
FREE_KEYS = {"name", "output_dir", "threads", "device", "eval", "export", "store.dir", "student.gradient_checkpointing"}
FREE_TEACHER_KEYS = {"name", "batch_size", "workers", "engine", "max_batch_tokens", "timeout_s", "max_retries"}
FREE_TEACHER_KEYS |= {"requests_per_minute", "api_key_env", "api_base"}
FREE_STAGE_KEYS = {"checkpoint_every", "micro_batch_size"}  # micro-batches give the same gradients (tested)
TRAINING_OUTPUTS = ("checkpoints", "train_log.jsonl", "student", "student.tmp", "export", "image", "image.tmp")


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flat(item, f"{prefix}{key}.")
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for index, item in enumerate(value):
            out |= _flat(item, f"{prefix}{index}.")
        return out | {f"{prefix}#": len(value)}
    return {prefix[:-1]: value}


def _free(key: str) -> bool:
    parts = key.split(".")
    if key in FREE_KEYS or parts[0] in FREE_KEYS or ".".join(parts[:2]) in FREE_KEYS:
        return True
    if parts[0] == "teachers" and len(parts) == 3:
        return parts[2] in FREE_TEACHER_KEYS
    return parts[0] == "stages" and len(parts) == 3 and parts[2] in FREE_STAGE_KEYS


def training_changes(before: RunConfig, after: RunConfig) -> list[str]:
    """`key: old -> new` for every key that would change what training computes."""
    old, new = _flat(before.model_dump()), _flat(after.model_dump())
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and not _free(k))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys]


def training_started(run_dir: Path) -> bool:
    """Whether the run has a checkpoint, a log of steps or a trained student."""
    log = run_dir / "train_log.jsonl"
    return (
        (run_dir / "checkpoints" / "last.pt").is_file()
        or (run_dir / "student" / "student.json").is_file()
        or (log.is_file() and log.stat().st_size > 0)
    )


def discard_training(run_dir: Path) -> None:
    """Remove the run's checkpoints, step log, student and exports (teacher vectors stay)."""
    for name in TRAINING_OUTPUTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    logger.info("restart: removed %s of run '%s'", ", ".join(TRAINING_OUTPUTS), run_dir)


def check_run(config: RunConfig, restart: bool = False, record: bool = True) -> None:
    """Refuse a config that changes a started run's training; with `restart`, discard that training instead.
    `record` writes the config to the run's config.yaml (for commands that do work with it)."""
    recorded = config.run_dir / CONFIG_NAME
    started = training_started(config.run_dir)
    changes = training_changes(load_config(recorded), config) if started and recorded.is_file() else []
    if started and restart:
        discard_training(config.run_dir)
    elif changes:
        listed = "\n  ".join(changes)
        raise ConfigError(
            f"run '{config.name}' was trained with another config ({recorded}); these would change it:\n"
            f"  {listed}\nUse a new name= for a new run, or pass --restart to discard this run's training "
            "(its teacher vectors are kept)"
        )
    if record:
        save_config(config, recorded)
