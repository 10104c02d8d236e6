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
    # Start from these weights (a meta-style initialisation or another style run: RUN or its model.pt)
    # instead of a random initialisation; the width must match.
    init: str | None = None
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


# ----------------------------------------------------------------- meta-learned style initialisation
#: the kind of a meta-style run's model.pt: a TransformerNet initialisation, not a stylizer (export refuses it;
#: `artforge adapt-style` turns it into one)
META_STYLE_KIND = "meta_style_init"
#: which parameters the inner loop adapts: every parameter, or only the instance norms' scales and shifts
INNER_PARAMS = ("all", "norm")


@dataclass
class MetaStyleConfig:
    """Meta-training (MAML, as in MetaStyle) of a style network's initialisation over many styles.

    The network and loss settings (width .. tv_weight) carry the same names and meaning as StyleConfig's,
    and adaptation (`artforge adapt-style`) reuses them, so an adapted network is trained the way it
    was meta-trained. Defaults: see docs/meta_style.md for the measurements behind them.
    """

    data: str
    out: str
    styles: str | None = None  # folder of style images (searched recursively); optional
    procedural_styles: int = 48  # styles painted by artforge.zoo (painted families and art-style renders)
    loss_network: str = "efficientnet_lite0"
    loss_weights: str | None = None
    width: float = 0.5
    image_size: int = 128
    style_size: int = 256
    batch_size: int = 4
    content_weight: float | None = None
    style_weight: float | None = None
    tv_weight: float | None = None
    steps: int = 300  # outer (meta) steps
    tasks_per_step: int = 1  # styles per outer step (the meta-batch)
    inner_steps: int = 2
    inner_lr: float = 0.3  # plain gradient descent in the inner loop (MAML)
    outer_lr: float = 1e-3  # Adam over the initialisation
    inner_params: str = "all"
    second_order: bool = False
    adapt_steps: int = 200  # what `adapt-style` runs by default from this initialisation
    adapt_lr: float = 1e-3
    sample_every: int = 50
    checkpoint_every: int = 10
    log_every: int = 5
    seed: int = 0
    device: str = "auto"
    max_steps: int | None = None
    resume: bool = True
    progress: bool = True


@dataclass
class AdaptStyleConfig:
    """Fine-tuning a meta-learned initialisation on one style: an ordinary style run started from `init`."""

    style: str
    out: str
    init: str | None = None  # meta-style run folder or its model.pt (default: the shipped zoo's)
    data: str | None = None  # content photos (default: the photos the project ships)
    steps: int | None = None  # default: the initialisation's adapt_steps
    lr: float | None = None  # default: the initialisation's adapt_lr
    sample_every: int = 50
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    max_steps: int | None = None
    resume: bool = True
    progress: bool = True
