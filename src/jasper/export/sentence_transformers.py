"""Write one head of a student as a plain sentence-transformers folder (Transformer, Pooling, Dense, Normalize)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from jasper.encode import JASPER_EXPORT_META
from jasper.models.student import Student
from jasper.runtime import quiet_transformers

ST_FLOOR = "6.0"  # the oldest sentence-transformers whose module paths the saved modules.json names


def export_head(student: Student, dim: int, out: Path) -> Path:
    """Write `out` so that `SentenceTransformer(out)` gives the student's `dim`-d vectors, no custom code."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    if dim not in student.head_dims:
        raise ValueError(f"dim {dim} is not a head of this student (heads: {student.head_dims})")
    out = Path(out)
    weight, bias = student.head_weight(dim)
    broken = [name for name, p in student.named_parameters() if not torch.isfinite(p).all()]
    if broken:
        raise ValueError(f"the student has non-finite weights ({', '.join(broken[:3])}...): nothing exported to {out}")
    with tempfile.TemporaryDirectory() as scratch, quiet_transformers():
        student.backbone.save_pretrained(scratch)
        student.tokenizer.save_pretrained(scratch)
        transformer = Transformer(scratch, max_seq_length=student.max_length)
        pooling = Pooling(student.hidden_size, pooling_mode="mean")
        dense = Dense(
            student.hidden_size,
            dim,
            bias=True,
            activation_function=nn.Identity(),
            init_weight=weight.detach().cpu().float().clone(),
            init_bias=bias.detach().cpu().float().clone(),
        )
        model = SentenceTransformer(modules=[transformer, pooling, dense, Normalize()], device="cpu")
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save(str(tmp))
    _write_jasper_notes(tmp, student, dim)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _write_jasper_notes(folder: Path, student: Student, dim: int) -> None:
    """`jasper_head.json` (which head of which heads) and a section of the model card on loading it."""
    from importlib.metadata import version

    meta = {"dim": dim, "heads": student.head_dims, "head_mode": student.head_mode, "jasper": version("jasper-distill")}
    (folder / JASPER_EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    kind = (
        "FC1, the head fitted to the teachers' concatenated vectors" if dim == student.head_dims[0] else "a short head"
    )
    card = folder / "README.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    card.write_text(
        text
        + f"""
## Distilled with jasper

The {dim}-d head ({kind}) of a jasper student with heads {student.head_dims} ({student.head_mode}).
Loading it needs **sentence-transformers >= {ST_FLOOR}**: `modules.json` names the module classes by their
6.x paths (`sentence_transformers.base.modules...`), which older releases lack.

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("path/to/this/folder")
vectors = model.encode(["a sentence"])  # ({dim},) per text, L2-normalised
```
""",
        encoding="utf-8",
    )


@torch.no_grad()
def export_all(student: Student, dims: list[int], folder: Path) -> list[Path]:
    """`folder/dim-<D>/` for each dim."""
    return [export_head(student, dim, Path(folder) / f"dim-{dim}") for dim in dims]
