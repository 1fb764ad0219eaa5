"""Tiny models, tokenizers and teachers built in code: tests never download anything."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np

WORDS = [
    "the",
    "a",
    "an",
    "of",
    "to",
    "and",
    "in",
    "is",
    "was",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "that",
    "this",
    "it",
    "be",
    "are",
    "were",
    "he",
    "she",
    "they",
    "we",
    "you",
    "cat",
    "dog",
    "bird",
    "fish",
    "tree",
    "river",
    "city",
    "king",
    "queen",
    "war",
    "peace",
    "music",
    "film",
    "book",
    "game",
    "science",
    "history",
    "art",
    "red",
    "blue",
    "green",
    "small",
    "large",
    "old",
    "new",
    "fast",
    "slow",
    "good",
    "bad",
    "first",
    "last",
    "many",
    "few",
    "ran",
    "saw",
    "made",
    "found",
    "built",
    "played",
    "wrote",
    "sang",
    "read",
    "went",
    "came",
    "took",
    "gave",
    "open",
    "closed",
    "north",
    "south",
    "east",
    "west",
    "water",
    "fire",
    "earth",
    "air",
]


def vocab() -> list[str]:
    """A WordPiece vocabulary: special tokens, the words, and letters as fallback pieces."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *[f"##{c}" for c in letters], ".", ","]


def make_tokenizer(folder: Path):
    """A BERT tokenizer made from `vocab()`."""
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = vocab()
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    # the vocabulary itself, not its file: transformers 5 reads `vocab` and ignores a `vocab_file` argument
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    assert tokenizer("the cat")["input_ids"] == [2, words.index("the"), words.index("cat"), 3], (
        "a vocabulary-less tokenizer"
    )
    return tokenizer


def _save_tiny(folder: Path, config_class, model_class, layers: int, hidden: int, **extra) -> Path:
    import torch

    torch.manual_seed(0)
    tokenizer = make_tokenizer(folder)
    config = config_class(
        vocab_size=len(vocab()),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        **extra,
    )
    model_class(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_bert(folder: Path, layers: int = 4, hidden: int = 16, dropout: float = 0.1) -> Path:
    """Save a random 4-layer, 16-wide BERT and its tokenizer to `folder`."""
    from transformers import BertConfig, BertModel

    rates = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    return _save_tiny(folder, BertConfig, BertModel, layers, hidden, **rates)


def make_tiny_qwen2(folder: Path, layers: int = 4, hidden: int = 16) -> Path:
    """Save a random 4-layer, 16-wide Qwen2 (the stella family) with a BERT-vocabulary tokenizer."""
    from transformers import Qwen2Config, Qwen2Model

    return _save_tiny(folder, Qwen2Config, Qwen2Model, layers, hidden, num_key_value_heads=1)


def _hash_vector(text: str, dim: int, salt: str) -> np.ndarray:
    vector = np.zeros(dim, dtype=np.float64)
    for word in re.findall(r"\w+", text.lower()):
        seed = int.from_bytes(hashlib.sha256((salt + word).encode()).digest()[:8], "little")
        vector += np.random.default_rng(seed).standard_normal(dim)
    return vector + 1e-3


def hash_teacher(texts: list[str], dim: int = 8, salt: str = "a") -> np.ndarray:
    """A deterministic bag-of-words teacher: similar texts get similar vectors. (N, dim)"""
    return np.stack([_hash_vector(t, dim, salt) for t in texts]).astype(np.float32)


def teacher_a(texts: list[str]) -> np.ndarray:
    """8-dim teacher."""
    return hash_teacher(texts, 8, "a")


def teacher_b(texts: list[str]) -> np.ndarray:
    """4-dim teacher."""
    return hash_teacher(texts, 4, "b")


def teacher_logged(texts: list[str]) -> np.ndarray:
    """teacher_a, also appending every text it encodes to <TEACH_LOG>/<pid>.txt (to count what was paid for)."""
    log = os.environ.get("TEACH_LOG")
    if log:
        with open(Path(log) / f"{os.getpid()}.txt", "a", encoding="utf-8") as handle:
            handle.write("".join(t + "\n" for t in texts))
    return hash_teacher(texts, 8, "a")


def teacher_dim_from_env(texts: list[str]) -> np.ndarray:
    """A teacher whose width is read from TEACHER_DIM, to simulate a changed model."""
    return hash_teacher(texts, int(os.environ.get("TEACHER_DIM", "8")), "a")


def teacher_nan(texts: list[str]) -> np.ndarray:
    """Returns NaN for texts containing 'fire'."""
    vectors = hash_teacher(texts, 8, "a")
    vectors[["fire" in t for t in texts]] = np.nan
    return vectors


def teacher_zero(texts: list[str]) -> np.ndarray:
    """Returns a zero vector for texts containing 'water'."""
    vectors = hash_teacher(texts, 8, "a")
    vectors[["water" in t for t in texts]] = 0.0
    return vectors


def teacher_paper_nv(texts: list[str]) -> np.ndarray:
    """4096-dim stand-in for NV-Embed-v2."""
    return hash_teacher(texts, 4096, "nv")


def teacher_paper_stella(texts: list[str]) -> np.ndarray:
    """8192-dim stand-in for stella's 8192-d head."""
    return hash_teacher(texts, 8192, "stella")


def sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct random sentences over the tiny vocabulary."""
    rng = np.random.default_rng(seed)
    content = WORDS[22:]
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        text = " ".join(rng.choice(content, size=int(rng.integers(4, 10))))
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def teacher_huge(texts: list[str]) -> np.ndarray:
    """teacher_a's vectors scaled to entries near 1e20: finite, but their float32 norm overflows."""
    return hash_teacher(texts, 8, "a") * np.float32(1e20)


def teacher_ragged(texts: list[str]) -> list[list[float]]:
    """Rows of different lengths: not an array."""
    return [[0.1] * (1 + i % 3) for i in range(len(texts))]


SEEN: list[str] = []  # every text `recording_teacher` was given, in order


def recording_teacher(texts: list[str]) -> np.ndarray:
    """A hash teacher that records what it reads (prompts included)."""
    SEEN.extend(texts)
    return hash_teacher(texts, 8, "a")
