"""Corpus formats and the errors for bad corpora."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jasper.data.corpus import CorpusError, read_corpus, texts_hash


def test_reads_txt_jsonl_parquet(tmp_path):
    texts = ["first text", "second text", "third, with ünïcode"]
    (tmp_path / "c.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    (tmp_path / "c.jsonl").write_text(
        "\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(texts)), encoding="utf-8"
    )
    pq.write_table(pa.table({"text": texts}), tmp_path / "c.parquet")
    for name in ("c.txt", "c.jsonl", "c.parquet"):
        assert read_corpus(tmp_path / name) == texts


def test_empty_corpus(tmp_path):
    (tmp_path / "e.txt").write_text("", encoding="utf-8")
    with pytest.raises(CorpusError, match="is empty"):
        read_corpus(tmp_path / "e.txt")


def test_empty_lines_are_named(tmp_path):
    # zero-width, format (BOM), control and private-use characters only: nothing a tokenizer keeps
    (tmp_path / "c.txt").write_text("one\n\ntwo\n   \nthree\n\u200b\ufeff\x07\ue000\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"nothing to embed .* at line\(s\) 2, 4, 6"):
        read_corpus(tmp_path / "c.txt")


def test_non_utf8_line_is_named(tmp_path):
    (tmp_path / "c.txt").write_bytes(b"good line\nbad \xff\xfe line\n")
    with pytest.raises(CorpusError, match=r"not valid UTF-8 at line\(s\) 2"):
        read_corpus(tmp_path / "c.txt")


def test_jsonl_without_text_field(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"text": "ok"}\n{"body": "no"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="line 2 has no string field 'text'"):
        read_corpus(tmp_path / "c.jsonl")


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        read_corpus(tmp_path / "nope.txt")


def test_texts_hash_depends_on_order_and_boundaries():
    assert texts_hash(["a", "b"]) != texts_hash(["b", "a"])
    assert texts_hash(["ab", "c"]) != texts_hash(["a", "bc"])
