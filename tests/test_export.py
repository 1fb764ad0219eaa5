"""Exported folders load with plain SentenceTransformer and give the same vectors as `jasper encode`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jasper.config import StudentConfig
from jasper.errors import JasperError
from jasper.export.sentence_transformers import export_head
from jasper.models.student import build_student

TEXTS = ["the cat saw a dog", "music and film", "the old king wrote a book about war", "a"]


@pytest.mark.parametrize("head_mode", ["independent", "prefix"])
def test_export_matches_student(tiny_bert, tmp_path, head_mode):
    from sentence_transformers import SentenceTransformer

    student = build_student(
        StudentConfig(model=str(tiny_bert), keep_layers=[0, 1], heads=[12, 6], max_length=16, head_mode=head_mode)
    )
    for dim in (12, 6):
        out = export_head(student, dim, tmp_path / f"dim-{dim}")
        modules = [m["type"] for m in json.loads((out / "modules.json").read_text())]
        assert [m.rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
        loaded = SentenceTransformer(str(out), device="cpu")
        got = loaded.encode(TEXTS, convert_to_numpy=True)
        np.testing.assert_allclose(got, student.encode(TEXTS, [dim])[dim], atol=1e-5)
        assert got.shape == (4, dim)


def test_export_unknown_dim(tiny_bert, tmp_path):
    student = build_student(StudentConfig(model=str(tiny_bert), heads=[12]))
    with pytest.raises(JasperError, match="not a head"):
        export_head(student, 5, tmp_path / "x")
