"""One cell of a report: a model's score on a task at a head dimension."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Score:
    """One cell of the report."""

    model: str
    dim: int
    task: str
    score: float


def scores_as_dicts(scores: list[Score]) -> list[dict[str, object]]:
    """Rows for report.json."""
    return [asdict(s) for s in scores]
