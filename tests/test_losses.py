"""Each loss against hand-computed values on tiny batches; gradients reach only the student."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from jasper.losses import DistillObjective, cosine_loss, resim_loss, similarity_loss
from jasper.losses.resim import pair_similarities, resim_loss_reference


def test_cosine_loss_hand_values():
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    teacher = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    # row 0: 1 - 1/sqrt(2); row 1: 1 - 1 = 0; mean over rows
    expected = (1 - 1 / math.sqrt(2)) / 2
    assert cosine_loss(student, teacher).item() == pytest.approx(expected, abs=1e-6)


def test_similarity_loss_hand_values():
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # S S^T = I
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # T T^T = all ones
    # entries differ by 1 off the diagonal: 2 of 4 entries -> mean 0.5
    assert similarity_loss(student, teacher).item() == pytest.approx(0.5, abs=1e-6)


def _resim_by_hand(s: list[float], t: list[float], margin: float) -> float:
    total = 0.0
    comparisons = 0
    for a, b in itertools.combinations(range(len(s)), 2):
        comparisons += 1
        for hi, lo in ((a, b), (b, a)):
            if t[hi] > t[lo]:
                total += max(0.0, s[lo] - s[hi] + margin)
    return total / comparisons


def test_resim_loss_hand_values_three_texts():
    # three texts in the plane; their pairs (0,1), (0,2), (1,2)
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    s = pair_similarities(student).tolist()
    t = pair_similarities(teacher).tolist()
    assert s == pytest.approx([0.0, 1 / math.sqrt(2), 1 / math.sqrt(2)], abs=1e-6)
    # teacher order: (0,1) > (1,2) > (0,2); student puts (0,1) lowest -> two violated comparisons
    expected = ((1 / math.sqrt(2) - 0 + 0.015) * 2 + max(0, 1 / math.sqrt(2) - 1 / math.sqrt(2) + 0.015)) / 3
    assert _resim_by_hand(s, t, 0.015) == pytest.approx(expected, abs=1e-6)
    assert resim_loss(student, teacher, 0.015).item() == pytest.approx(expected, abs=1e-6)


def test_resim_teacher_ties_do_not_count():
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    teacher = torch.ones(3, 2)  # every teacher similarity equal: nothing is "greater"
    assert resim_loss(student, teacher).item() == 0.0


def test_resim_random_batch_matches_brute_force():
    torch.manual_seed(0)
    student, teacher = torch.randn(7, 5), torch.randn(7, 5)
    s, t = pair_similarities(student).tolist(), pair_similarities(teacher).tolist()
    assert resim_loss_reference(student, teacher, 0.05).item() == pytest.approx(_resim_by_hand(s, t, 0.05), abs=1e-5)


def test_gradients_reach_only_the_student():
    torch.manual_seed(0)
    student = torch.randn(6, 12, requires_grad=True)
    teacher = torch.randn(6, 12, requires_grad=True)
    parts = DistillObjective()({12: student}, teacher, {12: ["cosine", "similarity", "resim"]})
    parts["loss"].backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_objective_weights_and_named_parts():
    torch.manual_seed(1)
    fc1, short = torch.randn(5, 8), torch.randn(5, 3)
    teacher = torch.randn(5, 8)
    objective = DistillObjective(cosine=1.0, similarity=2.0, resim=3.0, margin=0.01)
    parts = objective({8: fc1, 3: short}, teacher, {8: ["cosine", "similarity", "resim"], 3: ["similarity", "resim"]})
    assert set(parts) == {"loss", "cosine@8", "similarity@8", "resim@8", "similarity@3", "resim@3"}
    expected = (
        cosine_loss(fc1, teacher)
        + 2 * similarity_loss(fc1, teacher)
        + 3 * resim_loss(fc1, teacher, 0.01)
        + 2 * similarity_loss(short, teacher)
        + 3 * resim_loss(short, teacher, 0.01)
    )
    torch.testing.assert_close(parts["loss"], expected)


def test_cosine_loss_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="equal shapes"):
        cosine_loss(torch.randn(3, 4), torch.randn(3, 5))


def test_self_distillation_targets_the_student_fc1_detached():
    torch.manual_seed(2)
    fc1 = torch.randn(6, 8, requires_grad=True)
    short = torch.randn(6, 3, requires_grad=True)
    teacher = torch.randn(6, 8)
    losses = {8: ["cosine", "similarity", "resim"], 3: ["similarity", "resim"]}
    objective = DistillObjective()
    parts = objective({8: fc1, 3: short}, teacher, losses, targets={3: fc1.detach()})
    own = objective.head_parts(short, fc1.detach(), losses[3])
    torch.testing.assert_close(parts["similarity@3"], own["similarity"])
    torch.testing.assert_close(parts["resim@3"], own["resim"])
    assert not torch.allclose(parts["similarity@3"], objective.head_parts(short, teacher, losses[3])["similarity"])
    # FC1's gradient comes from its own losses only: the short head's target is a constant
    fc1_only = objective({8: fc1}, teacher, {8: losses[8]})["loss"]
    torch.testing.assert_close(
        torch.autograd.grad(parts["loss"], fc1, retain_graph=True)[0], torch.autograd.grad(fc1_only, fc1)[0]
    )
