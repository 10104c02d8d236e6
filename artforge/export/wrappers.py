"""Torch modules that put each model kind behind the artifact contract.

The runtime never holds per-model Python code, so everything between plain
uint8 NHWC RGB pixels and the network (dtype casts, layout change,
normalisation, denormalisation, rounding, clamping) is part of the exported
graph. These wrappers are also the PyTorch reference the exported graph is
verified against, so they must be exactly what gets exported.
"""

from __future__ import annotations

import torch
from torch import nn

from artforge import contract


def _to_uint8_nhwc(x: torch.Tensor) -> torch.Tensor:
    # Round before the cast: a float->uint8 cast truncates, which would bias
    # every pixel down by half a level and differ between backends.
    # torch.round and ONNX Round both round half to even.
    x = torch.clamp(torch.round(x), 0.0, 255.0)
    return x.to(torch.uint8).permute(0, 2, 3, 1)


def _from_uint8_nhwc(image: torch.Tensor) -> torch.Tensor:
    return image.to(torch.float32).permute(0, 3, 1, 2)


class ContractWrapper(nn.Module):
    """Base: a kind, its graph I/O names and the wrapped network."""

    kind: str = ""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval()

    @property
    def input_names(self) -> tuple[str, ...]:
        return contract.IO_NAMES[self.kind][0]

    @property
    def output_names(self) -> tuple[str, ...]:
        return contract.IO_NAMES[self.kind][1]


class ClassifierWrapper(ContractWrapper):
    """`image` uint8 [N,S,S,3] RGB -> `probabilities` float32 [N,K]."""

    kind = contract.CLASSIFIER

    def __init__(self, net: nn.Module, input_size: int):
        super().__init__(net)
        self.input_size = int(input_size)
        # Models with their own preprocessing (EfficientNetLite0.normalize)
        # define it; anything else is taken to expect 0..255 input.
        self._normalize = getattr(net, "normalize", None)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = _from_uint8_nhwc(image)
        if self._normalize is not None:
            x = self._normalize(x)
        return torch.softmax(self.net(x), dim=1)


class GeneratorWrapper(ContractWrapper):
    """`latent` float32 [N,Z] -> `image` uint8 [N,H,W,3] (the network emits tanh, [-1, 1])."""

    kind = contract.GENERATOR

    def __init__(self, net: nn.Module, latent_size: int):
        super().__init__(net)
        self.latent_size = int(latent_size)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return _to_uint8_nhwc((self.net(latent) + 1.0) * 127.5)


class StylizerWrapper(ContractWrapper):
    """`image` uint8 [N,H,W,3] -> `stylized` uint8 [N,H,W,3]; H, W multiples of `size_multiple`."""

    kind = contract.STYLIZER

    def __init__(self, net: nn.Module, size_multiple: int):
        super().__init__(net)
        self.size_multiple = int(size_multiple)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return _to_uint8_nhwc(self.net(_from_uint8_nhwc(image)))


def wrap(kind: str, net: nn.Module, *, input_size: int | None = None, latent_size: int | None = None,
         size_multiple: int | None = None) -> ContractWrapper:
    """Put `net` behind the contract for `kind`; sizes come from the training artifact."""
    if kind == contract.CLASSIFIER:
        if not input_size:
            raise ValueError("a classifier needs its input size to be exported")
        return ClassifierWrapper(net, input_size)
    if kind == contract.GENERATOR:
        if not latent_size:
            raise ValueError("a generator needs its latent size to be exported")
        return GeneratorWrapper(net, latent_size)
    if kind == contract.STYLIZER:
        return StylizerWrapper(net, size_multiple or 1)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(contract.KINDS)}")
