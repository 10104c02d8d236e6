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
    preset: str | None = None  # a named recipe (training/presets.py); recorded, its values are in the fields
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
    log_every: int = 20  # with the progress bars off, a line every N steps (epoch lines always)
    progress: bool = True
    # Temperature scaling on the validation split after training, so that a top
    # probability of 0.9 is right about 9 times in 10 (training/calibration.py).
    calibrate: bool = True


#: DCGAN losses: the paper's non-saturating BCE, and the hinge loss
DCGAN_LOSSES = ("bce", "hinge")
#: transforms a DiffAugment policy may name (training/diffaugment.py), in the order they are applied
DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")


@dataclass
class DCGANConfig:
    data: str
    out: str
    preset: str | None = None  # a named recipe (training/presets.py); recorded, its values are in the fields
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    epochs: int = 25
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    flip: bool = True  # random horizontal flips (doubles the data for free)
    # Training practice for small data sets (docs/dcgan.md has the measurements behind each default).
    loss: str = "bce"  # bce: the paper's non-saturating loss; hinge: the hinge loss of SN-GAN / BigGAN
    spectral_norm: bool = False  # spectral normalisation of D's convolutions (and no batch norm in D)
    lr_d: float | None = None  # D's learning rate (two time-scale update rule); None: same as lr
    ema: float = 0.0  # decay of an exponential moving average of G's weights, exported instead of G; 0: off
    augment: str = ""  # DiffAugment policy for D's inputs: comma-separated color, translation, cutout
    # Quality measured while training (artforge/quality/gan_metrics.py): FD, precision/recall, duplicates.
    eval_data: str | None = None  # held-out real images to measure against; None: a sample of the training images
    eval_every: int = 0  # measure every N epochs (and at the end); 0: never
    eval_samples: int = 256  # generated images per measurement (and at most this many real ones)
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
#: what the style loss matches of each layer's features: Gram matrices, or their whole distribution (sliced)
STYLE_MATCHES = ("gram", "sliced", "gram+sliced")


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
    # "gram": Johnson et al.'s second moments. "sliced": the sliced Wasserstein
    # distance between the features' distributions (Heitz et al. 2021), which
    # also matches how much of each colour and motif there is, not only which
    # channels fire together. "gram+sliced": the sum of both.
    style_match: str = "gram"


@dataclass
class StyleConfig:
    style: str
    data: str
    out: str
    preset: str | None = None  # a named recipe (training/presets.py); recorded, its values are in the fields
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
    style_match: str = LossOptions.style_match
    # Style Gram targets are the mean over the style image resized to
    # style_size times each of these: texture at several scales.
    style_scales: tuple[float, ...] = (1.0,)
    # Loss-network layers (names as in training/losses.py); None: the network's defaults.
    style_layers: tuple[str, ...] | None = None
    content_layer: str | None = None
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

    def loss_options(self) -> LossOptions:
        return LossOptions(smoothing=self.smoothing, temperature=self.temperature, style_match=self.style_match)

#: what `artforge gatys` may optimise the pixels with
GATYS_OPTIMIZERS = ("lbfgs", "adam")
#: where `artforge gatys` starts: the content photo, or uniform noise (Gatys et al.'s start)
GATYS_INITS = ("content", "noise")


@dataclass
class GatysConfig:
    """Settings of one Gatys et al. optimisation (artforge.training.gatys).

    The loss is the style trainer's (same loss network, layers and default
    weights), so its figures compare directly with a trained network's.
    optimizer / steps: see docs/training.md for the measurement behind them.
    """

    content: str
    style: str
    out: str | None = None
    # Measured (docs/training.md#the-default-optimiser-and-steps): Adam reaches a lower loss than L-BFGS
    # for the same number of loss evaluations, and is within 5 % of its 150-step loss by step 75.
    steps: int = 200  # loss evaluations (forward + backward passes), the same cost for both optimisers
    size: int = 256  # longer side of the output, in pixels
    style_size: int = 256  # shorter side of the style image: the scale of its texture, as in training
    optimizer: str = "adam"
    lr: float | None = None  # None: 1.0 for L-BFGS, 0.02 (on the 0..1 pixel scale) for Adam
    init: str = "content"
    loss_network: str = "efficientnet_lite0"
    loss_weights: str | None = None  # weights file; required for vgg16/vgg19
    content_weight: float | None = None  # None: the loss network's default (DEFAULT_WEIGHTS)
    style_weight: float | None = None
    tv_weight: float | None = None
    log_every: int = 25
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def loss_weight_values(self) -> LossWeights:
        # The style trainer's rule, so that the two losses stay the same loss.
        return StyleConfig(style="", data="", out="", loss_network=self.loss_network,
                           content_weight=self.content_weight, style_weight=self.style_weight,
                           tv_weight=self.tv_weight).loss_weight_values()

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
    steps: int = 900  # outer (meta) steps
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
