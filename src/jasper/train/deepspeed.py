"""DeepSpeed ZeRO (stages 1 and 2) for `jasper train`, when `accelerate launch` runs it with a DeepSpeed config.

`accelerate launch --config_file configs/accelerate/zero2.yaml -m jasper train run.yaml` exports the
config to the environment; accelerate's own `DeepSpeedPlugin` reads it back here, jasper fills in what
only it knows (the batch sizes of each stage), and every stage's trainable parameters go to a
`deepspeed.initialize` engine, which shards the optimizer states and gradients over the ranks.

What jasper keeps for itself: the global batch (each rank embeds B/N rows, the losses see all B, as
with DDP), mixed precision (jasper's `precision: bf16` becomes the engine's `torch_autocast`: autocast
over float32 weights, so the saved student is float32), and no gradient clipping unless the DeepSpeed
config sets a number (DeepSpeed's own default clips at 1.0).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from jasper.errors import JasperError

ENV_FLAG = "ACCELERATE_USE_DEEPSPEED"


def launched_with_deepspeed() -> bool:
    """Whether the launcher asked for DeepSpeed (accelerate sets ACCELERATE_USE_DEEPSPEED=true)."""
    return os.environ.get(ENV_FLAG, "false").lower() == "true"


def _drop_auto(config: dict[str, Any]) -> dict[str, Any]:
    """Remove the values accelerate leaves as 'auto', so DeepSpeed's defaults apply."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out[key] = _drop_auto(value)
        elif value != "auto":
            out[key] = value
    return out


def deepspeed_config(
    stage_name: str, batch_size: int, world: int, micro_batch_size: int | None, bf16_autocast: bool = False
) -> dict[str, Any]:
    """The DeepSpeed config for one stage, from the launcher's accelerate config plus the stage's batch."""
    try:
        import deepspeed  # noqa: F401
        from accelerate.utils import DeepSpeedPlugin
    except ImportError as error:
        raise JasperError(
            "launched with a DeepSpeed accelerate config, but deepspeed/accelerate are not installed: "
            "pip install 'jasper-distill[distributed]'"
        ) from error
    config = copy.deepcopy(DeepSpeedPlugin().deepspeed_config)
    zero = config.get("zero_optimization", {}).get("stage", 0)
    if zero not in (0, 1, 2):
        raise JasperError(
            f"DeepSpeed ZeRO stage {zero} shards the parameters themselves, which the student's heads read "
            "directly: use zero_stage 1 or 2"
        )
    if config.get("gradient_accumulation_steps", "auto") not in ("auto", 1):
        raise JasperError(
            "DeepSpeed gradient_accumulation_steps > 1 would split the batch that the in-batch losses need: "
            "set the stage's micro_batch_size (gradient caching, the same objective) instead"
        )
    if micro_batch_size:
        raise JasperError(
            f"stage '{stage_name}': micro_batch_size (gradient caching) runs its own backward passes, which "
            "DeepSpeed's engine does not see: drop it, or launch without DeepSpeed (DDP supports it)"
        )
    if config.get("gradient_clipping", "auto") == "auto":
        config["gradient_clipping"] = 0.0  # DeepSpeed's default is 1.0; jasper's DDP path does not clip
    config = _drop_auto(config)
    config.update(
        train_batch_size=batch_size,
        train_micro_batch_size_per_gpu=batch_size // world,
        gradient_accumulation_steps=1,
        steps_per_print=2**31 - 1,
    )
    # mixed precision stays jasper's `precision` (autocast over float32 weights), whatever accelerate's
    # mixed_precision says; the engine's forward switches off any autocast around it unless its own
    # `torch_autocast` section is on, so jasper's bf16 goes there
    config["bf16"] = {"enabled": False}
    config["fp16"] = {"enabled": False}
    config["torch_autocast"] = {"enabled": bf16_autocast, "dtype": "bfloat16"}
    return config


def initialize(model: Any, optimizer: Any, config: dict[str, Any]) -> Any:
    """A DeepSpeed engine around `model` and `optimizer` (the optimizer's parameters are the ones that train)."""
    import deepspeed

    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine


def save_engine(engine: Any, folder: Path, tag: str) -> str:
    """Every rank writes its optimizer shard under `folder/tag` (a collective); returns the tag."""
    engine.save_checkpoint(str(folder), tag=tag, save_latest=False)
    return tag


def load_engine(engine: Any, folder: Path, tag: str | None) -> None:
    """Reload this rank's optimizer shard and the weights from `folder/tag` (the schedule is jasper's own)."""
    if not tag or not (folder / tag).is_dir():
        raise JasperError(
            f"the checkpoint to resume has no DeepSpeed optimizer state ('{folder / str(tag)}'): it was written "
            "without DeepSpeed. Resume with the launcher that started the run."
        )
    engine.load_checkpoint(str(folder), tag=tag, load_lr_scheduler_states=False)
