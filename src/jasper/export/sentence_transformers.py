"""Write one head of a student as a plain sentence-transformers folder (Transformer, Pooling, Dense, Normalize)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from jasper.models.student import Student


def export_head(student: Student, dim: int, out: Path) -> Path:
    """Write `out` so that `SentenceTransformer(out)` gives the student's `dim`-d vectors, no custom code."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    if dim not in student.head_dims:
        raise ValueError(f"dim {dim} is not a head of this student (heads: {student.head_dims})")
    out = Path(out)
    weight, bias = student.head_weight(dim)
    with tempfile.TemporaryDirectory() as scratch:
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
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


@torch.no_grad()
def export_all(student: Student, dims: list[int], folder: Path) -> list[Path]:
    """`folder/dim-<D>/` for each dim."""
    return [export_head(student, dim, Path(folder) / f"dim-{dim}") for dim in dims]
