"""The mteb wrapper evaluates a student at a head dim on an mteb task built from local data."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from jasper.config import StudentConfig
from jasper.errors import JasperError
from jasper.eval.metrics import sts_spearman
from jasper.eval.mteb_wrapper import instruction_prefix
from jasper.models.student import build_student

needs_mteb = pytest.mark.skipif(importlib.util.find_spec("mteb") is None, reason="mteb is not installed")


def test_instruction_prefix_follows_the_paper():
    assert instruction_prefix("Retrieval", "query") == (
        "Instruct: Given a web search query, retrieve relevant passages that answer the query.\nQuery: "
    )
    assert instruction_prefix("Retrieval", "document") == ""
    assert instruction_prefix("STS", None) == "Instruct: Retrieve semantically similar text.\nQuery: "
    assert instruction_prefix("STS", None, prompts="none") == ""


@needs_mteb
@pytest.mark.parametrize("prompts", ["none", "jasper"])
def test_wrapper_scores_like_our_own_metric(tiny_bert, prompts):
    from jasper.eval.mteb_wrapper import run_mteb
    from mteb_local import PAIRS, LocalSTS

    student = build_student(StudentConfig(model=str(tiny_bert), heads=[8, 4], max_length=32))
    [(name, score)] = run_mteb(student, 4, [], prompts=prompts, tasks=[LocalSTS()])
    prefix = instruction_prefix("STS", None, prompts)
    left = student.encode([prefix + t for t in PAIRS["sentence1"]], [4])[4]
    right = student.encode([prefix + t for t in PAIRS["sentence2"]], [4])[4]
    assert name == "LocalSTS"
    assert score == pytest.approx(sts_spearman(left, right, np.asarray(PAIRS["score"])), abs=1e-6)


def test_unknown_dim_is_refused(tiny_bert):
    pytest.importorskip("mteb")
    from jasper.eval.mteb_wrapper import mteb_model

    student = build_student(StudentConfig(model=str(tiny_bert), heads=[8]))
    with pytest.raises(JasperError, match="not a head"):
        mteb_model(student, 5)
