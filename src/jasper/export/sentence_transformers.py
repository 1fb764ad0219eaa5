"""Write one head of a student as a plain sentence-transformers folder (Transformer, Pooling, Dense, Normalize)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from jasper.errors import JasperError
from jasper.io import folder_swap
from jasper.models.student import Student
from jasper.runtime import quiet_transformers

JASPER_EXPORT_META = "jasper_head.json"  # beside each exported head's modules: which head of which heads it is
ST_FLOOR = "6.0"  # the oldest sentence-transformers whose module paths the saved modules.json names


def export_head(student: Student, dim: int, out: Path) -> Path:
    """Write `out` so that `SentenceTransformer(out)` gives the student's `dim`-d vectors, no custom code."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    if dim not in student.head_dims:
        raise JasperError(f"dim {dim} is not a head of this student (heads: {student.head_dims})")
    out = Path(out)
    weight, bias = student.head_weight(dim)
    broken = [name for name, p in student.named_parameters() if not torch.isfinite(p).all()]
    if broken:
        raise JasperError(f"the student has non-finite weights ({', '.join(broken[:3])}...): nothing exported to {out}")
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
        with folder_swap(out) as staging:
            model.save(str(staging))
            _write_jasper_notes(staging, student, dim)
    return out


def _write_jasper_notes(folder: Path, student: Student, dim: int) -> None:
    """`jasper_head.json`: which head of which heads this folder is (the run's model card comes after)."""
    from importlib.metadata import version

    meta = {"dim": dim, "heads": student.head_dims, "head_mode": student.head_mode, "jasper": version("jasper-distill")}
    (folder / JASPER_EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


@torch.no_grad()
def export_all(student: Student, dims: list[int], folder: Path) -> list[Path]:
    """`folder/dim-<D>/` for each dim."""
    return [export_head(student, dim, Path(folder) / f"dim-{dim}") for dim in dims]
