"""Progress a person can read: per batch, and as plain lines when the output goes to a file."""

from __future__ import annotations

import logging

import numpy as np

from jasper import progress
from jasper.config import TeacherConfig
from jasper.data import store_writer as store

import helpers


def test_log_progress_writes_plain_lines(caplog):
    caplog.set_level(logging.INFO, logger="jasper.progress")
    bar = progress.LogProgress(total=10, desc="teacher e5", unit="text", initial=2, every_s=0.0)
    bar.update(3)
    bar.set_postfix(loss="0.5")
    bar.update(5)
    bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("teacher e5: 5/10 text (50%)")
    assert lines[1].startswith("teacher e5: 10/10 text (100%)") and lines[1].endswith("loss=0.5")
    assert not any("\r" in line or "\x1b" in line for line in lines)


def test_bars_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False)
    assert isinstance(progress.progress_bar(5, "x"), progress.LogProgress)
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True)
    bar = progress.progress_bar(5, "x")
    assert not isinstance(bar, progress.LogProgress)
    bar.close()


def test_teacher_progress_moves_with_every_batch(tmp_path, monkeypatch):
    updates: list[int] = []

    class Recorder(progress.LogProgress):
        def update(self, count: int = 1) -> None:
            updates.append(count)
            super().update(count)

    monkeypatch.setattr(store, "progress_bar", lambda total, desc, unit, initial, disable: Recorder(total, desc, unit))
    teacher = TeacherConfig(name="ta", backend="callable", model="helpers:teacher_a", batch_size=4)
    texts = helpers.sentences(20)
    store.compute_teacher(tmp_path, teacher, texts, "float32", shard_size=64)
    assert updates == [4, 4, 4, 4, 4]  # one shard of 20 texts, reported in its 5 batches, not at the end
    assert np.load(tmp_path / "ta" / "vectors.npy").shape == (20, 8)
