"""float32 teacher inference on x86 CPUs: every `Linear` runs as a oneDNN matmul on weights packed once,
and the feed-forward layer's exact GELU runs inside the matmul instead of as a separate pass.

The arithmetic stays float32 (the fused GELU is the same erf GELU). On the quickstart's 2-core machine the
matmuls are the bound; the separate GELU pass was about a tenth of the time. The encoder is changed in
place, so this is only for a teacher's own copy of the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PACK_ROWS_HINT = 1024  # tokens per matmul the packing is tuned for (a batch of ~32 sentences)


class PackedLinear(nn.Module):
    """A float32 `Linear` (optionally followed by exact GELU) as one oneDNN call on prepacked weights."""

    def __init__(self, linear: nn.Linear, gelu: bool = False) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS_HINT)
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.post = "gelu" if gelu else "none"
        self.algorithm = "none" if gelu else ""  # oneDNN's name for the erf (exact) GELU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same result as `Linear` (then GELU), float32."""
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, self.post, [], self.algorithm)


def _exact_gelu(module: object) -> bool:
    """transformers' `GELUActivation` around `F.gelu` (erf), which oneDNN's fused GELU reproduces."""
    return type(module).__name__ == "GELUActivation" and getattr(module, "act", None) is F.gelu


def available() -> bool:
    """Whether this torch build has the oneDNN ops."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


Undo = list[tuple[nn.Module, str, nn.Module]]


def fuse_linears(encoder: nn.Module) -> Undo:
    """Swap the float32 `Linear`s of `encoder` for packed ones, fusing `dense` + exact GELU pairs
    (BERT-style intermediate layers). Returns what `unfuse` needs to put the originals back."""
    undo: Undo = []
    for module in list(encoder.modules()):
        dense = getattr(module, "dense", None)
        act = getattr(module, "intermediate_act_fn", None)
        if isinstance(dense, nn.Linear) and isinstance(act, nn.Module) and _exact_gelu(act):
            undo += [(module, "dense", dense), (module, "intermediate_act_fn", act)]
            module.dense = PackedLinear(dense, gelu=True)
            module.intermediate_act_fn = nn.Identity()
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear and child.weight.dtype == torch.float32:
                undo.append((module, name, child))
                setattr(module, name, PackedLinear(child))
    return undo


def unfuse(undo: Undo) -> None:
    """Put back the modules that `fuse_linears` replaced."""
    for parent, name, original in reversed(undo):
        setattr(parent, name, original)
