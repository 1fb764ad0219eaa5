"""The DeepSpeed config jasper builds from the launcher's accelerate config, and the setups it refuses."""

from __future__ import annotations

import importlib.util

import pytest

from jasper.errors import JasperError
from jasper.train.deepspeed import deepspeed_config, launched_with_deepspeed

pytestmark = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs deepspeed")


@pytest.fixture
def zero(monkeypatch):
    """Set the environment `accelerate launch` exports for a DeepSpeed config of the given ZeRO stage."""

    def launch(stage: int, accumulation: int = 1) -> None:
        monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
        monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", str(stage))
        monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", str(accumulation))

    return launch


def test_stage_batch_precision_and_no_clipping(zero):
    zero(2)
    assert launched_with_deepspeed()
    config = deepspeed_config("s", batch_size=64, world=4, micro_batch_size=None, bf16_autocast=True)
    assert config["zero_optimization"]["stage"] == 2
    assert (config["train_batch_size"], config["train_micro_batch_size_per_gpu"]) == (64, 16)
    assert config["gradient_accumulation_steps"] == 1
    assert config["gradient_clipping"] == 0.0  # DeepSpeed would clip at 1.0; jasper's DDP path does not
    assert config["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    assert not config["bf16"]["enabled"] and not config["fp16"]["enabled"]
    assert "auto" not in _values(config)  # accelerate's placeholders are all resolved or dropped


def _values(tree: dict) -> list:
    return [v for value in tree.values() for v in (_values(value) if isinstance(value, dict) else [value])]


def test_not_launched_with_deepspeed(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert not launched_with_deepspeed()


def test_zero3_is_refused(zero):
    zero(3)
    with pytest.raises(JasperError, match="ZeRO stage 3.*use zero_stage 1 or 2"):
        deepspeed_config("s", 64, 2, None)


def test_deepspeed_gradient_accumulation_is_refused(zero):
    zero(2, accumulation=4)
    with pytest.raises(JasperError, match="gradient_accumulation_steps > 1.*micro_batch_size"):
        deepspeed_config("s", 64, 2, None)


def test_gradient_caching_under_deepspeed_is_refused(zero):
    zero(2)
    with pytest.raises(JasperError, match="stage 'big': micro_batch_size.*DeepSpeed"):
        deepspeed_config("big", 64, 2, micro_batch_size=8)
