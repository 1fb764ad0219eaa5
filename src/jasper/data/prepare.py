"""Turn a corpus config into the list of texts of a run, and split off the held-out rows."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from jasper.config import RunConfig
from jasper.data.corpus import CorpusError, check_texts, read_corpus
from jasper.io import atomic_write_json, atomic_write_text


@dataclass
class Corpus:
    """A run's rows: each text and its role (what it is: plain text, a query, a document)."""

    texts: list[str]
    roles: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def load_corpus(config: RunConfig) -> Corpus:
    """The run's rows (the same on every call); a built-in source is written once to `<run>/corpus.txt`, the
    held-out articles' derived retrieval tasks beside it."""
    corpus = config.corpus
    if corpus.source is None:
        from jasper.data.mixture import build_corpus

        built = build_corpus(corpus, config.seed)
        for split, retrieval in built.heldout.items():
            if retrieval.queries:
                _write_if_changed(config.folder.heldout_retrieval(split), asdict(retrieval))
        return Corpus(built.texts, built.roles)
    cached, documents = config.folder.corpus, config.folder.corpus_documents
    if not cached.is_file() or (corpus.documents and not documents.is_file()):
        from jasper.data.sources import gensim_sample

        sample = gensim_sample(corpus.max_texts, config.seed, corpus.holdout_articles, corpus.holdout_dev_articles,
                               corpus.documents)  # fmt: skip
        check_texts(sample.sentences, str(corpus.source))
        atomic_write_json(config.folder.heldout_articles(), sample.heldout)
        if sample.dev:
            atomic_write_json(config.folder.heldout_articles("dev"), sample.dev)
        if sample.passages:
            atomic_write_text(documents, "\n".join(sample.passages) + "\n")
        atomic_write_text(cached, "\n".join(sample.sentences) + "\n")
    texts = read_corpus(cached)
    passages = read_corpus(documents) if corpus.documents else []
    roles = [str(corpus.role)] * len(texts) + ["document"] * len(passages)
    return Corpus(texts + passages, roles)


def load_texts(config: RunConfig) -> list[str]:
    """The run's texts, without their roles (`load_corpus`)."""
    return load_corpus(config).texts


def _write_if_changed(path: Path, data: object) -> None:
    if not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != data:
        atomic_write_json(path, data)


def split_rows(n_rows: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows): a seeded random `holdout` rows are kept out of training."""
    if holdout >= n_rows:
        raise CorpusError(f"corpus.holdout={holdout} leaves no training rows in a corpus of {n_rows}")
    order = np.random.default_rng(seed).permutation(n_rows)
    return np.sort(order[holdout:]), np.sort(order[:holdout])
