"""Write one head of a student as a plain sentence-transformers folder (Transformer, Pooling, Dense, Normalize)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from jasper.errors import JasperError
from jasper.io import folder_swap
from jasper.models.student import Student
from jasper.paths import EXPORT_META as JASPER_EXPORT_META
from jasper.runtime import quiet_transformers

# modules.json names each module by its classic path, which sentence-transformers 5.x and 6.x both import
CLASSIC_MODULES = {
    name: f"sentence_transformers.models.{name}" for name in ("Transformer", "Pooling", "Dense", "Normalize")
}


def export_head(student: Student, dim: int, out: Path, extras: Callable[[Path], object] | None = None) -> Path:
    """Write `out` so that `SentenceTransformer(out)` gives the student's `dim`-d vectors, no custom code.

    `extras(folder)` adds what goes beside the modules (the model card, ONNX copies) before the folder is swapped in
    whole: a kill at any moment leaves the old export or the new one.
    """
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
        transformer = Transformer(scratch, max_seq_length=student.max_seq_length)
        pooling = Pooling(student.hidden_size, pooling_mode="mean")
        dense = Dense(
            student.hidden_size,
            dim,
            bias=True,
            activation_function=nn.Identity(),
            init_weight=weight.detach().cpu().float().clone(),
            init_bias=bias.detach().cpu().float().clone(),
        )
        model = SentenceTransformer(
            modules=[transformer, pooling, dense, Normalize()],
            device="cpu",
            prompts=dict(student.prompts),  # encode_query / encode_document and prompt_name= apply them
            default_prompt_name=student.default_prompt_name,
        )
        with folder_swap(out) as staging:
            model.save(str(staging))
            _classic_modules(staging, student.max_seq_length)
            _write_jasper_notes(staging, student, dim)
            if extras is not None:
                extras(staging)
    return out


def _classic_modules(folder: Path, max_length: int) -> None:
    """Name the modules by the paths every sentence-transformers release reads (`sentence_transformers.models.*`),
    and keep `max_seq_length` where 5.x reads it (6.x keeps it in the tokenizer's config as well)."""
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    for module in modules:
        module["type"] = CLASSIC_MODULES[module["type"].rsplit(".", 1)[-1]]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")
    settings_path = folder / "sentence_bert_config.json"
    settings = json.loads(settings_path.read_text(encoding="utf-8")) if settings_path.is_file() else {}
    settings.setdefault("max_seq_length", max_length)
    settings_path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def _write_jasper_notes(folder: Path, student: Student, dim: int) -> None:
    """`jasper_head.json`: which head of which heads this folder is (the run's model card comes after)."""
    from importlib.metadata import version

    meta = {"dim": dim, "heads": student.head_dims, "head_mode": student.head_mode, "jasper": version("jasper-distill")}
    (folder / JASPER_EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


@torch.no_grad()
def export_all(
    student: Student, dims: list[int], folder: Path, extras: Callable[[Path], object] | None = None
) -> list[Path]:
    """`folder/dim-<D>/` for each dim (`extras`: as in `export_head`)."""
    return [export_head(student, dim, Path(folder) / f"dim-{dim}", extras) for dim in dims]
