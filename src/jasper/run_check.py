"""A run's record of what was run: `config.yaml` is written only for work that uses it, and a config that would
change a started run's training is refused with the difference (or the run is restarted on request)."""

from __future__ import annotations

import logging
import shutil
from typing import Any

from jasper.config import ConfigError, RunConfig, load_config, save_config
from jasper.run_folder import RunFolder

logger = logging.getLogger(__name__)
# keys that never change what training computes: free to change between commands on one run
FREE_KEYS = {"name", "output_dir", "threads", "device", "eval", "export", "log", "store.dir"}
FREE_KEYS |= {"student.gradient_checkpointing"}
FREE_TEACHER_KEYS = {"name", "batch_size", "workers", "engine", "max_batch_tokens", "timeout_s", "max_retries"}
FREE_TEACHER_KEYS |= {"requests_per_minute", "api_key_env", "api_base"}
FREE_STAGE_KEYS = {"checkpoint_every", "micro_batch_size"}  # micro-batches give the same gradients (tested)


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


def training_started(run: RunFolder) -> bool:
    """Whether the run has a checkpoint, a log of steps or a trained student."""
    log = run.train_log
    return run.last_checkpoint.is_file() or run.has_student or (log.is_file() and log.stat().st_size > 0)


def discard_training(run: RunFolder) -> None:
    """Remove the run's checkpoints, step log, student and exports (teacher vectors stay)."""
    for path in run.training_outputs:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    logger.info("restart: removed %s of run '%s'", ", ".join(p.name for p in run.training_outputs), run.root)


def check_run(config: RunConfig, restart: bool = False, record: bool = True) -> None:
    """Refuse a config that changes a started run's training; with `restart`, discard that training instead.
    `record` writes the config to the run's config.yaml (for commands that do work with it)."""
    run = config.folder
    recorded = run.config
    started = training_started(run)
    # the record read as the folder's config, anchored alike: paths rebased for a command run from elsewhere
    changes = training_changes(load_config(run.root), config) if started and recorded.is_file() else []
    if started and restart:
        discard_training(run)
    elif changes:
        listed = "\n  ".join(changes)
        raise ConfigError(
            f"run '{config.name}' was trained with another config ({recorded}); these would change it:\n"
            f"  {listed}\nUse a new name= for a new run, or pass --restart to discard this run's training "
            "(its teacher vectors are kept)"
        )
    if record:
        save_config(config, recorded)
