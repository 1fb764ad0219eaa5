"""jasper: distil several text-embedding models into one small, fast student.

The Python API (`jasper.api`): `load_config`, `Run` (teach, train, export, evaluate, all), `load_model`,
`evaluate_model`. The names load on first use, so `import jasper` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from jasper.api import Report, Run, evaluate_model, load_config, load_model
    from jasper.config import RunConfig
    from jasper.encode import EmbeddingModel
    from jasper.errors import JasperError

_NAMES = {
    "EmbeddingModel": "jasper.encode",
    "JasperError": "jasper.errors",
    "Report": "jasper.api",
    "Run": "jasper.api",
    "RunConfig": "jasper.config",
    "evaluate_model": "jasper.api",
    "load_config": "jasper.api",
    "load_model": "jasper.api",
}
__all__ = [
    "EmbeddingModel",
    "JasperError",
    "Report",
    "Run",
    "RunConfig",
    "evaluate_model",
    "load_config",
    "load_model",
]


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'jasper' has no attribute '{name}'")
    return getattr(importlib.import_module(_NAMES[name]), name)
