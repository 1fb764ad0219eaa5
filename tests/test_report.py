"""The end-of-run table: never a cut number or header, on a narrow terminal or piped to a file."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

from jasper.eval import report

TASKS = ["sts-b-test", "lee-docsim", "wordsim353", "newsgroups-classification", "wiki-retrieval-derived:ndcg@10"]


def _rows() -> list[dict]:
    rows = []
    for model, dim in (("student", 768), ("student", 64), ("minilm (teacher)", 384)):
        for index, task in enumerate(TASKS):
            rows.append({"model": model, "dim": dim, "task": task, "score": 68.64 + index})
    return rows


def test_piped_output_is_plain_markdown(monkeypatch, capsys):
    monkeypatch.setattr(report, "Console", lambda: Console(file=io.StringIO(), force_terminal=False, width=80))
    report.print_table(_rows(), ["STS-B test skipped: offline"], title="jasper run 'x'")
    out = capsys.readouterr().out
    assert out.startswith("jasper run 'x'\n\n| model | dim | " + " | ".join(TASKS) + " |")
    assert "| minilm (teacher) | 384 | 68.64 | 69.64 | 70.64 | 71.64 | 72.64 |" in out
    assert "…" not in out and "\x1b[" not in out
    assert out.endswith("note: STS-B test skipped: offline\n")


@pytest.mark.parametrize("width", [60, 80, 200])
def test_terminal_tables_fit_and_cut_nothing(monkeypatch, width):
    screen = io.StringIO()
    monkeypatch.setattr(report, "Console", lambda: Console(file=screen, force_terminal=True, width=width))
    report.print_table(_rows(), [], title="jasper run 'x'")
    text = screen.getvalue()
    plain = Text.from_ansi(text).plain  # drop the colour codes
    assert "…" not in plain
    assert all(len(line) <= width for line in plain.splitlines())
    for task in TASKS:
        assert task in plain  # every header whole
    assert plain.count("68.64") == 3 and plain.count("72.64") == 3  # every cell whole, once
    groups = report.task_groups(_rows(), width)
    assert [t for group in groups for t in group] == TASKS
    assert (len(groups) > 1) == (width < 200)
