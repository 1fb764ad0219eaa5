"""Read a corpus of texts (txt, JSON lines, parquet) and refuse what cannot be trained on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MAX_REPORTED = 5


class CorpusError(ValueError):
    """A corpus file that cannot be used as given."""


def _where(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:MAX_REPORTED])
    more = f" and {len(lines) - MAX_REPORTED} more" if len(lines) > MAX_REPORTED else ""
    return f"line(s) {shown}{more}"


def _read_txt(path: Path) -> list[str]:
    texts: list[str] = []
    bad_utf8: list[int] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                texts.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError:
                bad_utf8.append(number)
                texts.append("")
    if bad_utf8:
        raise CorpusError(f"corpus '{path}' is not valid UTF-8 at {_where(bad_utf8)}")
    return texts


def _read_jsonl(path: Path, field: str) -> list[str]:
    texts: list[str] = []
    for number, line in enumerate(_read_txt(path), start=1):
        if not line.strip():
            texts.append("")
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CorpusError(f"corpus '{path}' line {number} is not JSON: {error.msg}") from None
        value = record.get(field) if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise CorpusError(f"corpus '{path}' line {number} has no string field '{field}'")
        texts.append(value)
    return texts


def _read_parquet(path: Path, field: str) -> list[str]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if field not in table.column_names:
        raise CorpusError(f"corpus '{path}' has no column '{field}' (columns: {table.column_names})")
    values = table.column(field).to_pylist()
    bad = [i + 1 for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        raise CorpusError(f"corpus '{path}' column '{field}' is not a string at row(s) {bad[:MAX_REPORTED]}")
    return values


def read_corpus(path: str | Path, text_field: str = "text") -> list[str]:
    """Read texts from .txt / .jsonl / .parquet; empty files and empty texts are errors."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"corpus file '{path}' does not exist")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        texts = _read_jsonl(path, text_field)
    elif suffix == ".parquet":
        texts = _read_parquet(path, text_field)
    else:
        texts = _read_txt(path)
    check_texts(texts, str(path))
    return texts


def check_texts(texts: list[str], origin: str) -> None:
    """Refuse an empty corpus or empty/whitespace-only texts, naming where they are."""
    if not texts:
        raise CorpusError(f"corpus '{origin}' is empty: it holds no texts")
    empty = [i + 1 for i, text in enumerate(texts) if not text.strip()]
    if empty:
        raise CorpusError(f"corpus '{origin}' has empty texts at {_where(empty)}")


def texts_hash(texts: list[str]) -> str:
    """SHA-256 over the texts in order; ties stored rows to the texts they were computed from."""
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()
