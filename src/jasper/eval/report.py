"""The end-of-run table (terminal) and report.json."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from jasper.io import atomic_write_json, atomic_write_text


def score_table(rows: list[dict[str, Any]], title: str = "jasper evaluation", tasks: list[str] | None = None) -> Table:
    """One line per (model, dim), one column per task (every task of `rows` unless `tasks` is given)."""
    tasks = tasks if tasks is not None else _tasks(rows)
    table = Table(title=title)
    table.add_column("model", no_wrap=True)
    table.add_column("dim", justify="right", no_wrap=True)
    for task in tasks:
        table.add_column(task, justify="right", no_wrap=True, min_width=len(task))
    keys = list(dict.fromkeys((r["model"], r["dim"]) for r in rows))
    cells = {(r["model"], r["dim"], r["task"]): r["score"] for r in rows}
    for model, dim in keys:
        values = [cells.get((model, dim, t)) for t in tasks]
        table.add_row(model, str(dim), *(_cell(v) for v in values))
    return table


def _tasks(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["task"] for r in rows))


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def task_groups(rows: list[dict[str, Any]], width: int) -> list[list[str]]:
    """The tasks split into runs whose tables fit `width` columns (a task wider than that gets its own)."""
    model_width = max([len("model")] + [len(str(r["model"])) for r in rows])
    fixed = (model_width + 3) + (len("dim") + 3) + 1  # a rich column is its text, 2 of padding and 1 of border
    groups: list[list[str]] = [[]]
    used = fixed
    for task in _tasks(rows):
        needed = max(len(task), len("100.00")) + 3
        if groups[-1] and used + needed > width:
            groups.append([])
            used = fixed
        groups[-1].append(task)
        used += needed
    return groups


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The score table in Markdown: one line per (model, dim), one column per task."""
    tasks = _tasks(rows)
    cells = {(r["model"], r["dim"], r["task"]): r["score"] for r in rows}
    lines = ["| model | dim | " + " | ".join(tasks) + " |", "|---|---:|" + "---:|" * len(tasks)]
    for model, dim in dict.fromkeys((r["model"], r["dim"]) for r in rows):
        values = [cells.get((model, dim, t)) for t in tasks]
        lines.append(f"| {model} | {dim} | " + " | ".join(_cell(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def markdown_tables(rows: list[dict[str, Any]]) -> str:
    """The text tasks' table, then (for a run with a vision stage) the image tasks' own table."""
    from jasper.eval.plots import is_image_task

    text_rows = [r for r in rows if not is_image_task(r["task"])]
    image_rows = [r for r in rows if is_image_task(r["task"])]
    if not image_rows or not text_rows:
        return markdown_table(rows)
    return (
        markdown_table(text_rows)
        + "\nImages (the image path; captions and class prompts through the text path):\n\n"
        + (markdown_table(image_rows))
    )


def write_markdown(path: Path, title: str, rows: list[dict[str, Any]], notes: list[str], plots: list[Path]) -> None:
    """report.md: the table, the notes, the plots."""
    text = f"# {title}\n\n" + markdown_tables(rows)
    text += "".join(f"\n- note: {n}" for n in notes) + ("\n" if notes else "")
    text += (
        "\nTasks marked `derived` are built by jasper from the run's held-out Wikipedia articles, not a benchmark.\n"
        if any("derived" in r["task"] for r in rows)
        else ""
    )
    text += "".join(f"\n![{p.stem}]({p.relative_to(path.parent).as_posix()})\n" for p in plots)
    atomic_write_text(path, text)


def print_table(rows: list[dict[str, Any]], notes: list[str], title: str = "jasper evaluation") -> None:
    """Print the score table and any notes: rich tables that fit the terminal (tasks split over several when
    needed), or plain Markdown when stdout is a file or a pipe. No cell is ever cut."""
    console = Console()
    if not console.is_terminal:
        text = f"{title}\n\n{markdown_tables(rows)}" if rows else ""
        sys.stdout.write(text + "".join(f"note: {n}\n" for n in notes))
        return
    groups = task_groups(rows, console.width) if rows else []
    for index, tasks in enumerate(groups):
        part = f" ({index + 1}/{len(groups)})" if len(groups) > 1 else ""
        console.print(score_table(rows, title + part, tasks))
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True)


def write_report(path: Path, rows: list[dict[str, Any]], wall_seconds: float, notes: list[str], **extra: Any) -> None:
    """Write report.json: wall time, score rows, notes."""
    atomic_write_json(path, {"wall_seconds": wall_seconds, "rows": rows, "notes": notes, **extra})
