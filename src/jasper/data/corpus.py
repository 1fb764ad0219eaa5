"""Read a corpus of texts (txt, JSON lines, parquet) and refuse what cannot be trained on."""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import unicodedata
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

from jasper.errors import JasperError

MAX_REPORTED = 5


class CorpusError(JasperError):
    """A corpus file that cannot be used as given."""


def _where(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:MAX_REPORTED])
    more = f" and {len(lines) - MAX_REPORTED} more" if len(lines) > MAX_REPORTED else ""
    return f"line(s) {shown}{more}"


def _open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed on the fly for `.gz` (never unpacked to disk)."""
    if path.suffix.lower() == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def check_file(path: Path, what: str = "corpus", error: type[JasperError] = CorpusError) -> None:
    """An error naming `path` unless it is a regular file (not missing, not a folder, not a FIFO or a device)."""
    if not path.exists():
        raise error(f"{what} file '{path}' does not exist")
    if path.is_dir():
        raise error(f"{what} path '{path}' is a folder: give a file (.txt, .jsonl, .parquet, or .txt.gz/.jsonl.gz)")
    if not path.is_file():
        raise error(f"{what} path '{path}' is not a regular file (a pipe, socket or device): give a file")


def _lines(
    path: Path, what: str = "corpus", error: type[JasperError] = CorpusError
) -> Iterator[tuple[int, str | None]]:
    """(line number, text) for every line; None for a line that is not UTF-8; a leading BOM is dropped. A damaged
    gzip file is an error naming it."""
    check_file(path, what, error)
    try:
        with _open_binary(path) as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                try:
                    yield number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    yield number, None
    except gzip.BadGzipFile:
        raise error(f"{what} '{path}' is named .gz but is not a gzip file: rename it, or compress it") from None
    except (EOFError, zlib.error) as damaged:
        raise error(f"{what} '{path}' is a damaged or truncated gzip file ({damaged}): copy it again") from None


def _read_txt(path: Path) -> list[str]:
    texts: list[str] = []
    bad_utf8: list[int] = []
    for number, text in _lines(path):
        if text is None:
            bad_utf8.append(number)
        texts.append(text or "")
    if bad_utf8:
        raise CorpusError(f"corpus '{path}' is not valid UTF-8 at {_where(bad_utf8)}")
    return texts


def read_records(
    path: str | Path, what: str = "corpus", error: type[JasperError] = CorpusError
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every non-blank line of a JSON-lines file (optionally .gz); problems are
    `error`s naming the file as `what`."""
    path = Path(path)
    for number, line in _lines(path, what, error):
        if line is None:
            raise error(f"{what} '{path}' is not valid UTF-8 at line {number}")
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as bad:
            raise error(f"{what} '{path}' line {number} is not JSON: {bad.msg}") from None
        except RecursionError:
            raise error(f"{what} '{path}' line {number} is JSON nested too deeply to be a record") from None
        if not isinstance(record, dict):
            raise error(f"{what} '{path}' line {number} is not a JSON object")
        yield number, record


def _read_jsonl(path: Path, field: str) -> list[str]:
    texts: list[str] = []
    for number, record in read_records(path):
        value = record.get(field)
        if not isinstance(value, str):
            raise CorpusError(f"corpus '{path}' line {number} has no string field '{field}'")
        check_unicode(value, path, number)
        texts.append(value)
    return texts


def check_unicode(text: str, path: Path, line: int) -> None:
    """JSON can spell a lone surrogate (`\\ud800`), which is no Unicode text: an error naming the file and line."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CorpusError(
            f"corpus '{path}' line {line} holds text that is not valid Unicode (a lone surrogate)"
        ) from None


def _read_parquet(path: Path, field: str) -> list[str]:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pyarrow.ArrowException, OSError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise CorpusError(
            f"corpus '{path}' is named .parquet but cannot be read as Parquet ({first}): rename it to what it holds "
            "(.txt, .jsonl) or write it again"
        ) from None
    if field not in table.column_names:
        raise CorpusError(f"corpus '{path}' has no column '{field}' (columns: {table.column_names})")
    values = table.column(field).to_pylist()
    bad = [i + 1 for i, v in enumerate(values) if not isinstance(v, str)]
    if bad:
        raise CorpusError(f"corpus '{path}' column '{field}' is not a string at row(s) {bad[:MAX_REPORTED]}")
    return values


def corpus_format(path: str | Path) -> str:
    """'txt', 'jsonl' or 'parquet', from the name (a trailing .gz is looked through)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in (".jsonl", ".json"):
        return "jsonl"
    return "parquet" if last == ".parquet" else "txt"


def read_corpus(path: str | Path, text_field: str = "text") -> list[str]:
    """Read texts from .txt / .jsonl / .parquet (.txt and .jsonl also gzipped); empty files and texts are errors."""
    path = Path(path)
    check_file(path)
    kind = corpus_format(path)
    if kind == "jsonl":
        texts = _read_jsonl(path, text_field)
    elif kind == "parquet":
        texts = _read_parquet(path, text_field)
    else:
        texts = _read_txt(path)
    check_texts(texts, str(path))
    return texts


CONTENT_CATEGORIES = ("L", "N", "P", "S")  # letters, numbers, punctuation, symbols: what a model can read


def has_content(text: str) -> bool:
    """Whether `text` holds something to embed: a letter, number, punctuation mark or symbol, not only whitespace,
    control, format (zero-width, BOM), private-use or unassigned characters, which tokenizers drop."""
    return any(unicodedata.category(c)[0] in CONTENT_CATEGORIES and unicodedata.category(c) != "Co" for c in text)


def check_texts(texts: list[str], origin: str) -> None:
    """Refuse an empty corpus or texts with nothing to embed (empty, whitespace, zero-width or control characters
    only), naming where they are."""
    if not texts:
        raise CorpusError(f"corpus '{origin}' is empty: it holds no texts")
    empty = [i + 1 for i, text in enumerate(texts) if not has_content(text)]
    if empty:
        raise CorpusError(
            f"corpus '{origin}' has texts with nothing to embed (empty, or only whitespace, control or zero-width "
            f"characters) at {_where(empty)}"
        )


def texts_hash(texts: list[str]) -> str:
    """SHA-256 over the texts in order; ties stored rows to the texts they were computed from."""
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()
