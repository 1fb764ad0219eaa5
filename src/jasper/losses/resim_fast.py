"""Exact relative-similarity loss in O(P log^2 P) time and O(P) memory, with a custom backward.

The loss is `(1 / C) * sum_a sum_{b: t_b < t_a} relu(s_b - s_a + margin)` over the P in-batch pairs,
C = P (P - 1) / 2. For each pair a we need, over the pairs b ranked below it by the teacher, how many
have `s_b > s_a - margin` and the sum of their `s_b`; for the gradient, symmetrically, how many pairs
ranked above b have `s_a < s_b + margin`. Both are 2-D dominance counts, computed by a vectorised
divide and conquer over the pairs sorted by teacher similarity: at each of the log2(P) levels every
block's left half is sorted and the right half searched in it (and vice versa), all blocks at once.

Teacher ties: pairs are sorted by (teacher group ascending, student similarity descending). Two pairs
of one tie group must not be compared; with margin > 0 and that order, an earlier member b of a's group
always satisfies `s_b >= s_a > s_a - margin` (and a later one `s_a <= s_b < s_b + margin`), so the
divide and conquer counted every such pair, and they are subtracted exactly with per-group prefix sums.
"""

from __future__ import annotations

from typing import Any

import torch


def teacher_groups(teacher_pairs: torch.Tensor) -> torch.Tensor:
    """Dense rank of each teacher pair similarity (equal values share a rank). (P,) -> (P,) long"""
    return torch.unique(teacher_pairs.detach(), sorted=True, return_inverse=True)[1]


def _pad_pow2(values: torch.Tensor, fill: float) -> tuple[torch.Tensor, int]:
    n = values.numel()
    levels = max(1, (n - 1).bit_length())
    padded = values.new_full((1 << levels,), fill)
    padded[:n] = values
    return padded, levels


def _dominance(x: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For x in teacher order: per position, (#earlier with x_b > x_a - m, their sum, #later with x_c < x_a + m)."""
    n = x.numel()
    pad = float(x.abs().max()) + abs(margin) + 1.0  # padding sits last and never counts for a real element
    padded, levels = _pad_pow2(x, pad)
    count_below = torch.zeros_like(padded, dtype=torch.long)
    sum_below = torch.zeros_like(padded)
    count_above = torch.zeros_like(padded, dtype=torch.long)
    for level in range(levels):
        half = 1 << level
        blocks = padded.view(-1, 2, half)
        left, right = blocks[:, 0], blocks[:, 1]
        left_sorted = left.sort(dim=1).values
        right_sorted = right.sort(dim=1).values
        prefix = torch.nn.functional.pad(left_sorted.cumsum(dim=1), (1, 0))  # (blocks, half + 1)
        at_most = torch.searchsorted(left_sorted, right - margin, right=True)  # left values <= threshold
        count_below.view(-1, 2, half)[:, 1] += half - at_most
        sum_below.view(-1, 2, half)[:, 1] += prefix[:, -1:] - prefix.gather(1, at_most)
        count_above.view(-1, 2, half)[:, 0] += torch.searchsorted(right_sorted, left + margin, right=False)
    return count_below[:n], sum_below[:n], count_above[:n]


def resim_value_and_grad(
    student_pairs: torch.Tensor, groups: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, d loss / d student_pairs) for pair similarities (P,) and teacher tie groups (P,)."""
    if margin <= 0:
        raise ValueError(f"the fast relative-similarity loss needs margin > 0, got {margin}")
    work_dtype = torch.promote_types(student_pairs.dtype, torch.float32)
    s = student_pairs.detach().to(work_dtype)
    n = s.numel()
    comparisons = n * (n - 1) / 2
    by_student = torch.argsort(s, descending=True, stable=True)
    order = by_student[torch.argsort(groups[by_student], stable=True)]  # group asc, student sim desc
    x, g = s[order], groups[order]
    sizes = torch.bincount(g)
    starts = sizes.cumsum(0) - sizes
    rank = torch.arange(n, device=s.device) - starts[g]  # earlier members of the same tie group
    exclusive = x.cumsum(0) - x
    earlier_sum = exclusive - exclusive[starts[g]]
    count_below, sum_below, count_above = _dominance(x, margin)
    count_below = count_below - rank
    sum_below = sum_below - earlier_sum
    count_above = count_above - (sizes[g] - 1 - rank)
    loss = (sum_below - count_below.to(work_dtype) * (x - margin)).sum() / comparisons
    grad_sorted = (count_above - count_below).to(work_dtype) / comparisons
    grad = torch.empty_like(grad_sorted)
    grad[order] = grad_sorted
    return loss, grad


class _ResimFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, student_pairs: torch.Tensor, groups: torch.Tensor, margin: float) -> torch.Tensor:
        loss, grad = resim_value_and_grad(student_pairs, groups, margin)
        ctx.save_for_backward(grad)
        return loss.to(student_pairs.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (grad,) = ctx.saved_tensors
        return (grad_output * grad).to(grad_output.dtype), None, None


def resim_from_pairs(student_pairs: torch.Tensor, groups: torch.Tensor, margin: float) -> torch.Tensor:
    """The loss from student pair similarities (P,) and precomputed teacher tie groups (P,)."""
    if student_pairs.numel() < 2:
        return student_pairs.sum() * 0.0
    return _ResimFunction.apply(student_pairs, groups, margin)
