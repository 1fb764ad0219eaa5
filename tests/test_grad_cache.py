"""Gradient caching and gradient checkpointing give the same gradients as one plain whole-batch backward."""

from __future__ import annotations

import pytest
import torch

from jasper.config import StudentConfig
from jasper.losses import DistillObjective
from jasper.models.student import build_student
from jasper.train.grad_cache import cached_step

import helpers

TEXTS = helpers.sentences(12)
LOSSES = {12: ["cosine", "similarity", "resim"], 6: ["similarity", "resim"]}


def _grads(student, texts, micro, teacher, cached=True):
    student.zero_grad(set_to_none=True)

    def loss_of_pooled(pooled):
        return DistillObjective()(student.project(pooled, [12, 6]), teacher, LOSSES)

    torch.manual_seed(123)
    if micro and cached:
        parts = cached_step(student, student.token_ids(texts), micro, loss_of_pooled)
    else:
        # one graph over the micro-batches in the same order: the dropout masks cached_step must replay
        chunks = [texts[i : i + micro] for i in range(0, len(texts), micro)] if micro else [texts]
        pooled = torch.cat([student.pooled(student.tokenize(chunk)) for chunk in chunks])
        parts = loss_of_pooled(pooled)
        parts["loss"].backward()
    grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    return parts["loss"].detach(), grads


@pytest.mark.parametrize("training", [False, True])
def test_cached_step_matches_whole_batch(tiny_bert, training):
    student = build_student(StudentConfig(model=str(tiny_bert), heads=[12, 6], max_length=16))
    student.train(training)  # train mode: dropout, whose masks the cached step must replay
    teacher = torch.randn(len(TEXTS), 12, generator=torch.Generator().manual_seed(0))
    loss, grads = _grads(student, TEXTS, 5, teacher, cached=False)
    cached_loss, cached_grads = _grads(student, TEXTS, 5, teacher)
    if not training:  # without dropout, micro-batching changes nothing at all
        plain_loss, _ = _grads(student, TEXTS, None, teacher)
        torch.testing.assert_close(plain_loss, loss)
    torch.testing.assert_close(cached_loss, loss)
    assert set(cached_grads) == set(grads) and any("encoder" in n for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(cached_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_gradient_checkpointing_matches_plain(tiny_bert):
    teacher = torch.randn(len(TEXTS), 12, generator=torch.Generator().manual_seed(1))
    plain = build_student(StudentConfig(model=str(tiny_bert), heads=[12, 6], max_length=16)).eval()
    checkpointed = build_student(
        StudentConfig(model=str(tiny_bert), heads=[12, 6], max_length=16, gradient_checkpointing=True)
    )
    checkpointed.load_state_dict(plain.state_dict())
    flag = "is_activation_checkpointing"
    flag = flag if hasattr(checkpointed.backbone, flag) else "is_gradient_checkpointing"
    assert getattr(checkpointed.backbone, flag) and not getattr(plain.backbone, flag)
    checkpointed.eval()
    _, expected = _grads(plain, TEXTS, None, teacher)
    _, found = _grads(checkpointed, TEXTS, None, teacher)
    for name, grad in expected.items():
        torch.testing.assert_close(found[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_fused_adamw_makes_the_plain_update():
    from jasper.config import StageConfig
    from jasper.train.schedule import make_optimizer

    torch.manual_seed(0)
    weights = [torch.randn(30, 20, requires_grad=True), torch.randn(20, requires_grad=True)]
    copies = [w.detach().clone().requires_grad_(True) for w in weights]
    stage = StageConfig(name="s", train="all", lr=1e-3, steps=3)
    fused, plain = make_optimizer(weights, stage), make_optimizer(copies, stage, fused=False)
    assert fused.defaults.get("fused") and not plain.defaults.get("fused")
    for _ in range(3):
        for group in (weights, copies):
            for w in group:
                w.grad = torch.sin(w.detach() * 3)
        fused.step()
        plain.step()
    for got, want in zip(weights, copies, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
