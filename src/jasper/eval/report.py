"""The end-of-run table (terminal) and report.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from jasper.io import atomic_write_json, atomic_write_text


def score_table(rows: list[dict[str, Any]], title: str = "jasper evaluation") -> Table:
    """One line per (model, dim), one column per task."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    table = Table(title=title)
    table.add_column("model")
    table.add_column("dim", justify="right")
    for task in tasks:
        table.add_column(task, justify="right")
    keys = list(dict.fromkeys((r["model"], r["dim"]) for r in rows))
    cells = {(r["model"], r["dim"], r["task"]): r["score"] for r in rows}
    for model, dim in keys:
        values = [cells.get((model, dim, t)) for t in tasks]
        table.add_row(model, str(dim), *("-" if v is None else f"{v:.2f}" for v in values))
    return table


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The score table in Markdown: one line per (model, dim), one column per task."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    cells = {(r["model"], r["dim"], r["task"]): r["score"] for r in rows}
    lines = ["| model | dim | " + " | ".join(tasks) + " |", "|---|---:|" + "---:|" * len(tasks)]
    for model, dim in dict.fromkeys((r["model"], r["dim"]) for r in rows):
        values = [cells.get((model, dim, t)) for t in tasks]
        lines.append(f"| {model} | {dim} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, title: str, rows: list[dict[str, Any]], notes: list[str], plots: list[Path]) -> None:
    """report.md: the table, the notes, the plots."""
    text = f"# {title}\n\n" + markdown_table(rows)
    text += "".join(f"\n- note: {n}" for n in notes) + ("\n" if notes else "")
    text += (
        "\nTasks marked `derived` are built by jasper from the run's held-out Wikipedia articles, not a benchmark.\n"
        if any("derived" in r["task"] for r in rows)
        else ""
    )
    text += "".join(f"\n![{p.stem}]({p.relative_to(path.parent).as_posix()})\n" for p in plots)
    atomic_write_text(path, text)


def print_table(rows: list[dict[str, Any]], notes: list[str], title: str = "jasper evaluation") -> None:
    """Print the score table and any notes to the terminal."""
    console = Console()
    if rows:
        console.print(score_table(rows, title))
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}")


def write_report(path: Path, rows: list[dict[str, Any]], wall_seconds: float, notes: list[str], **extra: Any) -> None:
    """Write report.json: wall time, score rows, notes."""
    atomic_write_json(path, {"wall_seconds": wall_seconds, "rows": rows, "notes": notes, **extra})
