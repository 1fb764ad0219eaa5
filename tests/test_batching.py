"""Clustered batches (every row once per epoch, a share from one cluster, composing with length_pool, cached once,
an exact resume), periodic dev evaluation with keep_best, and self-distilled short heads that train alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from jasper.config import build_config
from jasper.models.student import build_student
from jasper.train import batching
from jasper.train.batching import cached_clusters, clustered_order
from jasper.train.loop import StageRunner
from jasper.train.schedule import epoch_order, epoch_token_batches, make_optimizer, token_batches
from jasper.train.stages import apply_stage
from test_cli import _jasper

import helpers
from conftest import tiny_config_dict


def _labels(n: int, clusters: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, clusters, n)


@pytest.mark.parametrize("share", [0.25, 0.5, 1.0])
def test_every_row_once_and_a_share_from_one_cluster(share):
    n, size = 1000, 32
    labels = _labels(n, 10)
    order = clustered_order(np.random.default_rng(1).permutation(n), labels, size, share, np.random.default_rng(2))
    assert sorted(order.tolist()) == list(range(n))  # every row once, the last partial batch at the end
    batches = order[: (n // size) * size].reshape(-1, size)
    dominant = [np.bincount(labels[b], minlength=10).max() for b in batches]
    # random batches of 32 over 10 equal clusters hold ~5-9 of the commonest; these hold the share and more
    assert np.median(dominant) >= round(share * size)
    plain = np.random.default_rng(1).permutation(n)[: (n // size) * size].reshape(-1, size)
    assert np.median(dominant) > np.median([np.bincount(labels[b], minlength=10).max() for b in plain])


def test_the_order_is_a_pure_function_of_the_seed():
    labels = _labels(500, 7)
    order = np.random.default_rng(3).permutation(500)
    first = clustered_order(order, labels, 16, 0.5, np.random.default_rng([0, 1, 2, 1]))
    again = clustered_order(order, labels, 16, 0.5, np.random.default_rng([0, 1, 2, 1]))
    other = clustered_order(order, labels, 16, 0.5, np.random.default_rng([0, 1, 3, 1]))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_it_composes_with_length_pool():
    n, size, pool = 960, 16, 8
    lengths = np.random.default_rng(4).integers(3, 60, n)
    labels = _labels(n, 6)
    spreads = {}
    for name, p in (("plain", 1), ("pooled", pool)):
        order = epoch_order(n, 0, 0, size, 0, lengths if p > 1 else None, p)
        dealt = clustered_order(order, labels, size, 0.5, np.random.default_rng(5))
        assert sorted(dealt.tolist()) == list(range(n))
        batches = dealt.reshape(-1, size)
        # the random half of each batch comes from the (length-bucketed) order in sequence
        spreads[name] = np.mean([np.ptp(lengths[b[size // 2 :]]) for b in batches])
    assert spreads["pooled"] < 0.5 * spreads["plain"]


def test_clusters_are_computed_once_per_run(tmp_path, monkeypatch):
    vectors = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    calls = []
    real = batching.cluster_rows
    monkeypatch.setattr(batching, "cluster_rows", lambda *a: calls.append(1) or real(*a))
    first = cached_clusters(tmp_path, vectors, 4, seed=0)
    second = cached_clusters(tmp_path, vectors, 4, seed=0)
    assert calls == [1] and np.array_equal(first, second) and set(first.tolist()) == {0, 1, 2, 3}
    assert len(list(tmp_path.glob("clusters-4-*.npy"))) == 1


def _stsb(folder: Path) -> Path:
    """A tiny STS-B-format dev split (tab-separated, score in field 5, sentences in 6 and 7)."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = helpers.sentences(60, seed=9)
    rows = [f"g\tf\ty\t{i:04d}\t{(i * 7) % 6:.1f}\t{texts[i]}\t{texts[i + 30]}" for i in range(30)]
    (folder / "sts-dev.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def _config(tiny_bert, corpus_file, tmp_path, name: str, **stage) -> Path:
    data = tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs", name=name)
    data["store"]["dir"] = str(tmp_path / "teachers")
    data["eval"] = {"stsb_dir": str(_stsb(tmp_path / "stsb"))}
    for entry in data["stages"]:
        entry.update(stage)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _log(tmp_path: Path, name: str) -> list[dict]:
    rows = (tmp_path / "runs" / name / "train_log.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(row).items() if k not in ("seconds", "time")} for row in rows]


@pytest.mark.e2e
def test_a_killed_clustered_run_resumes_onto_the_same_batches(tiny_bert, corpus_file, tmp_path):
    settings = {"batching": "clustered", "clusters": 3, "length_pool": 2, "eval_every": 2}
    whole = _config(tiny_bert, corpus_file, tmp_path, "whole", **settings)
    killed = _config(tiny_bert, corpus_file, tmp_path, "killed", **settings)
    assert _jasper("teach", str(whole)).returncode == 0
    assert _jasper("train", str(whole)).returncode == 0
    assert _jasper("train", str(killed), env={"JASPER_KILL_AFTER_STEPS": "7"}).returncode != 0
    assert _jasper("train", str(killed)).returncode == 0
    assert _log(tmp_path, "whole") == _log(tmp_path, "killed")
    for file in ("heads.safetensors", "backbone/model.safetensors"):
        a = load_file(str(tmp_path / "runs" / "whole" / "student" / file))
        b = load_file(str(tmp_path / "runs" / "killed" / "student" / file))
        assert all(torch.equal(a[k], b[k]) for k in a), file
    evaluations = [r for r in _log(tmp_path, "whole") if r.get("kind") == "eval"]
    # each stage is scored at its start too: where its curve begins, and a keep_best candidate
    assert [(r["stage"], r["step"]) for r in evaluations] == [(s, i) for s in ("s1", "s2", "s3") for i in (0, 2, 4)]
    assert {"sts-b-dev@12", "sts-b-dev@6", "sts-b-dev@3"} <= set(evaluations[0])
    assert len(list((tmp_path / "runs" / "whole" / "clusters").glob("clusters-3-*.npy"))) == 1


@pytest.mark.e2e
def test_more_clusters_than_rows_is_one_clear_error(tiny_bert, corpus_file, tmp_path):
    path = _config(tiny_bert, corpus_file, tmp_path, "many", batching="clustered", clusters=10_000)
    assert _jasper("teach", str(path)).returncode == 0
    refused = _jasper("train", str(path))
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 2 and "clusters 10000 is more than the" in said and "Traceback" not in said


@pytest.mark.e2e
def test_keep_best_ends_the_stage_on_the_best_mean_over_its_heads(tiny_bert, corpus_file, tmp_path):
    path = _config(tiny_bert, corpus_file, tmp_path, "best", eval_every=1, keep_best=True, lr=0.05)
    assert _jasper("teach", str(path)).returncode == 0
    result = _jasper("train", str(path))
    assert result.returncode == 0, result.stderr
    records = [r for r in _log(tmp_path, "best") if r.get("kind") == "eval" and r["stage"] == "s3"]
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4]  # the stage's start is a candidate too
    heads = ("sts-b-dev@12", "sts-b-dev@6", "sts-b-dev@3")  # s3 trains the encoder: every head's vectors move
    best = max(records, key=lambda r: np.mean([r[k] for k in heads]))
    said = " ".join(result.stderr.split())
    assert f"stage 's3' ends on its best dev weights: step {best['step']} of 4, for every head" in said
    assert f"mean {np.mean([best[k] for k in heads]):.2f}" in said
    from jasper.api import load_model  # the saved student is the best step's, scored again
    from jasper.train.watch import DevWatch

    model = load_model(tmp_path / "runs" / "best")
    config = build_config(yaml.safe_load(path.read_text()))
    again = DevWatch(config, model.student).score()
    assert all(again[k] == pytest.approx(best[k], abs=1e-6) for k in heads)
    refused = _jasper("train", str(path), "stages.0.eval_every=null")
    assert refused.returncode == 2 and "keep_best needs eval_every" in refused.stderr


def test_keep_best_counts_nan_as_the_worst_and_can_end_on_the_start(tiny_bert, corpus_file, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from jasper import cli
    from jasper.train.watch import DevWatch, selection_score

    assert selection_score({"sts-b-dev@8": float("nan"), "sts-b-dev@4": 90.0}, [8, 4]) == -np.inf
    assert selection_score({"sts-b-dev@8": 80.0}, [8, 4]) == -np.inf  # a head not scored is no candidate
    both = {"sts-b-dev@8": 80.0, "derived-dev:ndcg@10@8": 60.0}
    assert selection_score(both, [8], ["sts-b-dev", "derived-dev:ndcg@10"]) == 70.0  # the dev scores averaged
    path = _config(tiny_bert, corpus_file, tmp_path, "start", eval_every=1, keep_best=True)
    assert CliRunner().invoke(cli.app, ["teach", str(path)]).exit_code == 0
    real = DevWatch.score
    made = iter([80.0, float("nan"), 70.0, float("nan"), 79.0] * 3)  # per evaluation: the start is the best

    def scripted(self):
        scores = real(self)
        value = next(made)
        return {k: (value if k.startswith("sts-b-dev@") else v) for k, v in scores.items()}

    monkeypatch.setattr(DevWatch, "score", scripted)
    started = {}
    from jasper.train import loop

    original = loop.StageRunner._run_stage

    def remember(self, index, stage, resume):
        started[index] = {k: v.clone() for k, v in self.student.state_dict().items()}
        return original(self, index, stage, resume)

    monkeypatch.setattr(loop.StageRunner, "_run_stage", remember)
    result = CliRunner().invoke(cli.app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    assert "stage 's3' ends on its best dev weights: step 0 of 4" in " ".join(result.output.split())
    from jasper.models.student import load_student

    saved = load_student(tmp_path / "runs" / "start" / "student").state_dict()
    assert all(torch.equal(saved[k], started[2][k]) for k in saved)  # the weights the stage started from


@pytest.mark.e2e
def test_a_killed_keep_best_stage_resumes_to_the_same_end(tiny_bert, corpus_file, tmp_path):
    settings = {"eval_every": 1, "keep_best": True, "lr": 0.05, "checkpoint_every": 2}
    whole = _config(tiny_bert, corpus_file, tmp_path, "kb-whole", **settings)
    killed = _config(tiny_bert, corpus_file, tmp_path, "kb-killed", **settings)
    assert _jasper("teach", str(whole)).returncode == 0
    assert _jasper("train", str(whole)).returncode == 0
    assert _jasper("train", str(killed), env={"JASPER_KILL_AFTER_STEPS": "11"}).returncode != 0  # in s3
    assert _jasper("train", str(killed)).returncode == 0
    assert _log(tmp_path, "kb-whole") == _log(tmp_path, "kb-killed")
    for file in ("heads.safetensors", "backbone/model.safetensors"):
        a = load_file(str(tmp_path / "runs" / "kb-whole" / "student" / file))
        b = load_file(str(tmp_path / "runs" / "kb-killed" / "student" / file))
        assert all(torch.equal(a[k], b[k]) for k in a), file


def test_self_target_heads_train_alone(tiny_bert, corpus_file, tmp_path):
    """With short_head_target: self the encoder gets FC1's gradient only; the short heads still learn."""
    config = build_config(
        tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs", loss={"short_head_target": "self"})
    )
    texts = helpers.sentences(120)
    student = build_student(config.student)
    stage = config.stages[2]  # the whole encoder and every head
    params = apply_stage(student, stage)
    student.train(False)  # no dropout: both passes see the same forward
    store = _Targets(len(texts), 12)
    runner = StageRunner(config, student, texts, store)  # type: ignore[arg-type]
    rows = runner.batch_of(2, stage, 0)
    start = {k: v.clone() for k, v in student.state_dict().items()}
    grads = {}
    for name, losses in (("self", runner.stage_losses(stage)), ("fc1 only", {12: list(stage.fc1_losses)})):
        student.load_state_dict(start)
        optimizer = make_optimizer(params, stage)
        runner.train_step(student, rows, losses, optimizer, None)  # the gradients stay after the step
        grads[name] = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    encoder = [n for n in grads["fc1 only"] if n.startswith("backbone.")]
    assert encoder and all(torch.allclose(grads["self"][n], grads["fc1 only"][n], atol=1e-7) for n in encoder)
    assert all(f"heads.{d}.weight" in grads["self"] for d in (6, 3))  # the short heads do get a gradient


class _Targets:
    """Fixed random unit targets standing in for a teacher store."""

    def __init__(self, rows: int, dim: int) -> None:
        self.array = torch.nn.functional.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(0)))
        self.dim = dim

    def vectors(self, rows: np.ndarray) -> torch.Tensor:
        return self.array[torch.from_numpy(np.asarray(rows))]


def test_token_batches_hold_a_budget_of_padded_tokens():
    lengths = np.random.default_rng(6).integers(4, 200, 600)
    order = np.argsort(lengths, kind="stable")
    batches = token_batches(order, lengths, batch_size=32, max_tokens=1024, multiple=2)
    assert all(2 <= len(b) <= 32 and len(b) % 2 == 0 for b in batches)
    assert all(len(b) * lengths[b].max() <= 1024 for b in batches if len(b) > 2)  # the budget, but for a pair
    sizes = [len(b) for b in batches]
    assert max(sizes) == 32 and min(sizes) < 10  # short texts fill the rows, long ones the tokens
    used = np.concatenate(batches)
    assert len(set(used.tolist())) == len(used) and len(order) - len(used) < 2  # each row once, one may wait

    def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    again = epoch_token_batches(600, 1, 2, 32, 0, lengths, 4, 1024)
    assert same(again, epoch_token_batches(600, 1, 2, 32, 0, lengths, 4, 1024))
    assert not same(again, epoch_token_batches(600, 1, 3, 32, 0, lengths, 4, 1024))  # each epoch its own shuffle


@pytest.mark.e2e
def test_a_killed_token_budget_run_resumes_onto_the_same_batches(tiny_bert, corpus_file, tmp_path):
    settings = {"max_batch_tokens": 48, "length_pool": 4, "checkpoint_every": 3}
    whole = _config(tiny_bert, corpus_file, tmp_path, "tok-whole", **settings)
    killed = _config(tiny_bert, corpus_file, tmp_path, "tok-killed", **settings)
    assert _jasper("teach", str(whole)).returncode == 0
    assert _jasper("train", str(whole)).returncode == 0
    assert _jasper("train", str(killed), env={"JASPER_KILL_AFTER_STEPS": "7"}).returncode != 0
    assert _jasper("train", str(killed)).returncode == 0
    log = [r for r in _log(tmp_path, "tok-whole") if r.get("kind") != "eval"]
    assert log == [r for r in _log(tmp_path, "tok-killed") if r.get("kind") != "eval"]
    assert {r["texts"] for r in log} != {8} and all(r["tokens"] > 0 for r in log)  # fewer rows where texts are long
