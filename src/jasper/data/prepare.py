"""Turn a corpus config into the list of texts of a run, and split off the held-out rows."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from jasper.config import RunConfig
from jasper.data.corpus import CorpusError, check_texts, read_corpus
from jasper.io import atomic_write_json, atomic_write_text


def load_texts(config: RunConfig) -> list[str]:
    """The run's texts (the same on every call); a built-in source is written once to `<run>/corpus.txt`."""
    corpus = config.corpus
    if corpus.source is None:
        from jasper.data.mixture import build_corpus

        texts, retrieval = build_corpus(corpus, config.seed)
        if retrieval is not None and retrieval.queries:
            path = config.folder.heldout_retrieval
            data = asdict(retrieval)
            if not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != data:
                atomic_write_json(path, data)
        return texts
    cached = config.folder.corpus
    if not cached.is_file():
        from jasper.data.sources import gensim_sample

        texts, heldout = gensim_sample(corpus.max_texts, config.seed, corpus.holdout_articles)
        check_texts(texts, str(corpus.source))
        atomic_write_json(config.folder.heldout_articles, heldout)
        atomic_write_text(cached, "\n".join(texts) + "\n")
    return read_corpus(cached)


def split_rows(n_rows: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows): a seeded random `holdout` rows are kept out of training."""
    if holdout >= n_rows:
        raise CorpusError(f"corpus.holdout={holdout} leaves no training rows in a corpus of {n_rows}")
    order = np.random.default_rng(seed).permutation(n_rows)
    return np.sort(order[holdout:]), np.sort(order[:holdout])
