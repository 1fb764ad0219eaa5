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

from dataclasses import dataclass
from typing import Any

import torch

# below this, x - margin can round back to x and the tie-group correction would no longer be exact
MIN_MARGIN = 1e-6
DENSE_BLOCK = 64  # the lowest levels are done densely inside blocks of this size (fewer, larger kernels)


def teacher_groups(teacher_pairs: torch.Tensor) -> torch.Tensor:
    """Dense rank of each teacher pair similarity (equal values share a rank). (P,) -> (P,) long"""
    t = teacher_pairs.detach()
    order = torch.argsort(t, stable=True)
    ordered = t[order]
    starts_group = torch.ones_like(ordered, dtype=torch.bool)
    starts_group[1:] = ordered[1:] != ordered[:-1]
    groups = torch.empty_like(order)
    groups[order] = starts_group.long().cumsum(0) - 1
    return groups


def _pad_pow2(values: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Pad with +inf (sorted last, never counted for a real element) to a power of two."""
    n = values.numel()
    levels = max(1, (n - 1).bit_length())
    padded = values.new_full((1 << levels,), float("inf"))
    padded[:n] = values
    return padded, levels


def _dense_blocks(blocks: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dominance counts inside each block, all pairs at once. (nb, k) -> three (nb, k)"""
    size = blocks.shape[1]
    earlier = torch.ones(size, size, dtype=torch.bool, device=blocks.device).triu(1)  # [i, j]: i before j
    values_i = blocks[:, :, None]
    values_j = blocks[:, None, :]
    below = (values_i > values_j - margin) & earlier  # b = i counts for a = j
    count_below = below.sum(dim=1)
    sum_below = torch.where(below, values_i, torch.zeros((), dtype=blocks.dtype, device=blocks.device)).sum(dim=1)
    above = (values_j < values_i + margin) & earlier  # a = j counts for b = i
    return count_below, sum_below, above.sum(dim=2)


def _dominance(x: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For x in teacher order, per position: (#earlier with x_b > x_a - m, their sum, #later with x_c < x_a + m)."""
    n = x.numel()
    padded, levels = _pad_pow2(x)
    base = min(DENSE_BLOCK, padded.numel())
    count_below, sum_below, count_above = (t.reshape(-1) for t in _dense_blocks(padded.view(-1, base), margin))
    for level in range(base.bit_length() - 1, levels):
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
    if margin < MIN_MARGIN:
        raise ValueError(f"the fast relative-similarity loss needs margin >= {MIN_MARGIN}, got {margin}")
    work_dtype = torch.promote_types(student_pairs.dtype, torch.float32)
    s = student_pairs.detach().to(work_dtype)
    n = s.numel()
    comparisons = n * (n - 1) / 2
    by_student = torch.argsort(s, descending=True, stable=True)
    order = by_student[torch.argsort(groups[by_student], stable=True)]  # group asc, student sim desc
    x, g = s[order], groups[order]
    sizes = torch.zeros(n, dtype=torch.long, device=s.device).index_add_(0, g, torch.ones_like(g))
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


# on CUDA, up to this many pairs (batch 256) one fused O(P^2) Triton kernel beats the sort-based path
CUDA_DENSE_MAX_PAIRS = 32_640


@dataclass
class TeacherSide:
    """The teacher's pair similarities of a batch, and their tie groups when the sort path needs them."""

    pairs: torch.Tensor  # (P,)
    groups: torch.Tensor | None = None  # (P,) dense rank of `pairs`


def use_cuda_kernel(pairs: torch.Tensor) -> bool:
    """Whether the fused Triton kernel handles pairs of this size and device."""
    from jasper.losses.resim_triton import triton_available

    return pairs.is_cuda and pairs.numel() <= CUDA_DENSE_MAX_PAIRS and triton_available()


def teacher_side(teacher_pairs: torch.Tensor) -> TeacherSide:
    """Precompute what every head's loss needs from the teacher (once per batch)."""
    pairs = teacher_pairs.detach()
    return TeacherSide(pairs, None if use_cuda_kernel(pairs) else teacher_groups(pairs))


class _ResimFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, student_pairs: torch.Tensor, side: TeacherSide, margin: float) -> torch.Tensor:
        if side.groups is None:
            from jasper.losses.resim_triton import resim_value_and_grad_triton

            loss, grad = resim_value_and_grad_triton(student_pairs, side.pairs, margin)
        else:
            loss, grad = resim_value_and_grad(student_pairs, side.groups, margin)
        ctx.save_for_backward(grad)
        return loss.to(torch.promote_types(student_pairs.dtype, torch.float32))

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (grad,) = ctx.saved_tensors
        return grad_output * grad, None, None


def resim_from_pairs(student_pairs: torch.Tensor, side: TeacherSide, margin: float) -> torch.Tensor:
    """The loss from student pair similarities (P,) and the precomputed teacher side."""
    if student_pairs.numel() < 2:
        return student_pairs.sum() * 0.0
    if side.groups is None and not use_cuda_kernel(student_pairs):
        side = TeacherSide(side.pairs, teacher_groups(side.pairs))
    return _ResimFunction.apply(student_pairs, side, margin)
