"""Every speed path of the training step gives what the plain path gives: tokenisation ahead of time,
length groups, length-bucketed batches, deferred host syncs, the fused optimizer, the frozen encoder's pooled
cache, torch.compile and the CUDA-graph objective."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from jasper.config import StudentConfig, build_config
from jasper.data.tokens import TokenCache
from jasper.errors import JasperError
from jasper.losses import DistillObjective
from jasper.models.student import build_student
from jasper.teach import teach
from jasper.train.guard import TrainingDiverged
from jasper.train.loop import StageRunner
from jasper.train.run import train
from jasper.train.schedule import epoch_order, make_optimizer
from jasper.train.stages import apply_stage

import helpers
from conftest import tiny_config_dict

TESTS = Path(__file__).parent
TEXTS = [" ".join(helpers.WORDS[: 2 + (i * 7) % 30]) for i in range(24)]  # 2 to 31 words
LOSSES = {8: ["cosine", "similarity", "resim"], 4: ["similarity", "resim"]}


def _jasper(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "jasper", *args], capture_output=True, text=True, env=full_env, timeout=600
    )


def _student(model: Path, **extra: object):
    torch.manual_seed(0)
    return build_student(StudentConfig(model=str(model), heads=[8, 4], max_length=32, **extra)).eval()


def _loss_and_grads(student, heads: dict[int, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    teacher = torch.nn.functional.normalize(torch.randn(len(TEXTS), 8, generator=torch.Generator().manual_seed(0)))
    loss = DistillObjective()(heads, teacher, LOSSES)["loss"]
    student.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in student.parameters() if p.grad is not None]


def _plain(student) -> dict[int, torch.Tensor]:
    """The reference: the tokenizer's own padded batch at the training cut, one encoder call."""
    return student.project(student.pooled(student.tokenize(TEXTS, student.max_length)), [8, 4])


def _assert_same(found, expected, rtol=1e-4, atol=1e-6):
    (loss, grads), (want_loss, want_grads) = found, expected
    torch.testing.assert_close(loss, want_loss, rtol=rtol, atol=atol)
    assert len(grads) == len(want_grads) > 4
    for got, want in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("family", ["tiny_bert", "tiny_qwen2"])
def test_collate_of_cached_ids_is_the_tokenizer_batch(family, request):
    student = _student(request.getfixturevalue(family))
    cache = TokenCache.build(student.token_ids, TEXTS)
    rows = np.array([5, 0, 17, 3])
    batch = student.collate(cache.rows(rows))
    expected = student.tokenize([TEXTS[i] for i in rows], student.max_length)  # training reads at its cut
    assert batch.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(batch[key], value), key
    assert cache.lengths.tolist() == [len(ids) for ids in student.token_ids(TEXTS)]


@pytest.mark.parametrize("groups", [1, 3])
def test_cached_ids_and_length_groups_give_the_plain_gradients(tiny_bert, groups):
    student = _student(tiny_bert, length_groups=groups)
    expected = _loss_and_grads(student, _plain(student))
    ids = TokenCache.build(student.token_ids, TEXTS).rows(np.arange(len(TEXTS)))
    _assert_same(_loss_and_grads(student, student(None, [8, 4], ids=ids)), expected)


def test_compiled_encoder_gives_the_plain_gradients(tiny_bert):
    student = _student(tiny_bert, length_groups=3)
    expected = _loss_and_grads(student, _plain(student))
    names = [name for name, _ in student.named_parameters()]
    student.backbone.compile()
    ids = TokenCache.build(student.token_ids, TEXTS).rows(np.arange(len(TEXTS)))
    _assert_same(_loss_and_grads(student, student(None, [8, 4], ids=ids)), expected, rtol=1e-4, atol=1e-5)
    assert [name for name, _ in student.named_parameters()] == names  # checkpoints keep their keys


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graphed_objective_gives_the_eager_parts_and_gradients():
    from jasper.losses.cuda_graph import graph_objective_parts

    torch.manual_seed(0)
    heads = {8: torch.randn(16, 8, device="cuda", requires_grad=True), 4: torch.randn(16, 4, device="cuda")}
    heads[4].requires_grad_(True)
    teacher = torch.nn.functional.normalize(torch.randn(16, 8, device="cuda"))
    graphed = graph_objective_parts(DistillObjective(), {8: (16, 8), 4: (16, 4)}, (16, 8), LOSSES)  # capture first
    found = graphed(heads, teacher)
    found["loss"].backward()
    found_grads = [heads[d].grad.clone() for d in (8, 4)]
    for head in heads.values():
        head.grad = None
    eager = DistillObjective()(heads, teacher, LOSSES)
    eager["loss"].backward()
    assert found.keys() == eager.keys()
    for name in eager:
        torch.testing.assert_close(found[name], eager[name], rtol=1e-5, atol=1e-6)
    for got, d in zip(found_grads, (8, 4), strict=True):
        torch.testing.assert_close(got, heads[d].grad, rtol=1e-5, atol=1e-7)


def test_fused_adamw_step_skipped_on_the_device_when_told():
    weights = [torch.nn.Parameter(torch.ones(3))]
    stage = build_config(_minimal()).stages[0]
    optimizer = make_optimizer(weights, stage)
    weights[0].grad = torch.full((3,), float("nan"))
    optimizer.found_inf = torch.ones(())  # what the deferred check sets for a bad step
    optimizer.step()
    assert torch.equal(weights[0].data, torch.ones(3))


def _minimal() -> dict:
    return tiny_config_dict(Path("m"), Path("c.txt"), Path("runs"))


@pytest.mark.parametrize("pool", [1, 4])
def test_epoch_order_is_seeded_and_covers_every_row_once(pool):
    lengths = np.random.default_rng(1).integers(1, 60, size=203)
    order = epoch_order(203, 1, 2, 16, seed=7, lengths=lengths, pool=pool)
    assert sorted(order.tolist()) == list(range(203))
    assert np.array_equal(order, epoch_order(203, 1, 2, 16, seed=7, lengths=lengths, pool=pool))
    assert not np.array_equal(order, epoch_order(203, 1, 3, 16, seed=7, lengths=lengths, pool=pool))
    if pool == 1:  # unchanged from the batches of earlier versions: old runs resume onto the same batches
        assert np.array_equal(order, np.random.default_rng([7, 1, 2]).permutation(203))
        return
    spread = np.ptp(lengths[order[:192]].reshape(12, 16), axis=1)  # 12 full batches
    plain = np.ptp(lengths[epoch_order(203, 1, 2, 16, seed=7)[:192]].reshape(12, 16), axis=1)
    assert spread.mean() < plain.mean() / 2  # bucketed batches hold texts of similar length


def _run(tmp_path: Path, tiny_bert: Path, corpus_file: Path, name: str, **stage_extra: object) -> Path:
    data = tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs", name=name)
    data["store"]["dir"] = str(tmp_path / "teachers")
    for stage in data["stages"]:
        stage.update(stage_extra)
    config = build_config(data)
    teach(config)
    train(config)
    return config.run_dir


def test_deferred_logging_trains_the_same_weights_and_log(tiny_bert, corpus_file, tmp_path):
    every_step = _run(tmp_path, tiny_bert, corpus_file, "every-step")
    deferred = _run(tmp_path, tiny_bert, corpus_file, "deferred", log_every=3)
    for file in ("heads.safetensors", "backbone/model.safetensors"):
        a, b = load_file(str(every_step / "student" / file)), load_file(str(deferred / "student" / file))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file

    def log(run: Path) -> list[dict]:
        rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k not in ("seconds", "time")} for r in rows]

    assert log(every_step) == log(deferred) and len(log(deferred)) == 12


class NanTeacher:
    """A store whose rows are fine except at one call (a non-finite loss at that step)."""

    def __init__(self, rows: int, dim: int, bad_call: int) -> None:
        self.array = torch.nn.functional.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(0)))
        self.dim, self.calls, self.bad_call = dim, 0, bad_call

    def vectors(self, rows: np.ndarray) -> torch.Tensor:
        self.calls += 1
        out = self.array[torch.from_numpy(np.asarray(rows))]
        return out * float("nan") if self.calls == self.bad_call else out


def test_deferred_check_skips_the_bad_update_and_stops_at_the_read(tiny_bert, corpus_file, tmp_path):
    config = build_config(tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs"))
    texts = helpers.sentences(120)
    student = build_student(config.student)
    runner = StageRunner(config, student, texts, NanTeacher(len(texts), 12, bad_call=2))  # type: ignore[arg-type]
    stage = config.stages[2]
    optimizer = make_optimizer(apply_stage(student, stage), stage)
    losses = runner.stage_losses(stage)
    runner.train_step(student, runner.batch_of(2, stage, 0), losses, optimizer, None, deferred=True)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    parts = runner.train_step(student, runner.batch_of(2, stage, 1), losses, optimizer, None, deferred=True)
    after = student.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the update was skipped, with no host sync
    assert int(parts["_diverged"]) == 1
    runner.position = (2, 2)
    record = {"stage_index": 2, "stage": stage.name, "step": 2}
    with pytest.raises(TrainingDiverged, match=r"stage 3 's3', step 2: the loss \(.*\) is not finite"):
        runner._flush([(record, parts)], bar=None)


@pytest.mark.e2e
def test_a_killed_length_pool_run_resumes_onto_the_same_batches(tiny_bert, corpus_file, tmp_path):
    def config(name: str) -> Path:
        data = tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs", name=name)
        data["store"]["dir"] = str(tmp_path / "teachers")
        for stage in data["stages"]:
            stage.update(length_pool=3, log_every=2)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def log(name: str) -> list[dict]:
        rows = (tmp_path / "runs" / name / "train_log.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(row).items() if k not in ("seconds", "time")} for row in rows]

    assert _jasper("teach", str(config("whole"))).returncode == 0  # one store for both runs
    assert _jasper("train", str(config("whole"))).returncode == 0
    killed = _jasper("train", str(config("killed")), env={"JASPER_KILL_AFTER_STEPS": "7"})
    assert killed.returncode != 0
    assert _jasper("train", str(config("killed"))).returncode == 0
    assert log("whole") == log("killed") and len(log("whole")) == 12
    for file in ("heads.safetensors", "backbone/model.safetensors"):
        a = load_file(str(tmp_path / "runs" / "whole" / "student" / file))
        b = load_file(str(tmp_path / "runs" / "killed" / "student" / file))
        assert all(torch.equal(a[k], b[k]) for k in a), file


def test_pooled_cache_of_a_frozen_encoder_gives_the_plain_step(tiny_bert, corpus_file, tmp_path):
    config = build_config(tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs"))
    texts = helpers.sentences(120)
    student = build_student(config.student)
    runner = StageRunner(config, student, texts, NanTeacher(len(texts), 12, bad_call=-1))  # type: ignore[arg-type]
    stage = config.stages[0]  # heads only: the encoder is frozen, its pooled outputs can be computed once
    params = apply_stage(student, stage)
    student.train(False)
    start = {k: v.clone() for k, v in student.state_dict().items()}
    cache = runner._pooled_cache(stage, steps_left=10**6)
    assert cache is not None
    results = []
    for pooled in (None, cache):
        student.load_state_dict(start)
        optimizer = make_optimizer(params, stage)
        rows = runner.batch_of(0, stage, 0)
        parts = runner.train_step(student, rows, runner.stage_losses(stage), optimizer, pooled)
        results.append((parts["loss"], [p.grad.clone() for p in params]))
    (loss, grads), (cached_loss, cached_grads) = results
    torch.testing.assert_close(cached_loss, loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(cached_grads, grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_cuda_graphs_are_refused_without_cuda(tiny_bert, corpus_file, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    data = tiny_config_dict(tiny_bert, corpus_file, tmp_path / "runs", cuda_graphs=True)
    config = build_config(data)
    teach(config)
    with pytest.raises(JasperError, match="cuda_graphs: true needs one CUDA device and one process"):
        train(config)
