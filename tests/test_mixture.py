"""Corpora at scale: gzip read as a stream, seeded random samples, mixed sources, held-out articles, datasets."""

from __future__ import annotations

import gzip
import json

import pytest

from jasper.config import CorpusConfig
from jasper.data.corpus import CorpusError, read_corpus
from jasper.data.mixture import build_corpus, sample_rows

import helpers


def _articles(n_articles: int = 30, per_article: int = 4) -> list[dict]:
    rows = []
    for article in range(n_articles):
        for passage in range(per_article):
            words = " ".join(helpers.WORDS[(article * 3 + passage + k) % 60] for k in range(9))
            rows.append(
                {"id": article, "title": f"T{article}", "text": f"Article {article} passage {passage} says {words}."}
            )
    return rows


def _write(tmp_path, rows: list[dict]):
    passages = tmp_path / "passages.jsonl.gz"
    with gzip.open(passages, "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in rows))
    # the sentence file: each passage's text again (as a sentence splitter would give it), plus unrelated ones
    sentences = tmp_path / "sentences.txt.gz"
    with gzip.open(sentences, "wt", encoding="utf-8") as handle:
        handle.write("".join(r["text"] + "\n" for r in rows) + "\n".join(helpers.sentences(50)) + "\n")
    return sentences, passages


def test_gzip_files_read_like_plain_ones(tmp_path):
    texts = ["\ufefffirst text", "second text", "third, with ünïcode"]
    (tmp_path / "c.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "c.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n".join(texts) + "\n")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n".join(json.dumps({"text": t}) for t in texts[1:]) + "\n")
    assert read_corpus(tmp_path / "c.txt.gz") == read_corpus(tmp_path / "c.txt") == ["first text", *texts[1:]]
    assert read_corpus(tmp_path / "c.jsonl.gz") == texts[1:]  # (a BOM is dropped, not kept in the first text)


def test_max_texts_is_a_seeded_random_sample_not_the_head(tmp_path):
    lines = [f"sentence number {i}" for i in range(1000)]
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = CorpusConfig(path=str(tmp_path / "c.txt"), max_texts=100)
    first = build_corpus(corpus, seed=0).texts
    again = build_corpus(corpus, seed=0).texts
    other = build_corpus(corpus, seed=1).texts
    assert first == again and first != other and len(first) == 100
    assert first != lines[:100] and max(int(t.split()[-1]) for t in first) > 500
    assert [int(t.split()[-1]) for t in first] == sorted(int(t.split()[-1]) for t in first)  # kept in file order
    assert sample_rows(10, None, 0).tolist() == list(range(10))


def test_sources_mix_by_share_and_hold_out_whole_articles(tmp_path):
    sentences, passages = _write(tmp_path, _articles())
    corpus = CorpusConfig(
        sources=[
            {"path": str(sentences), "share": 3},
            {"path": str(passages), "article_field": "id", "share": 1},
        ],
        max_texts=80,
        holdout_articles=5,
    )
    built = build_corpus(corpus, seed=0)
    texts, heldout = built.texts, built.heldout["test"]
    assert len(heldout.queries) == 5 and len(heldout.articles) == 5 and "dev" not in built.heldout
    assert len(heldout.passages) == 15 and all(len(r) == 3 for r in heldout.relevant)
    held = {int(a) for a in heldout.articles}
    # nothing from a held-out article trains: neither its passages nor the sentence copies of them
    assert not any(t.startswith(f"Article {a} ") for a in held for t in texts)
    assert all(q.startswith("Article ") and "passage 0" in q for q in heldout.queries)
    assert len(texts) <= 80 and len(texts) >= 70  # 60 + 20, less the passages also present as sentences


def test_share_needs_a_total():
    with pytest.raises(ValueError, match="need corpus.max_texts"):
        CorpusConfig(sources=[{"path": "a.txt", "share": 1}])


def test_article_field_must_be_present(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "no id here at all"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="needs a string 'text' and an 'id'"):
        build_corpus(CorpusConfig(path=str(path), article_field="id"), seed=0)


def test_hugging_face_dataset_from_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = _articles(10, 3)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    built = build_corpus(CorpusConfig(dataset=str(tmp_path / "ds"), max_texts=12), seed=0)
    assert len(built.texts) == 12 and set(built.texts) <= {r["text"] for r in rows} and not built.heldout
    corpus = CorpusConfig(dataset=str(tmp_path / "ds"), article_field="id", holdout_articles=2)
    built = build_corpus(corpus, seed=0)
    assert len(built.heldout["test"].queries) == 2 and len(built.texts) == 24
    with pytest.raises(CorpusError, match="has no column"):
        build_corpus(CorpusConfig(dataset=str(tmp_path / "ds"), text_field="body"), seed=0)


def test_dev_articles_are_held_out_too_and_leave_the_test_articles_as_they_were(tmp_path):
    sentences, passages = _write(tmp_path, _articles())
    sources = [{"path": str(sentences)}, {"path": str(passages), "article_field": "id"}]
    plain = build_corpus(CorpusConfig(sources=sources, holdout_articles=5), seed=0)
    with_dev = build_corpus(CorpusConfig(sources=sources, holdout_articles=5, holdout_dev_articles=4), seed=0)
    test, dev = with_dev.heldout["test"], with_dev.heldout["dev"]
    assert test == plain.heldout["test"]  # the reported task does not move when a dev split is added
    assert len(dev.articles) == 4 and not set(dev.articles) & set(test.articles)
    kept_out = {int(a) for a in dev.articles + test.articles}
    assert not any(t.startswith(f"Article {a} ") for a in kept_out for t in with_dev.texts)
    assert len(with_dev.texts) < len(plain.texts)


def test_a_source_says_what_its_rows_are(tmp_path):
    sentences, passages = _write(tmp_path, _articles(10, 3))
    corpus = CorpusConfig(
        sources=[{"path": str(sentences), "role": "query"}, {"path": str(passages), "role": "document"}],
        holdout_articles=0,
    )
    built = build_corpus(corpus, seed=0)
    assert len(built.texts) == len(built.roles) and set(built.roles) == {"query", "document"}
    # a text in two roles is two rows (a teacher reads it with two prompts); within a role, duplicates go
    both = [t for t, r in zip(built.texts, built.roles, strict=True) if r == "query" and t.startswith("Article")]
    assert both and all((t, "document") in set(zip(built.texts, built.roles, strict=True)) for t in both)
    assert len(set(zip(built.texts, built.roles, strict=True))) == len(built.texts)


def test_a_local_file_first_then_its_dataset_then_one_line(tmp_path, caplog):
    datasets = pytest.importorskip("datasets")
    rows = _articles(6, 2)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    local = tmp_path / "local.txt"
    local.write_text("\n".join(helpers.sentences(12)) + "\n")
    both = {"path": str(local), "dataset": str(tmp_path / "ds")}
    assert build_corpus(CorpusConfig(sources=[both], holdout_articles=0), seed=0).texts == read_corpus(local)
    absent = both | {"path": str(tmp_path / "absent.txt")}
    with caplog.at_level("INFO"):
        texts = build_corpus(CorpusConfig(sources=[absent], holdout_articles=0), seed=0).texts
    assert sorted(texts) == sorted(r["text"] for r in rows)
    assert "absent.txt' is not here: reading the dataset" in caplog.text
    offline = {"path": str(tmp_path / "absent.txt"), "dataset": "someone/wikipedia-sentences"}  # HF_HUB_OFFLINE=1
    with pytest.raises(CorpusError, match=r"no file '.*absent.txt' here, and the dataset .* cannot be read"):
        build_corpus(CorpusConfig(sources=[offline], holdout_articles=0), seed=0)


def test_whole_articles_split_into_paragraphs(tmp_path):
    article = (
        "Title line\nThe first paragraph has more than eight words in it.\n\nshort one\n"
        "The second paragraph also has more than eight words."
    )
    path = tmp_path / "articles.jsonl"
    path.write_text(json.dumps({"id": 7, "text": article}) + "\n")
    source = {"path": str(path), "article_field": "id", "unit": "paragraph"}
    built = build_corpus(CorpusConfig(sources=[source], holdout_articles=0), seed=0)
    assert built.texts == [
        "The first paragraph has more than eight words in it.",
        "The second paragraph also has more than eight words.",
    ]
