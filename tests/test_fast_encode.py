"""The fast teacher path gives `SentenceTransformer.encode`'s vectors, in the original order, for right- and
left-padded tokenizers, any batch or token cap, and with several tokenizer threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from jasper.config import TeacherConfig
from jasper.errors import JasperError
from jasper.teachers import cpu_fusion
from jasper.teachers.fast_encode import pad, resolve_dtype, sorted_batches
from jasper.teachers.sentence_transformers import SentenceTransformerTeacher

import helpers


def _st_folder(model_dir: Path, out: Path, pooling: str, left: bool = False) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    transformer = Transformer(str(model_dir), max_seq_length=12)
    if left:
        transformer.tokenizer.padding_side = "left"
    dense = Dense(16, 8, activation_function=torch.nn.Tanh())
    model = SentenceTransformer(modules=[transformer, Pooling(16, pooling_mode=pooling), dense, Normalize()])
    model.save(str(out))
    return out


@pytest.fixture(scope="module")
def bert_st(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("st-bert")
    return _st_folder(helpers.make_tiny_bert(root / "hf", dropout=0.0), root / "st", "mean")


@pytest.fixture(scope="module")
def qwen_st(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("st-qwen")
    return _st_folder(helpers.make_tiny_qwen2(root / "hf"), root / "st", "lasttoken", left=True)


def _texts() -> list[str]:
    # lengths from one word to past max_seq_length (truncated), in no particular order
    return [" ".join(helpers.WORDS[(i * 7) % 40 : (i * 7) % 40 + 1 + (i * 5) % 17]) for i in range(37)]


@pytest.mark.parametrize("folder", ["bert_st", "qwen_st"])
@pytest.mark.parametrize(("batch_size", "max_tokens", "workers"), [(4, None, 1), (64, None, 1), (8, 30, 3)])
def test_fast_equals_sentence_transformers(request, folder, batch_size, max_tokens, workers):
    path = str(request.getfixturevalue(folder))
    texts = _texts()
    base = {"name": "t", "model": path, "batch_size": batch_size, "max_batch_tokens": max_tokens, "workers": workers}
    fast = SentenceTransformerTeacher(TeacherConfig(**base, engine="fast"))
    plain = SentenceTransformerTeacher(TeacherConfig(**base, engine="sentence-transformers"))
    assert fast.fast is not None and plain.fast is None
    got, want = fast.encode(texts), plain.encode(texts)
    assert got.shape == want.shape == (len(texts), 8)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert fast.fast.use_own_padding  # the own padding matched `preprocess` on the first batch
    kinds = {type(m).__name__ for m in fast.model[0].modules()}
    assert ("PackedLinear" in kinds) == cpu_fusion.available()  # float32 on CPU: oneDNN matmuls kept
    np.testing.assert_allclose(fast.encode(texts[5:9]), want[5:9], atol=1e-5)  # later calls, other sizes


def test_fast_falls_back_to_preprocess_when_tokenisation_differs(bert_st):
    teacher = SentenceTransformerTeacher(TeacherConfig(name="t", model=str(bert_st), engine="fast", batch_size=5))
    teacher.fast.max_length = 6  # own tokenisation now truncates shorter than the module
    want = SentenceTransformerTeacher(TeacherConfig(name="t", model=str(bert_st), engine="sentence-transformers"))
    np.testing.assert_allclose(teacher.encode(_texts()), want.encode(_texts()), atol=1e-5)
    assert not teacher.fast.use_own_padding


@pytest.mark.skipif(not cpu_fusion.available(), reason="needs torch's oneDNN ops")
def test_cpu_fusion_keeps_the_outputs_and_undoes(bert_st):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(bert_st), device="cpu")
    texts = _texts()
    before = model.encode(texts, convert_to_numpy=True)
    undo = cpu_fusion.fuse_linears(model[0])
    packed = [m for m in model[0].modules() if isinstance(m, cpu_fusion.PackedLinear)]
    assert len(packed) == 4 * 6 + 1 and sum(m.post == "gelu" for m in packed) == 4  # q k v o up down x 4, pooler
    np.testing.assert_allclose(model.encode(texts, convert_to_numpy=True), before, atol=1e-6)
    cpu_fusion.unfuse(undo)
    assert not any(isinstance(m, cpu_fusion.PackedLinear) for m in model[0].modules())


def test_sorted_batches_cover_every_row_once_longest_first():
    lengths = np.array([3, 9, 1, 9, 4, 7, 2, 8, 5, 6])
    batches = sorted_batches(lengths, batch_size=3, max_tokens=20)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(10))
    assert lengths[flat].tolist() == sorted(lengths.tolist(), reverse=True)
    for batch in batches:
        assert len(batch) <= 3 and (len(batch) == 1 or len(batch) * lengths[batch].max() <= 20)
    assert [len(b) for b in sorted_batches(np.array([50, 2]), batch_size=4, max_tokens=10)] == [1, 1]


def test_pad_sides():
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0, left=False)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0, left=True)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_dtype_choice():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype("auto", cpu, torch.bfloat16) == torch.float32
    assert resolve_dtype("auto", gpu, torch.bfloat16) == torch.bfloat16  # an LLM checkpoint keeps its type
    assert resolve_dtype("auto", gpu, torch.float32) == torch.float16
    assert resolve_dtype("bfloat16", cpu, None) == torch.bfloat16


def test_fast_engine_on_a_model_it_cannot_drive_is_an_error(bert_st, monkeypatch):
    from jasper.teachers.fast_encode import FastSentenceEncoder

    monkeypatch.setattr(FastSentenceEncoder, "supports", staticmethod(lambda model: False))
    with pytest.raises(JasperError, match="engine 'fast' needs a text model with a fast tokenizer"):
        SentenceTransformerTeacher(TeacherConfig(name="t", model=str(bert_st), engine="fast"))
    auto = SentenceTransformerTeacher(TeacherConfig(name="t", model=str(bert_st)))  # auto falls back
    assert auto.fast is None


def test_unknown_engine_value_is_a_config_error():
    with pytest.raises(ValueError, match="engine"):
        TeacherConfig(name="t", model="m", engine="turbo")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fast_half_precision_on_cuda(bert_st):
    texts = _texts()
    half = SentenceTransformerTeacher(TeacherConfig(name="t", model=str(bert_st), engine="fast"), "cuda")
    full = SentenceTransformerTeacher(TeacherConfig(name="t", model=str(bert_st), engine="sentence-transformers"))
    assert half.fast is not None and half.fast.dtype == torch.float16
    np.testing.assert_allclose(half.encode(texts), full.encode(texts), atol=2e-3)


@pytest.mark.parametrize("engine", ["fast", "sentence-transformers"])
def test_progress_is_reported_batch_by_batch(bert_st, engine):
    done: list[int] = []
    teacher = SentenceTransformerTeacher(TeacherConfig(name="t", model=str(bert_st), batch_size=4, engine=engine))
    teacher.encode(_texts(), on_rows=done.append)
    assert sum(done) == len(_texts())
    assert len(done) == (10 if engine == "fast" else 1)  # fast: every batch; plain: every 16 batches


def test_a_short_text_is_never_padded_to_a_long_ones_length():
    lengths = np.array([300, 12, 280, 10, 140, 11])
    batches = sorted_batches(lengths, batch_size=64, spread=2.0)
    assert [sorted(lengths[b].tolist()) for b in batches] == [[280, 300], [140], [10, 11, 12]]
    assert sorted(np.concatenate(batches).tolist()) == list(range(6))
    assert len(sorted_batches(lengths, batch_size=64)) == 1  # without a spread: one batch, padded to 300
