"""Load a Hugging Face encoder (or the Transformer of a sentence-transformers folder) and cut its layers."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any, cast

from torch import nn

from jasper.assets import resolve_model
from jasper.errors import JasperError
from jasper.runtime import quiet_transformers

logger = logging.getLogger(__name__)

# where encoder families keep their stack of layers
LAYER_PATHS = ("encoder.layer", "layers", "model.layers", "transformer.layer", "h", "encoder.layers")


def transformer_path(name: str) -> str:
    """The folder holding the HF model: a sentence-transformers folder's Transformer module, or `name`."""
    resolved = resolve_model(name)
    modules = Path(resolved) / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text(encoding="utf-8")):
            if module.get("type", "").endswith("Transformer"):
                return str(Path(resolved) / module.get("path", ""))
    return resolved


MAX_SANE_LENGTH = 100_000  # tokenizers without a limit report ~1e30


def native_max_length(name: str, tokenizer: Any, hf_config: Any) -> int:
    """How long the base model reads: its sentence-transformers `max_seq_length` (256 for all-MiniLM-L6-v2), else
    the tokenizer's limit, else its position embeddings."""
    settings = _sentence_transformers_settings(name)
    if settings is not None:
        found = json.loads(settings.read_text(encoding="utf-8")).get("max_seq_length")
        if isinstance(found, int) and found > 0:
            return found
    limits = [int(tokenizer.model_max_length)] if 0 < tokenizer.model_max_length < MAX_SANE_LENGTH else []
    positions = getattr(hf_config, "max_position_embeddings", None)
    limits += [int(positions)] if isinstance(positions, int) and positions > 0 else []
    return min(limits) if limits else 512


def _sentence_transformers_settings(name: str) -> Path | None:
    """The model's `sentence_bert_config.json`: in its folder, or from the hub (None when it has none)."""
    local = Path(resolve_model(name)) / "sentence_bert_config.json"
    if local.is_file() or Path(name).exists():
        return local if local.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(name, "sentence_bert_config.json"))
    except Exception:  # not a sentence-transformers model, or the hub out of reach: the tokenizer's limit then
        return None


def layer_list(model: Any) -> tuple[str, nn.ModuleList]:
    """The dotted name and the ModuleList of the model's transformer layers."""
    for path in LAYER_PATHS:
        node: Any = model
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if isinstance(node, nn.ModuleList):
            return path, node
    raise JasperError(f"cannot find the layer stack of {type(model).__name__} (looked for {LAYER_PATHS})")


def keep_layers(model: Any, keep: list[int]) -> None:
    """Keep only the layers `keep` (in that order), updating the config so that a save reloads."""
    path, layers = layer_list(model)
    n = len(layers)
    if not keep or any(not 0 <= i < n for i in keep) or len(set(keep)) != len(keep):
        raise JasperError(f"keep_layers {keep} must be distinct indices in [0, {n}) of the model's {n} layers")
    kept = nn.ModuleList([layers[i] for i in keep])
    for new_index, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                cast(Any, module).layer_idx = new_index
    parent: Any = model
    *head, last = path.split(".")
    for part in head:
        parent = getattr(parent, part)
    setattr(parent, last, kept)
    config = model.config
    config.num_hidden_layers = len(keep)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in keep]


def load_backbone(name: str, keep: list[int] | None = None, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) for a hub id, HF folder or sentence-transformers folder."""
    from transformers import AutoModel, AutoTokenizer

    path = transformer_path(name)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    with quiet_transformers():
        model, info = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code, output_loading_info=True)
    _report_loading(path, info)
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # unused by mean pooling; frozen-but-unused params upset DDP
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if keep is not None:
        n_layers = len(layer_list(model)[1])
        keep_layers(model, keep)
        _say_cut_once(name, tuple(keep), n_layers)
    return model, tokenizer


@functools.cache
def _say_cut_once(name: str, keep: tuple[int, ...], n_layers: int) -> None:
    logger.info("student: layers %s of %s's %d kept; the rest and the pooler are unused", list(keep), name, n_layers)


def _unused(key: str) -> bool:
    """Weights mean pooling never reads: the pooler (a saved student drops it), and layers cut away."""
    return key.startswith(("pooler.", "model.pooler."))


def _report_loading(path: str, info: dict[str, Any]) -> None:
    """Warn about missing or unexpected weights, except those of the unused pooler."""
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind) or [] if not _unused(str(k[0] if isinstance(k, tuple) else k)))
        if keys:
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            logger.warning("loading '%s': %d %s: %s", path, len(keys), kind.replace("_", " "), shown)
