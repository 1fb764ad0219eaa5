"""Built-in corpora from files that installed packages ship (usable offline)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

MIN_CHARS, MAX_CHARS = 40, 300
MIN_HELDOUT_SENTENCES = 8  # a lead sentence and enough passages to retrieve
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def gensim_test_data() -> Path:
    """The folder of gensim's bundled test data."""
    try:
        import gensim
    except ImportError as error:
        raise RuntimeError("the gensim-sample corpus needs `pip install gensim==4.4.0`") from error
    return Path(gensim.__file__).parent / "test" / "test_data"


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences, keeping those of a useful length."""
    text = re.sub(r"\s+", " ", text).strip()
    pieces = _SENTENCE_END.split(text)
    return [p.strip() for p in pieces if MIN_CHARS <= len(p.strip()) <= MAX_CHARS]


def _wiki_paragraph_ok(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith(("|", "{", "!", "*", "#", "=", ":", ";"))


def wikipedia_articles() -> list[tuple[str, list[str]]]:
    """(title, sentences) for each article of gensim's shortened English Wikipedia dump."""
    import bz2

    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    dump = gensim_test_data() / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    articles = []
    with bz2.open(dump, "rb") as handle:
        for title, text, _page_id in extract_pages(handle):
            if not text or text.lstrip().lower().startswith("#redirect"):
                continue
            plain = filter_wiki(text)
            sentences = []
            for paragraph in plain.split("\n"):
                if _wiki_paragraph_ok(paragraph):
                    sentences.extend(split_sentences(paragraph))
            if sentences:
                articles.append((title, sentences))
    return articles


def lee_background_sentences() -> list[str]:
    """Sentences of the 300 ABC news articles in gensim's `lee_background.cor`."""
    lines = (gensim_test_data() / "lee_background.cor").read_text(encoding="utf-8", errors="replace")
    return [s for line in lines.splitlines() for s in split_sentences(line)]


def heldout_article_titles(
    articles: list[tuple[str, list[str]]], count: int, seed: int, dev: int = 0
) -> list[list[str]]:
    """[test titles, dev titles]: `count` seeded-random articles with enough sentences for a retrieval query, and
    the next `dev` for the task's dev split (the test titles do not depend on `dev`)."""
    eligible = sorted(title for title, sentences in articles if len(sentences) >= MIN_HELDOUT_SENTENCES)
    random.Random(seed).shuffle(eligible)
    return [sorted(eligible[:count]), sorted(eligible[count : count + dev])]


PASSAGE_SENTENCES = 3  # a document of the built-in corpus: three consecutive sentences of an article


@dataclass
class GensimSample:
    """The built-in corpus: sentences, passages (documents), and the articles kept out (test and dev)."""

    sentences: list[str]
    passages: list[str]
    heldout: list[str]
    dev: list[str]


def gensim_sample(
    max_texts: int | None, seed: int, holdout_articles: int = 0, dev_articles: int = 0, passages: int = 0
) -> GensimSample:
    """Deduplicated Wikipedia + news sentences, shuffled with `seed`, at most `max_texts`, and `passages` seeded
    three-sentence passages of the Wikipedia articles, none from the articles kept out for evaluation."""
    articles = wikipedia_articles()
    heldout, dev = heldout_article_titles(articles, holdout_articles, seed, dev_articles)
    kept_out = set(heldout) | set(dev)
    kept = [(title, article) for title, article in articles if title not in kept_out]
    sentences = [s for _, article in kept for s in article] + lee_background_sentences()
    unique = list(dict.fromkeys(s for s in sentences if _looks_like_prose(s)))
    random.Random(seed).shuffle(unique)
    chunks = [
        " ".join(article[i : i + PASSAGE_SENTENCES])
        for _, article in kept
        for i in range(0, len(article) - PASSAGE_SENTENCES + 1, PASSAGE_SENTENCES)
    ]
    chosen = random.Random(seed + 1).sample(chunks, min(passages, len(chunks))) if passages else []
    return GensimSample(unique[:max_texts] if max_texts else unique, chosen, heldout, dev)


def _looks_like_prose(sentence: str) -> bool:
    if "|" in sentence or re.search(r"\.(jpe?g|png|gif|svg)\b", sentence, re.IGNORECASE):
        return False
    letters = sum(c.isalpha() for c in sentence)
    return letters / len(sentence) > 0.7 and " " in sentence
