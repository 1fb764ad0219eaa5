"""What jasper asks of an experiment tracker: scalars at a step, the end-of-run table, the config, artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from jasper.errors import JasperError


class Tracker(Protocol):
    """One tool's client (TensorBoard, Weights & Biases, MLflow), opened on one run."""

    name: str

    def where(self) -> str:
        """Where to look, in one line (a command, a run id, a URL or a folder)."""
        ...

    def scalars(self, values: dict[str, float], step: int, axis: str, at: float | None = None) -> None:
        """Named scalars at `step` of the axis `axis` (train, dev or teach: each its own step count), logged at
        time `at` (seconds since the epoch; None: now)."""
        ...

    def summary(self, table: list[dict[str, Any]], markdown: str, config: dict[str, Any], files: list[Path]) -> None:
        """The final evaluation (rows and their Markdown table), the resolved config as parameters, and files."""
        ...

    def flush(self) -> None:
        """Return once everything sent so far is stored (on disk or at the server): a kill loses none of it."""
        ...

    def close(self, failed: bool) -> None:
        """Flush and end this process's session with the tracked run (the run itself can be resumed)."""
        ...


def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a.b.0.c": value}` for a nested config: what parameter tables take."""
    if isinstance(tree, dict):
        return {k: v for key, item in tree.items() for k, v in flat(item, f"{prefix}{key}.").items()}
    if isinstance(tree, list) and tree and all(isinstance(item, dict) for item in tree):
        return {k: v for i, item in enumerate(tree) for k, v in flat(item, f"{prefix}{i}.").items()}
    return {prefix[:-1]: tree}


def missing(tool: str) -> JasperError:
    """The one-line error for a configured tool that is not installed, naming its extra."""
    return JasperError(f"log.report_to names {tool}, which is not installed: pip install 'jasper-distill[{tool}]'")
