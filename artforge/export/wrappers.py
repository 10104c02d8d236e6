"""Torch modules that put each model kind behind the artifact contract.

The runtime never holds per-model Python code, so everything between plain
uint8 NHWC RGB pixels and the network (dtype casts, layout change,
normalisation, denormalisation, rounding, clamping) is part of the exported
graph. These wrappers are also the PyTorch reference the exported graph is
verified against, so they must be exactly what gets exported.
"""

from __future__ import annotations

import copy

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


class _SharedStatsNorm(nn.Module):
    """An instance-norm layer of the tile graph: normalises with the statistics it is given (the whole
    image's) or, where `own` is 1, with the tile's own; and reports the moments of its input over a box.

    The moments are taken about the given mean, so the runtime can add them up over tiles without
    losing precision (given a close mean) and turn them into the whole image's mean and variance.
    """

    def __init__(self, norm: nn.InstanceNorm2d, offset: int):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps
        self.offset, self.channels = offset, norm.num_features
        self.stride = 1  # this layer's input is the image downsampled by this much (set at wrapping)
        # The current call's norm_stats, norm_own, norm_region (set by the wrapper) and this layer's moments.
        self.given: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.moments: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.given is not None, "a tile-graph layer runs only inside StylizerTileWrapper"
        norm_stats, norm_own, region = self.given
        stats = norm_stats[:, :, self.offset:self.offset + self.channels, None, None]
        own = norm_own[:, :, None, None]
        own_mean = x.mean(dim=(2, 3), keepdim=True)
        own_var = (x - own_mean).square().mean(dim=(2, 3), keepdim=True)
        mean = own * own_mean + (1.0 - own) * stats[:, 0]
        var = own * own_var + (1.0 - own) * stats[:, 1]
        centred = x - mean
        out = centred * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        # region: [N,4] y0, y1, x0, x1 in image pixels
        rows = torch.arange(x.shape[2], device=x.device)[None, :] * self.stride
        cols = torch.arange(x.shape[3], device=x.device)[None, :] * self.stride
        row_in = ((rows >= region[:, 0:1]) & (rows < region[:, 1:2])).to(x.dtype)  # [N,h]
        col_in = ((cols >= region[:, 2:3]) & (cols < region[:, 3:4])).to(x.dtype)  # [N,w]
        mask = row_in[:, None, :, None] * col_in[:, None, None, :]
        count = (row_in.sum(dim=1) * col_in.sum(dim=1))[:, None].expand(-1, self.channels)
        # About the given mean, not the one used: with norm_own the runtime does not know the tile's own
        # mean, and a stats pass given a zero mean gets plain sums.
        given = (x - stats[:, 0]) * mask
        first = given.sum(dim=(2, 3))
        second = (given * given).sum(dim=(2, 3))
        self.moments = torch.stack((count, first, second), dim=1)
        return out


def instance_norms(net: nn.Module) -> list[nn.InstanceNorm2d]:
    """The network's instance-norm layers in execution order (module order: the style nets are sequential)."""
    return [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]


class StylizerTileWrapper(ContractWrapper):
    """The stylizer's tile graph (contract.TILE_IO): `image` uint8 [N,H,W,3], `norm_stats` float32 [N,2,C]
    (mean, variance of every instance-norm layer's C_i channels, concatenated in layer order), `norm_own`
    float32 [N,1] (1: use the tile's own statistics instead) and `norm_region` int64 [N,4] (the box y0, y1,
    x0, x1 whose moments are reported) -> `stylized` uint8 [N,H,W,3] and `norm_moments` float32 [N,3,C]
    (pixel count, sum and sum of squares of each layer's input inside the box, about the given mean)."""

    kind = contract.STYLIZER

    def __init__(self, net: nn.Module, size_multiple: int):
        net = copy.deepcopy(net).eval()
        super().__init__(net)
        self.size_multiple = int(size_multiple)
        self.layers: list[_SharedStatsNorm] = []
        offset = 0
        for parent in list(net.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, nn.InstanceNorm2d):
                    layer = _SharedStatsNorm(child, offset)
                    setattr(parent, child_name, layer)
                    self.layers.append(layer)
                    offset += child.num_features
        self.channels = offset
        self._set_strides()

    def _set_strides(self) -> None:
        """Each layer's downsampling, read from one small run (the tile graph needs it as a constant)."""
        side = 16 * self.size_multiple
        sizes: list[int] = []
        hooks = [layer.register_forward_pre_hook(lambda _m, args: sizes.append(int(args[0].shape[2])))
                 for layer in self.layers]
        try:
            with torch.inference_mode():
                self.forward(torch.zeros((1, side, side, 3), dtype=torch.uint8),
                             torch.zeros((1, 2, self.channels)), torch.ones((1, 1)),
                             torch.tensor([[0, side, 0, side]]))
        finally:
            for hook in hooks:
                hook.remove()
        for layer, size in zip(self.layers, sizes, strict=True):
            layer.stride = side // size

    @property
    def input_names(self) -> tuple[str, ...]:
        return contract.TILE_IO[0]

    @property
    def output_names(self) -> tuple[str, ...]:
        return contract.TILE_IO[1]

    def forward(self, image: torch.Tensor, norm_stats: torch.Tensor, norm_own: torch.Tensor,
                norm_region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in self.layers:
            layer.given, layer.moments = (norm_stats, norm_own, norm_region), None
        try:
            stylized = _to_uint8_nhwc(self.net(_from_uint8_nhwc(image)))
            moments = torch.cat([layer.moments for layer in self.layers if layer.moments is not None], dim=2)
        finally:
            for layer in self.layers:
                layer.given, layer.moments = None, None
        return stylized, moments


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
