"""Feed-forward style network (Johnson et al.) with the later refinements:
reflection padding, instance normalisation, and nearest-neighbour upsampling
followed by a convolution instead of transposed convolutions (no checkerboard).

`width` scales every channel count, so slim variants (0.5, 0.25) exist.
Input and output are RGB float NCHW in [0, 255]; H and W must be multiples of
SIZE_MULTIPLE (two stride-2 downsamples).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SIZE_MULTIPLE = 4
# The 9x9 reflection padding needs more than 4 pixels; rounded up to the multiple.
MIN_SIZE = 8


class ConvLayer(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: int = 1):
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        return self.conv(self.pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.in1(self.conv1(x)))
        return x + self.in2(self.conv2(out))


class TransformerNet(nn.Module):
    def __init__(self, width: float = 1.0, residual_blocks: int = 5):
        super().__init__()
        c1, c2, c3 = (max(4, round(c * width)) for c in (32, 64, 128))
        self.width = width
        self.residual_blocks = residual_blocks
        self.encoder = nn.Sequential(
            ConvLayer(3, c1, 9), nn.InstanceNorm2d(c1, affine=True), nn.ReLU(),
            ConvLayer(c1, c2, 3, stride=2), nn.InstanceNorm2d(c2, affine=True), nn.ReLU(),
            ConvLayer(c2, c3, 3, stride=2), nn.InstanceNorm2d(c3, affine=True), nn.ReLU(),
        )
        self.residuals = nn.Sequential(*[ResidualBlock(c3) for _ in range(residual_blocks)])
        self.decoder = nn.Sequential(
            ConvLayer(c3, c2, 3, upsample=2), nn.InstanceNorm2d(c2, affine=True), nn.ReLU(),
            ConvLayer(c2, c1, 3, upsample=2), nn.InstanceNorm2d(c1, affine=True), nn.ReLU(),
            ConvLayer(c1, 3, 9),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.residuals(self.encoder(x)))
