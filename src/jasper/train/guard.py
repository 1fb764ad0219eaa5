"""The finite check before every update, and the step log read from the device in one sync per `log_every`."""

from __future__ import annotations

from typing import Any

import torch

from jasper.errors import JasperError
from jasper.train.log import TrainLog

Pending = list[tuple[dict[str, Any], dict[str, torch.Tensor]]]  # (log record, the step's loss parts on the device)
LOSS_NOT_FINITE, GRADIENT_NOT_FINITE = 1, 2


class TrainingDiverged(JasperError):
    """The loss or the gradient stopped being finite."""


def nonfinite_code(
    parts: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, check_gradient: bool = True
) -> torch.Tensor:
    """On the device, no host sync: 0 when the loss and the gradient are finite, 1 if the loss is not, 2 the
    gradient (`check_gradient=False` when an engine owns the gradients)."""
    loss_ok = torch.stack([torch.isfinite(value.detach()).all() for value in parts.values()]).all()
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    grad_ok = torch.isfinite(torch.nn.utils.get_total_norm(grads)) if grads and check_gradient else loss_ok
    return torch.where(loss_ok, torch.where(grad_ok, 0, GRADIENT_NOT_FINITE), LOSS_NOT_FINITE)


def diverged(code: int, parts: dict[str, torch.Tensor], where: str, kept: str, cause: str) -> TrainingDiverged:
    """The error for a step whose loss (code 1) or gradient (2) is not finite: where, what is kept, the likely cause."""
    bad = [name for name, value in parts.items() if name != "_diverged" and not torch.isfinite(value).all()]
    what = f"the loss ({', '.join(bad)})" if code == LOSS_NOT_FINITE else "the gradient"
    return TrainingDiverged(
        f"{where}: {what} is not finite (NaN or inf); training stopped before the update, {kept}. Likely cause: {cause}"
    )


def flush_steps(pending: Pending, log: TrainLog | None) -> tuple[float, tuple[dict[str, Any], int, dict] | None]:
    """Read the pending steps' loss parts in one host sync and append their records to `log` (None: not this
    rank's to write), up to the first step that diverged.

    Returns (the last loss read, (record, code, parts) of the first bad step or None). Empties `pending`.
    """
    names = [name for name in pending[0][1] if name != "_diverged"]
    values = torch.stack([torch.stack([p[n].float() for n in [*names, "_diverged"]]) for _, p in pending])
    bad = None
    for (record, parts), row in zip(pending, values.tolist(), strict=True):
        if row[-1]:
            bad = (record, int(row[-1]), parts)
            break
        if log is not None:
            log.write(record | dict(zip(names, row[:-1], strict=True)))
    pending.clear()
    return float(values[-1, names.index("loss")].item()), bad
