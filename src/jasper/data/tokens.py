"""Token ids of the whole corpus, computed once before training: no tokenizer call in the training step."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jasper.progress import progress_bar

CHUNK = 4096  # texts per tokenizer call


class TokenCache:
    """Every text's token ids in one flat int32 array with offsets (a list of Python ints would take ~9x more)."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray) -> None:
        self.flat = flat
        self.offsets = offsets
        self.lengths = np.diff(offsets)  # token count of every text (N,), read at every step

    @classmethod
    def build(
        cls, tokenize: Callable[[list[str]], list[list[int]]], texts: list[str], progress: bool = True
    ) -> TokenCache:
        """Tokenise `texts` in chunks with `tokenize` (text -> ids, as the student's `token_ids`)."""
        pieces: list[np.ndarray] = []
        lengths = np.zeros(len(texts), dtype=np.int64)
        bar = progress_bar(len(texts), "tokenise", "text", disable=not progress or len(texts) < 50_000)
        for start in range(0, len(texts), CHUNK):
            ids = tokenize(texts[start : start + CHUNK])
            lengths[start : start + len(ids)] = [len(row) for row in ids]
            pieces += [np.asarray(row, dtype=np.int32) for row in ids]
            bar.update(len(ids))
        bar.close()
        flat = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
        return cls(flat, np.concatenate([[0], np.cumsum(lengths)]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def rows(self, rows: np.ndarray) -> list[np.ndarray]:
        """The token ids of `rows`, in order (views, no copies)."""
        return [self.flat[self.offsets[r] : self.offsets[r + 1]] for r in np.asarray(rows)]
