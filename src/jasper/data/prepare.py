"""Turn a corpus config into the list of texts of a run, and split off the held-out rows."""

from __future__ import annotations

import numpy as np

from jasper.config import RunConfig
from jasper.data.corpus import CorpusError, check_texts, read_corpus
from jasper.io import atomic_write_json, atomic_write_text

HELDOUT_ARTICLES = "heldout_articles.json"  # Wikipedia articles kept out of the corpus, for derived retrieval


def load_texts(config: RunConfig) -> list[str]:
    """The run's texts; a built-in source is written once to `<run>/corpus.txt` and read back from there."""
    corpus = config.corpus
    if corpus.path is not None:
        texts = read_corpus(corpus.path, corpus.text_field)
        return texts[: corpus.max_texts] if corpus.max_texts else texts
    cached = config.run_dir / "corpus.txt"
    if not cached.is_file():
        from jasper.data.sources import gensim_sample

        texts, heldout = gensim_sample(corpus.max_texts, config.seed, corpus.holdout_articles)
        check_texts(texts, str(corpus.source))
        atomic_write_json(config.run_dir / HELDOUT_ARTICLES, heldout)
        atomic_write_text(cached, "\n".join(texts) + "\n")
    return read_corpus(cached)


def split_rows(n_rows: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows): a seeded random `holdout` rows are kept out of training."""
    if holdout >= n_rows:
        raise CorpusError(f"corpus.holdout={holdout} leaves no training rows in a corpus of {n_rows}")
    order = np.random.default_rng(seed).permutation(n_rows)
    return np.sort(order[holdout:]), np.sort(order[:holdout])
