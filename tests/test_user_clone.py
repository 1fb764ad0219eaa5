"""`configs/wiki.yaml` in a user's clone, which has no `../shared/data`: with the hub reachable, every corpus source and
evaluation set resolves to the hub id the docs give; offline, one line says what to set. No network: the hub's
answers are stand-ins with the datasets' own columns."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from jasper import hub
from jasper.config import load_config
from jasper.data.corpus import CorpusError
from jasper.data.mixture import build_corpus
from jasper.eval.offline_tasks import benchmark_tasks, offline_tasks

ROOT = Path(__file__).parent.parent
WORDS = ["river", "stone", "light", "garden", "music", "winter", "paper", "signal", "harbor", "forest", "letter"]


def _sentence(i: int, n: int = 10) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n)) + f" {i}."


class _Stream:
    """What `datasets.load_dataset(..., streaming=True)` returns, as far as jasper uses it."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def shuffle(self, seed: int, buffer_size: int) -> _Stream:
        return self

    def take(self, n: int) -> _Stream:
        return _Stream(self.rows[:n])

    def __iter__(self):
        return iter(self.rows)


def _article(a: int) -> str:
    """A title line and three paragraphs of at least eight words."""
    paragraphs = [f"Paragraph {p} of article {a} tells of the {WORDS[(a + p) % len(WORDS)]} plainly." for p in range(3)]
    return f"Article {a}\n" + "\n\n".join(paragraphs)


def _hub_rows(repo: str, config: str | None, split: str) -> list[dict[str, Any]]:
    """The hub datasets the wiki recipe names, with their real column names."""
    if repo == "sentence-transformers/wikipedia-en-sentences":
        return [{"sentence": _sentence(i)} for i in range(300)]
    if repo == "wikimedia/wikipedia" and config == "20231101.en":  # more articles than the 400 held out
        return [{"id": str(a), "title": f"Article {a}", "text": _article(a)} for a in range(600)]
    if repo == "mteb/scifact":
        if config == "corpus":
            return [{"_id": f"d{i}", "title": "", "text": _sentence(i, 30)} for i in range(20)]
        if config == "queries":
            return [{"_id": f"q{i}", "text": _sentence(i, 6)} for i in range(6)]
        return [{"query-id": f"q{i}", "corpus-id": f"d{i}", "score": 1} for i in range(6)]
    raise AssertionError(f"the wiki recipe asked the hub for an unexpected dataset: {repo} {config} {split}")


@pytest.fixture()
def clone(tmp_path, monkeypatch):
    """A working directory without ../shared, and a reachable stand-in hub that records what it is asked."""
    datasets = pytest.importorskip("datasets")
    work = tmp_path / "clone"
    work.mkdir()
    monkeypatch.chdir(work)
    assert not Path("../shared/data").exists()
    asked: list[tuple[str, str | None]] = []

    def load_dataset(repo: str, config: str | None = None, split: str = "train", streaming: bool = False):
        asked.append((repo, config))
        rows = _hub_rows(repo, config, split)
        return _Stream(rows) if streaming else rows

    sts = tmp_path / "sts.jsonl.gz"
    with gzip.open(sts, "wt", encoding="utf-8") as handle:
        for i in range(8):
            handle.write(json.dumps({"sentence1": _sentence(i), "sentence2": _sentence(i + 1), "score": i % 5}) + "\n")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(hub, "require", lambda *args, **kwargs: None)  # as if online
    monkeypatch.setattr(hub, "dataset_file", lambda repo, name: asked.append((repo, name)) or sts)
    return asked


def test_wiki_recipe_reads_the_hub_where_the_files_are_absent(clone, caplog):
    config = load_config(ROOT / "configs" / "wiki.yaml")
    with caplog.at_level("INFO"):
        built = build_corpus(config.corpus, config.seed)
    assert ("sentence-transformers/wikipedia-en-sentences", None) in clone
    assert ("wikimedia/wikipedia", "20231101.en") in clone
    assert "sentences.txt.gz' is not here: reading the dataset" in caplog.text
    roles = set(built.roles)
    assert roles == {"query", "document"}, roles  # sentences as queries, paragraphs as documents
    assert set(built.heldout) == {"test", "dev"}  # whole articles held out: the derived task and its dev split
    tasks, notes = offline_tasks(config.eval.stsb_dir, None, [], config.eval.stsb_dev)
    assert ("mteb/stsbenchmark-sts", "test.jsonl.gz") in clone and {"sts-b-test", "sts-b-dev"} <= {
        t.name for t in tasks
    }
    assert not any("STS-B" in note for note in notes)
    retrieval, notes = benchmark_tasks(config.eval.retrieval)
    assert ("mteb/scifact", "corpus") in clone and not notes
    assert [t.name for t in retrieval] == ["scifact-train", "scifact-test"]


def test_wiki_recipe_offline_without_the_files_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(ROOT / "configs" / "wiki.yaml")
    with pytest.raises(CorpusError, match=r"cannot be read .*corpus.sources.0.path=FILE"):
        build_corpus(config.corpus, config.seed)
    _, notes = benchmark_tasks(config.eval.retrieval)
    assert "scifact skipped" in notes[0] and "mteb/scifact" in notes[0]
