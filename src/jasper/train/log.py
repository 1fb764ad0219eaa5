"""The JSON-lines training log; on resume, lines past the checkpoint are dropped so none repeats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jasper.io import atomic_write_text

EVAL_KIND = "eval"  # the `kind` of a periodic evaluation's record; step records have none


class TrainLog:
    """Append-only log: one JSON object per optimizer step, and one per periodic evaluation (`kind: eval`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        """All records (a torn last line from a kill is skipped)."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def steps(self) -> list[dict[str, Any]]:
        """The optimizer steps' records (loss parts, learning rate, time)."""
        return [r for r in self.read() if r.get("kind") != EVAL_KIND]

    def evaluations(self) -> list[dict[str, Any]]:
        """The periodic evaluations' records (`eval_every`): `<task>@<dim>` scores at a stage and step."""
        return [r for r in self.read() if r.get("kind") == EVAL_KIND]

    def truncate_after(self, stage: int, step: int) -> None:
        """Keep only records up to (stage, step), the position a checkpoint restores; an evaluation of a stage's
        start is made again when training resumes there, so its record goes too."""
        kept = [
            r
            for r in self.read()
            if (r["stage_index"], r["step"]) < (stage, step)
            or ((r["stage_index"], r["step"]) == (stage, step) and not (step == 0 and r.get("kind") == EVAL_KIND))
        ]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
