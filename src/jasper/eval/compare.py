"""`jasper compare`: two runs' report rows joined on (model, dim, task)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from jasper.errors import JasperError
from jasper.run_folder import RunFolder


def _rows(run: Path) -> dict[tuple[str, int, str], float | None]:
    report = RunFolder(run).report_json
    if not report.is_file():
        raise JasperError(f"'{run}' has no report.json: run `jasper eval {run}` first")
    damaged = JasperError(f"'{report}' is damaged or not a jasper report: run `jasper eval {run}` to write it again")
    try:
        rows = json.loads(report.read_text(encoding="utf-8"))["rows"]
        found = {(str(r["model"]), int(r["dim"]), str(r["task"])): r["score"] for r in rows}
    except (ValueError, TypeError, KeyError, RecursionError):  # not JSON, not UTF-8, or another shape
        raise damaged from None
    if not all(isinstance(v, (int, float)) or v is None for v in found.values()):
        raise damaged
    return found


def compare_reports(run_a: Path, run_b: Path) -> list[dict[str, Any]]:
    """[{model, dim, task, a, b}] over the union of both reports' cells (missing side = None)."""
    a, b = _rows(run_a), _rows(run_b)
    keys = list(dict.fromkeys([*a, *b]))
    return [{"model": m, "dim": d, "task": t, "a": a.get((m, d, t)), "b": b.get((m, d, t))} for m, d, t in keys]


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_comparison(rows: list[dict[str, Any]], name_a: str, name_b: str) -> str:
    """Print the side-by-side table; return it as Markdown."""
    table = Table(title=f"{name_a} vs {name_b}")
    for column in ("model", "dim", "task", name_a, name_b, "b - a"):
        table.add_column(column, justify="right" if column not in ("model", "task") else "left")
    lines = [f"| model | dim | task | {name_a} | {name_b} | b - a |", "|---|---:|---|---:|---:|---:|"]
    for row in rows:
        delta = row["b"] - row["a"] if row["a"] is not None and row["b"] is not None else None
        cells = [row["model"], str(row["dim"]), row["task"], _cell(row["a"]), _cell(row["b"]), _cell(delta)]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    markdown = "\n".join(lines) + "\n"
    console = Console()
    if console.is_terminal:
        console.print(table)
    else:
        sys.stdout.write(f"{name_a} vs {name_b}\n\n{markdown}")
    return markdown
