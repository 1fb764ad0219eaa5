"""ONNX and int8 copies of exported heads: parity with the sentence-transformers folder, and serving them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jasper.config import StudentConfig
from jasper.errors import JasperError
from jasper.export.onnx import FP32_FILE, INT8_FILE, O3_FILE, OnnxEmbedder, export_onnx
from jasper.export.sentence_transformers import export_all
from jasper.models.student import build_student
from jasper.serve import load_embedder

TEXTS = ["the cat saw a dog", "music", "an old king wrote a long book about the war", "a red bird"]


@pytest.fixture(scope="module")
def export_dir(tiny_bert, tmp_path_factory):
    student = build_student(StudentConfig(model=str(tiny_bert), heads=[12, 6], max_seq_length=8))
    folder = tmp_path_factory.mktemp("onnx") / "export"
    for path in export_all(student, [12, 6], folder):
        written = export_onnx(path, quantize="int8")
        assert [p.relative_to(path).as_posix() for p in written] == [FP32_FILE, O3_FILE, INT8_FILE]
    return folder


@pytest.mark.parametrize("dim", [12, 6])
def test_onnx_head_gives_the_sentence_transformers_vectors(export_dir, dim):
    from sentence_transformers import SentenceTransformer

    folder = export_dir / f"dim-{dim}"
    expected = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, normalize_embeddings=True)
    found = OnnxEmbedder(folder).encode(TEXTS)
    assert found.shape == (4, dim) and np.abs(found - expected).max() <= 1e-5
    fused = OnnxEmbedder(folder, O3_FILE).encode(TEXTS)
    assert (fused * expected).sum(axis=1).min() > 0.9999  # fast GELU: nearly the same
    quantized = OnnxEmbedder(folder, INT8_FILE).encode(TEXTS)
    cosines = (quantized * expected).sum(axis=1)
    assert quantized.shape == (4, dim) and cosines.min() > 0.9  # int8 weights: close, not equal


def _at(embedder, dim: int, role: str = "text") -> np.ndarray:
    """Every text at one head, through the server's own path."""
    return embedder.embed_each(TEXTS, [dim] * len(TEXTS), [role] * len(TEXTS))[dim]


def test_serving_the_onnx_heads(export_dir):
    served = load_embedder(export_dir, backend="onnx")
    assert served.dims == [12, 6] and served.backend == f"onnx ({FP32_FILE})"
    torch_served = load_embedder(export_dir, backend="torch")
    reference = _at(torch_served, 6)
    assert torch_served.backend == "torch"
    assert np.abs(_at(served, 6) - reference).max() <= 1e-5 and _at(served, 12).shape == (4, 12)
    fastest = load_embedder(export_dir)  # auto: the fastest files every head holds
    assert fastest.backend == f"onnx ({INT8_FILE})"
    assert ((_at(fastest, 6) * reference).sum(axis=1) > 0.9).all()


def test_missing_onnx_file_says_what_to_run(tiny_bert, tmp_path):
    student = build_student(StudentConfig(model=str(tiny_bert), heads=[6], max_seq_length=8))
    (path,) = export_all(student, [6], tmp_path)
    with pytest.raises(JasperError, match="--format onnx"):
        OnnxEmbedder(path)


def test_int8_is_chosen_for_the_cpu_family(monkeypatch, tmp_path):
    from jasper.export import onnx as module

    cases = (
        ("fpu avx2 avx512f avx512bw avx512_vnni", "avx512_vnni"),
        ("fpu avx2 avx_vnni", "avx512_vnni"),
        ("fpu avx2 avx512f avx512bw", "avx512"),
        ("fpu sse4_2 avx2", "avx2"),
    )
    for flags, family in cases:
        cpuinfo = tmp_path / f"{family}-cpuinfo"
        cpuinfo.write_text(f"flags\t\t: {flags}\n")
        monkeypatch.setattr(module, "Path", lambda p, c=cpuinfo: c if p == "/proc/cpuinfo" else Path(p))
        assert module.int8_target() == family
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert module.int8_target() == "arm64"
    assert module.INT8_TARGETS["avx2"] == ("onnx/model_quint8_avx2.onnx", True)  # unsigned weights without VNNI
    with pytest.raises(JasperError, match="choose int8, int8-avx512_vnni"):
        export_onnx(tmp_path, "int4")


class _Recorder:
    """An ONNX session stand-in that records each batch's (rows, width) and runs the real one."""

    def __init__(self, session) -> None:
        self.session, self.shapes = session, []

    def run(self, outputs, feeds):
        self.shapes.append(feeds["input_ids"].shape)
        return self.session.run(outputs, feeds)


def test_the_server_runs_a_mixed_batch_in_length_groups(export_dir):
    served = load_embedder(export_dir, backend="onnx")
    embedder = served.encoders[6].args[0]  # the head's OnnxEmbedder
    recorder = _Recorder(embedder.session)
    embedder.session = recorder
    texts = ["cat", "an old king wrote a long book about the war and the sea"] * 16  # one window, interleaved
    mixed = served.embed_each(texts, [6] * 32, ["text"] * 32)[6]
    alone = served.embed_each(texts[:1], [6], ["text"])[6]
    assert sorted(recorder.shapes[:2]) == [(16, 3), (16, 8)]  # the short texts are not padded to the long ones
    assert np.abs(mixed[0] - alone[0]).max() <= 1e-5
