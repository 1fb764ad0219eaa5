"""What trains in a stage: freeze everything, then unfreeze the heads and encoder layers it names."""

from __future__ import annotations

from torch import nn

from jasper.config import StageConfig
from jasper.errors import JasperError
from jasper.models.backbone import layer_list
from jasper.models.student import Student


def _trailing_parameters(backbone: nn.Module, layer_path: str) -> list[nn.Parameter]:
    """Parameters after the layer stack (e.g. Qwen2's final norm): neither embeddings nor layers."""
    return [
        p for name, p in backbone.named_parameters() if not name.startswith(layer_path + ".") and "embed" not in name
    ]


def head_modules(student: Student, dims: list[int]) -> list[nn.Module]:
    """The Linear layers behind `dims` (FC1 for every dim in prefix mode)."""
    names = {str(d) if str(d) in student.heads else str(student.head_dims[0]) for d in dims}
    return [student.heads[n] for n in sorted(names)]


def apply_stage(student: Student, stage: StageConfig) -> list[nn.Parameter]:
    """Set requires_grad for `stage`; return the parameters that train (an error if none)."""
    student.requires_grad_(False)
    active = stage.active_heads(student.head_dims)
    for module in head_modules(student, active if stage.train_heads is None else stage.train_heads):
        module.requires_grad_(True)
    if stage.train == "all":
        student.backbone.requires_grad_(True)
    elif stage.train == "last_layers":
        path, layers = layer_list(student.backbone)
        if stage.last_layers > len(layers):
            raise JasperError(
                f"stage '{stage.name}' trains the last {stage.last_layers} layers, the student has {len(layers)}"
            )
        for layer in layers[len(layers) - stage.last_layers :]:
            layer.requires_grad_(True)
        for param in _trailing_parameters(student.backbone, path):
            param.requires_grad_(True)
    trainable = [p for p in student.parameters() if p.requires_grad]
    if not trainable:
        raise JasperError(f"stage '{stage.name}' has nothing to train")
    return trainable


def encoder_trains(student: Student) -> bool:
    """Whether any backbone parameter trains (dropout only matters then)."""
    return any(p.requires_grad for p in student.backbone.parameters())
