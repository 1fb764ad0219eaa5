"""A run's corpus from files and datasets: seeded random samples, mixed by share, whole articles held out.

Files are read streaming (gzip decompressed on the fly, never unpacked to disk). `max_texts` takes a seeded
random sample, never the first rows (corpora are often in article order). With `holdout_articles`, whole
articles of the sources that carry an article id are kept out of training, together with any row of the
other sources that comes from them (a sentence whose first six words occur in a held-out passage); the
held-out articles become a derived retrieval task: the first sentence of an article's first passage is the
query, its other passages are the relevant ones, and all held-out passages form the corpus searched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jasper.config import CorpusConfig, SourceConfig
from jasper.data.corpus import CorpusError, check_texts, check_unicode, corpus_format, read_corpus, read_records
from jasper.hub import HubUnavailable

logger = logging.getLogger(__name__)
SHINGLE_WORDS = 6  # a row of another source belongs to a held-out article when its first 6 words occur there
MIN_QUERY_WORDS = 6
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


@dataclass
class SourceRows:
    """The rows of one source, and the article id of each row where the source has them."""

    name: str
    texts: list[str]
    articles: list[str] | None = None


@dataclass
class HeldOutRetrieval:
    """A derived retrieval task from the held-out articles."""

    queries: list[str] = field(default_factory=list)
    passages: list[str] = field(default_factory=list)
    relevant: list[list[int]] = field(default_factory=list)
    articles: list[str] = field(default_factory=list)


def _read_file(source: SourceConfig) -> SourceRows:
    assert source.path is not None
    path = Path(source.path)
    if source.article_field is None:
        return SourceRows(path.name, read_corpus(path, source.text_field))
    if corpus_format(path) != "jsonl":
        raise CorpusError(f"corpus '{path}': article_field needs a JSON-lines file")
    texts: list[str] = []
    articles: list[str] = []
    for number, record in read_records(path):
        text, article = record.get(source.text_field), record.get(source.article_field)
        if not isinstance(text, str) or article is None:
            raise CorpusError(
                f"corpus '{path}' line {number} needs a string '{source.text_field}' and an '{source.article_field}'"
            )
        check_unicode(text, path, number)
        texts.append(text)
        articles.append(str(article))
    check_texts(texts, str(path))
    return SourceRows(path.name, texts, articles)


def _read_dataset(source: SourceConfig, count: int | None, seed: int) -> SourceRows:
    """A Hugging Face dataset: a `save_to_disk` folder (random access) or a hub id (streamed; a seeded
    shuffle buffer picks the sample, as streaming allows no random access)."""
    assert source.dataset is not None
    try:
        import datasets
    except ImportError:
        raise CorpusError(
            f"corpus dataset '{source.dataset}' needs the `datasets` package: pip install 'jasper-distill[datasets]'"
        ) from None
    columns = [source.text_field] + ([source.article_field] if source.article_field else [])
    if Path(source.dataset).is_dir():
        table = datasets.load_from_disk(source.dataset)
        if isinstance(table, datasets.DatasetDict):
            if source.split not in table:
                raise CorpusError(f"dataset '{source.dataset}' has no split '{source.split}' ({list(table)})")
            table = table[source.split]
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise CorpusError(f"dataset '{source.dataset}' has no column {missing} (columns: {table.column_names})")
        rows = sample_rows(len(table), count, seed) if count is not None else None
        picked = table.select(rows.tolist()) if rows is not None else table
        texts = [str(t) for t in picked[source.text_field]]
        articles = [str(a) for a in picked[source.article_field]] if source.article_field else None
    else:
        from jasper.hub import require

        require(source.dataset, "dataset", "dataset")
        stream = datasets.load_dataset(source.dataset, source.dataset_config, split=source.split, streaming=True)
        if source.scan is not None or count is not None:  # streaming reads in order: a seeded buffer samples it
            stream = stream.shuffle(seed=seed, buffer_size=10_000).take(source.scan or count)
        records = list(stream)
        if records and source.text_field not in records[0]:
            raise CorpusError(f"dataset '{source.dataset}' has no column '{source.text_field}' ({list(records[0])})")
        texts = [str(r[source.text_field]) for r in records]
        articles = [str(r[source.article_field]) for r in records] if source.article_field else None
    check_texts(texts, source.dataset)
    return SourceRows(source.dataset, texts, articles)


def sample_rows(n_rows: int, count: int | None, seed: int) -> np.ndarray:
    """A seeded random sample of `count` row indices (all rows when count is None or >= n_rows), in order."""
    if count is None or count >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=count, replace=False))


def source_counts(corpus: CorpusConfig, sources: list[SourceConfig]) -> list[int | None]:
    """Rows to sample from each source: its max_texts, its share of corpus.max_texts, or all."""
    if corpus.sources is None:
        return [corpus.max_texts]
    shares = [s.share if s.share is not None else (1.0 if s.max_texts is None else 0.0) for s in sources]
    total = sum(shares)
    counts: list[int | None] = []
    for source, share in zip(sources, shares, strict=True):
        if source.max_texts is not None:
            counts.append(source.max_texts)
        elif corpus.max_texts is None:
            counts.append(None)
        else:
            counts.append(round(corpus.max_texts * share / total))
    return counts


def _first_sentence(text: str) -> str | None:
    for piece in _SENTENCE_END.split(" ".join(text.split())):
        if len(piece.split()) >= MIN_QUERY_WORDS:
            return piece
    return None


def _shingles(text: str) -> Iterator[tuple[str, ...]]:
    words = text.lower().split()
    for start in range(max(0, len(words) - SHINGLE_WORDS + 1)):
        yield tuple(words[start : start + SHINGLE_WORDS])


def hold_out_articles(sources: list[SourceRows], count: int, seed: int, dev: int = 0) -> dict[str, HeldOutRetrieval]:
    """{"test": `count` seeded-random articles, "dev": the next `dev`}, each an article with a query sentence and at
    least one other passage; the test articles do not depend on `dev`."""
    by_article: dict[str, list[str]] = {}
    for rows in sources:
        for text, article in zip(rows.texts, rows.articles or [], strict=False):
            by_article.setdefault(article, []).append(text)
    eligible = sorted(a for a, texts in by_article.items() if len(texts) >= 2 and _first_sentence(texts[0]))
    order = np.random.default_rng([seed, 7]).permutation(eligible).tolist() if count + dev else []
    splits = {"test": sorted(order[:count]), "dev": sorted(order[count : count + dev])}
    return {split: _retrieval_task(chosen, by_article) for split, chosen in splits.items() if chosen or split == "test"}


def _retrieval_task(chosen: list[str], by_article: dict[str, list[str]]) -> HeldOutRetrieval:
    """The first sentence of each article's first passage as the query, its other passages as the relevant ones."""
    task = HeldOutRetrieval(articles=chosen)
    for article in chosen:
        first, *others = by_article[article]
        task.queries.append(str(_first_sentence(first)))
        task.relevant.append(list(range(len(task.passages), len(task.passages) + len(others))))
        task.passages.extend(others)
    return task


def _without_heldout(rows: SourceRows, articles: set[str], shingles: set[tuple[str, ...]]) -> list[int]:
    """Indices of the rows that do not come from a held-out article."""
    if rows.articles is not None:
        return [i for i, a in enumerate(rows.articles) if a not in articles]
    keep = []
    for i, text in enumerate(rows.texts):
        first = next(_shingles(text), None)
        if first is None or first not in shingles:
            keep.append(i)
    return keep


@dataclass
class BuiltCorpus:
    """A run's training rows (each text with its role) and the derived retrieval tasks of its held-out articles."""

    texts: list[str]
    roles: list[str]
    heldout: dict[str, HeldOutRetrieval] = field(default_factory=dict)  # "test" (reported) and "dev" (watched)


MIN_PARAGRAPH_WORDS = 8  # `unit: paragraph`: shorter lines (headings, captions) are no paragraphs


def paragraphs(rows: SourceRows) -> SourceRows:
    """Each row's text split at line breaks into paragraphs of at least MIN_PARAGRAPH_WORDS words, each keeping its
    row's article id (a whole article becomes its paragraphs)."""
    texts: list[str] = []
    articles: list[str] = []
    for index, text in enumerate(rows.texts):
        for line in text.splitlines():
            if len(line.split()) >= MIN_PARAGRAPH_WORDS:
                texts.append(line.strip())
                articles.append(rows.articles[index] if rows.articles is not None else str(index))
    return SourceRows(rows.name, texts, articles if rows.articles is not None else None)


def read_source(index: int, source: SourceConfig, count: int | None, seed: int) -> SourceRows:
    """A source's rows: its local file where it exists, else its dataset (saying so), else one line naming both."""
    if source.path is not None and (Path(source.path).exists() or source.dataset is None):
        rows = _read_file(source)
    else:
        assert source.dataset is not None
        if source.path is not None:
            subset = f" ({source.dataset_config})" if source.dataset_config else ""
            logger.info("corpus source %d: '%s' is not here: reading the dataset '%s'%s instead",
                        index + 1, source.path, source.dataset, subset)  # fmt: skip
        try:
            rows = _read_dataset(source, count, seed)
        except HubUnavailable as error:
            local = f"no file '{source.path}' here, and " if source.path else ""
            raise CorpusError(
                f"corpus source {index + 1}: {local}the dataset '{source.dataset}' cannot be read ({error.reason}): "
                f"give a local file with corpus.sources.{index}.path=FILE, or run online once"
            ) from None
    return paragraphs(rows) if source.unit == "paragraph" else rows


def build_corpus(corpus: CorpusConfig, seed: int) -> BuiltCorpus:
    """The run's training rows (deduplicated per role, in source order) and the held-out retrieval tasks, if any."""
    sources = corpus.source_list()
    counts = source_counts(corpus, sources)
    holding_out = corpus.holdout_articles + corpus.holdout_dev_articles
    read = [
        read_source(i, s, None if (holding_out and s.article_field) or s.unit != "row" else c, seed + i)
        for i, (s, c) in enumerate(zip(sources, counts, strict=True))
    ]
    with_articles = [r for r in read if r.articles is not None]
    heldout = (
        hold_out_articles(with_articles, corpus.holdout_articles, seed, corpus.holdout_dev_articles)
        if with_articles
        else {}
    )
    articles = {a for task in heldout.values() for a in task.articles}
    shingles = {g for task in heldout.values() for p in task.passages + task.queries for g in _shingles(p)}
    rows: dict[tuple[str, str], None] = {}
    taken = 0
    for index, (source_rows, source, count) in enumerate(zip(read, sources, counts, strict=True)):
        keep = _without_heldout(source_rows, articles, shingles) if heldout else list(range(len(source_rows.texts)))
        chosen = sample_rows(len(keep), count, seed + index)
        rows.update(((source.role, source_rows.texts[keep[i]]), None) for i in chosen)
        taken += len(chosen)
        logger.info(
            "corpus source %d (%s, %s): %s rows, %s in held-out articles, %s taken",
            *(index + 1, source_rows.name, source.role, f"{len(source_rows.texts):,}"),
            *(f"{len(source_rows.texts) - len(keep):,}", f"{len(chosen):,}"),
        )
    if len(rows) < taken:
        logger.info("corpus: %s duplicate texts dropped", f"{taken - len(rows):,}")
    return BuiltCorpus([text for _, text in rows], [role for role, _ in rows], heldout)
