"""The settings of each trainer, as plain dataclasses: one default each.

No torch here: the command line (artforge/cli/train.py) builds its options
and their --help from these defaults without loading PyTorch, and the
trainers (classifier.py, dcgan.py, style.py) take the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClassifierConfig:
    """Settings of one fine-tuning run; the defaults suit ~1000 images on a 2-core CPU."""

    data: str
    out: str
    val: str | None = None
    size: int = 224
    epochs_frozen: int = 3
    epochs_unfrozen: int = 3
    batch_size: int = 32
    lr_head: float = 1e-3
    lr_finetune: float = 1e-4
    # "all" or the number of top MBConv blocks (of 16) to unfreeze in phase 2, with the head conv.
    # The top 3 work at 7x7, so a phase-2 step costs ~1.4x a frozen one on a CPU; "all" costs ~3x.
    unfreeze: str = "3"
    patience: int = 3
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    weights: str | None = None
    resume: bool = True
    # Stop (and export) after this many optimiser steps in total; a rerun with a larger
    # limit or none continues. Not part of the compared config for that reason.
    max_steps: int | None = None
    progress: bool = True


@dataclass
class DCGANConfig:
    data: str
    out: str
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    epochs: int = 25
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    flip: bool = True  # random horizontal flips (doubles the data for free)
    sample_count: int = 64  # images in the fixed-noise grid saved every epoch
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    max_steps: int | None = None  # stop early at this global step (a time budget); rerun to continue
    resume: bool = True
    progress: bool = True


#: frozen pretrained networks the style trainer's perceptual loss can use (training/losses.py builds them)
LOSS_NETWORKS = ("efficientnet_lite0", "vgg16", "vgg19")


@dataclass(frozen=True)
class LossWeights:
    content: float
    style: float
    tv: float


# Defaults, tuned by eye with EfficientNet-Lite0 at image size 128, style size
# 256 and 400-2000 steps so that the style's colours and texture dominate while
# the content stays recognisable (a higher style weight washes the content
# out; a lower one leaves little more than a colour cast). The terms are
# relative errors (see losses.PerceptualLoss), which is what lets one set serve
# different styles; the VGG entries reuse them and have not been tuned by eye.
DEFAULT_WEIGHTS: dict[str, LossWeights] = {
    "efficientnet_lite0": LossWeights(content=1.0, style=0.5, tv=1.0),
    "vgg16": LossWeights(content=1.0, style=0.5, tv=1.0),
    "vgg19": LossWeights(content=1.0, style=0.5, tv=1.0),
}


#: activation smoothing before the Gram and content losses (training/losses.py, Wang et al. 2021)
SMOOTHINGS = ("none", "softmax")


@dataclass(frozen=True)
class LossOptions:
    """How the perceptual loss compares feature maps, beyond its weights.

    smoothing: "softmax" passes every feature map through a softmax over its
    channels and positions before the Gram and content comparisons; "none" is
    the plain loss of Johnson et al.
    temperature: the softmax's temperature, in units of each layer's standard
    deviation on the style image (so one value fits every layer and network).
    """

    # "none": softmax (T=1) was worse on every network-free metric for both zoo
    # styles in 300-step trainings (docs/style_quality.md); kept as an option.
    smoothing: str = "none"
    temperature: float = 1.0


@dataclass
class StyleConfig:
    style: str
    data: str
    out: str
    loss_network: str = "efficientnet_lite0"
    loss_weights: str | None = None  # weights file; required for vgg16/vgg19
    width: float = 1.0
    image_size: int = 256
    # Shorter side of the style image: sets the size of the style's brush
    # strokes and patterns in the output, whatever size is stylized later.
    style_size: int = 256
    steps: int = 2000
    batch_size: int = 4
    lr: float = 1e-3
    content_weight: float | None = None  # None: the loss network's default (DEFAULT_WEIGHTS)
    style_weight: float | None = None
    tv_weight: float | None = None
    # How the loss compares feature maps (LossOptions); defaults measured with
    # benchmarks/style_loss_ablation.py by network-free metrics (docs/style_quality.md).
    smoothing: str = LossOptions.smoothing
    temperature: float = LossOptions.temperature
    # Style Gram targets are the mean over the style image resized to
    # style_size times each of these: texture at several scales.
    style_scales: tuple[float, ...] = (1.0,)
    # Loss-network layers (names as in training/losses.py); None: the network's defaults.
    style_layers: tuple[str, ...] | None = None
    content_layer: str | None = None
    sample_every: int = 200
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    max_steps: int | None = None  # stop early at this global step (a time budget); rerun to continue
    resume: bool = True
    progress: bool = True

    def loss_weight_values(self) -> LossWeights:
        default = DEFAULT_WEIGHTS[self.loss_network]
        return LossWeights(
            content=default.content if self.content_weight is None else self.content_weight,
            style=default.style if self.style_weight is None else self.style_weight,
            tv=default.tv if self.tv_weight is None else self.tv_weight,
        )

    def loss_options(self) -> LossOptions:
        return LossOptions(smoothing=self.smoothing, temperature=self.temperature)
