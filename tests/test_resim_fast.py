"""The fast relative-similarity loss equals the P x P reference: value and gradient, ties included."""

from __future__ import annotations

import pytest
import torch

from jasper.losses import DistillObjective
from jasper.losses.resim import resim_loss, resim_loss_reference, teacher_pair_similarities
from jasper.losses.resim_fast import resim_value_and_grad, teacher_groups

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _check(student: torch.Tensor, teacher: torch.Tensor, margin: float, device: str = "cpu") -> None:
    student, teacher = student.to(device), teacher.to(device)
    fast_in = student.clone().requires_grad_(True)
    ref_in = student.clone().requires_grad_(True)
    fast = resim_loss(fast_in, teacher, margin)
    ref = resim_loss_reference(ref_in, teacher, margin)
    fast.backward()
    ref.backward()
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast_in.grad, ref_in.grad, rtol=1e-9, atol=1e-12)


@pytest.fixture(params=["auto", "sort"])
def path(request, monkeypatch):
    """'sort' forces the O(P log^2 P) path even where the fused CUDA kernel would be chosen."""
    if request.param == "sort":
        from jasper.losses import resim_fast

        monkeypatch.setattr(resim_fast, "CUDA_DENSE_MAX_PAIRS", 0)
    return request.param


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [2, 3, 4, 7, 16, 33, 64])
@pytest.mark.parametrize("margin", [0.015, 0.3])
def test_parity_random(batch, margin, device, path):
    generator = torch.Generator().manual_seed(batch)
    student = torch.randn(batch, 9, dtype=torch.float64, generator=generator)
    teacher = torch.randn(batch, 5, dtype=torch.float64, generator=generator)
    _check(student, teacher, margin, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [3, 8, 21, 64])
def test_parity_tie_heavy(batch, device, path):
    generator = torch.Generator().manual_seed(100 + batch)
    # teacher rows drawn from 3 distinct vectors, each copy moved in its last bits (as a matmul kernel or
    # another CPU would): the 6 distinct teacher pair similarities must stay 6 tie groups on any machine
    basis = torch.randn(3, 4, dtype=torch.float64, generator=generator)
    teacher = basis[torch.randint(0, 3, (batch,), generator=generator)]
    teacher = teacher * (1 + 4e-16 * torch.randn(teacher.shape, dtype=torch.float64, generator=generator))
    student = torch.randn(batch, 6, dtype=torch.float64, generator=generator)
    assert teacher_groups(teacher_pair_similarities(teacher.to(device))).unique().numel() <= 6
    _check(student, teacher, 0.015, device)


def test_duplicate_teacher_rows_tie_to_the_last_bit():
    # 0.9999999999999997 and 1.0 are the same cosine: a tie, not an ordered pair
    row = torch.tensor([[0.3, -1.2, 2.5, 0.7]], dtype=torch.float64)
    teacher = torch.cat([row, row * (1 + 2.2e-16), row * (1 - 2.2e-16), -row])
    pairs = teacher_pair_similarities(teacher)  # (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    assert pairs[[0, 1, 3]].unique().tolist() == [1.0]
    assert pairs[[2, 4, 5]].unique().tolist() == [-1.0]
    assert teacher_groups(pairs).unique().numel() == 2


def test_teacher_groups_is_a_dense_rank():
    values = torch.tensor([0.3, 0.1, 0.3, 0.2, 0.1, 0.9])
    torch.testing.assert_close(teacher_groups(values), torch.tensor([2, 0, 2, 1, 0, 3]))
    torch.testing.assert_close(teacher_groups(values), torch.unique(values, return_inverse=True)[1])


def test_parity_student_ties_too():
    # duplicated student rows give equal student similarities as well
    generator = torch.Generator().manual_seed(7)
    rows = torch.randint(0, 4, (20,), generator=generator)
    student = torch.randn(4, 5, dtype=torch.float64, generator=generator)[rows]
    teacher = torch.randn(3, 5, dtype=torch.float64, generator=generator)[rows % 3]
    _check(student, teacher, 0.015)


def test_all_teacher_ties_give_zero():
    loss, grad = resim_value_and_grad(torch.rand(10, dtype=torch.float64), torch.zeros(10, dtype=torch.long), 0.1)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert grad.abs().sum().item() == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_autocast_accumulates_in_float32():
    generator = torch.Generator().manual_seed(11)
    student = torch.randn(48, 32, generator=generator).cuda().requires_grad_(True)
    weight = torch.randn(32, 32, generator=generator).cuda()
    teacher = torch.randn(48, 32, generator=generator).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        projected = student @ weight
        loss = resim_loss(projected, teacher)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(student.grad).all()
    reference = resim_loss_reference(projected.detach().float(), teacher)
    torch.testing.assert_close(loss.detach(), reference, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_objective_replays_as_cuda_graph():
    from jasper.losses.cuda_graph import graph_objective

    generator = torch.Generator().manual_seed(12)
    fc1 = torch.randn(64, 24, generator=generator).cuda().requires_grad_(True)
    short = torch.randn(64, 6, generator=generator).cuda().requires_grad_(True)
    teacher = torch.randn(64, 24, generator=generator).cuda()
    objective = DistillObjective()
    losses = {24: ["cosine", "similarity", "resim"], 6: ["similarity", "resim"]}
    graphed = graph_objective(objective, {24: (64, 24), 6: (64, 6)}, (64, 24), losses)  # capture first
    replay = graphed({24: fc1, 6: short}, teacher)
    replay_grads = torch.autograd.grad(replay, (fc1, short))
    eager = objective({24: fc1, 6: short}, teacher, losses)["loss"]
    eager_grads = torch.autograd.grad(eager, (fc1, short))
    torch.testing.assert_close(replay, eager)
    for got, expected in zip(replay_grads, eager_grads, strict=True):
        torch.testing.assert_close(got, expected)


def test_float32_and_bf16_inputs():
    generator = torch.Generator().manual_seed(3)
    student = torch.randn(32, 16, generator=generator)
    teacher = torch.randn(32, 16, generator=generator)
    torch.testing.assert_close(
        resim_loss(student, teacher), resim_loss_reference(student, teacher), rtol=1e-4, atol=1e-6
    )
    half = student.to(torch.bfloat16).requires_grad_(True)
    loss = resim_loss(half, teacher)
    loss.backward()
    assert loss.dtype == torch.float32 and half.grad is not None and half.grad.dtype == torch.bfloat16


def test_objective_shares_teacher_side_and_matches_reference():
    generator = torch.Generator().manual_seed(5)
    heads = {
        8: torch.randn(12, 8, dtype=torch.float64, generator=generator),
        3: torch.randn(12, 3, dtype=torch.float64, generator=generator),
    }
    teacher = torch.randn(12, 8, dtype=torch.float64, generator=generator)
    losses = {8: ["cosine", "similarity", "resim"], 3: ["similarity", "resim"]}
    fast = DistillObjective(resim_impl="fast")(heads, teacher, losses)
    ref = DistillObjective(resim_impl="reference")(heads, teacher, losses)
    for key in ref:
        torch.testing.assert_close(fast[key], ref[key])


def test_non_positive_margin_falls_back_to_reference():
    generator = torch.Generator().manual_seed(9)
    student = torch.randn(6, 4, dtype=torch.float64, generator=generator)
    teacher = torch.randn(6, 4, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(resim_loss(student, teacher, 0.0), resim_loss_reference(student, teacher, 0.0))
