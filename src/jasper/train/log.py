"""The JSON-lines training log; on resume, lines past the checkpoint are dropped so none repeats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jasper.io import atomic_write_text


class TrainLog:
    """Append-only log of loss parts, one JSON object per optimizer step."""

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

    def truncate_after(self, stage: int, step: int) -> None:
        """Keep only records up to (stage, step), the position a checkpoint restores."""
        kept = [r for r in self.read() if (r["stage_index"], r["step"]) <= (stage, step)]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
