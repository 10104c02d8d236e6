"""`artforge gatys CONTENT STYLE OUT`: Gatys et al.'s optimisation, the quality reference.

Defaults come from GatysConfig in artforge/training/configs.py (plain
Python); torch is imported when the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses

from artforge.cli.args import add_command
from artforge.cli.train import _loss_network_options, _loss_weight_options
from artforge.training.configs import GATYS_INITS, GATYS_OPTIMIZERS, GatysConfig


def add_commands(commands: argparse._SubParsersAction) -> None:
    d = {f.name: f.default for f in dataclasses.fields(GatysConfig) if f.default is not dataclasses.MISSING}
    parser = add_command(
        commands, "gatys", "style one image by optimising its pixels (Gatys et al.; slow, the quality reference)",
        run_gatys,
        description="Style one image by optimising its pixels against the style trainer's perceptual loss "
                    "(Gatys et al.): the same loss network, layers and weights as `artforge train style`, so "
                    "its result is the reference a trained stylizer is measured against. Slow (minutes per "
                    "image on a CPU) and not served. Needs the [train] extra.")
    parser.add_argument("content", help="content image file")
    parser.add_argument("style", help="style image file")
    parser.add_argument("out", help="output image file (.png, .jpg, .jpeg or .webp)")
    parser.add_argument("--steps", type=int, default=d["steps"],
                        help="loss evaluations (a forward and a backward pass each, for either optimiser)")
    parser.add_argument("--size", type=int, default=d["size"], help="longer side of the output in pixels")
    parser.add_argument("--style-size", type=int, default=d["style_size"],
                        help="shorter side the style image is resized to (sets the scale of its texture, as in "
                             "training)")
    parser.add_argument("--optimizer", choices=GATYS_OPTIMIZERS, default=d["optimizer"],
                        help="what moves the pixels (chosen by measurement: docs/training.md)")
    parser.add_argument("--lr", type=float, default=None,
                        help="step size (default: 1.0 for lbfgs, 0.02 for adam on the 0..1 pixel scale)")
    parser.add_argument("--init", choices=GATYS_INITS, default=d["init"],
                        help="start from the content image or from uniform noise (drawn from --seed)")
    _loss_network_options(parser, d)
    _loss_weight_options(parser, d)
    parser.add_argument("--log-every", type=int, default=d["log_every"],
                        help="record the losses every N steps (a line each with --no-progress)")
    parser.add_argument("--seed", type=int, default=d["seed"], help="seed of the noise start: the same seed "
                        "gives the same image")
    parser.add_argument("--device", default=d["device"], help="auto, cpu or cuda[:N]")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def run_gatys(args: argparse.Namespace) -> int:
    from artforge.training.gatys import gatys_to_file  # torch: only now
    from artforge.training.progress import format_duration

    names = {f.name for f in dataclasses.fields(GatysConfig)}
    cfg = GatysConfig(**{k: v for k, v in vars(args).items() if k in names})
    out, result = gatys_to_file(cfg)
    first, final = result.first["total"], result.final["total"]
    print(f"wrote {out}: loss {first:.4g} -> {final:.4g} (content {result.final['content']:.3g}, style "
          f"{result.final['style']:.3g}, tv {result.final['tv']:.3g}) in {cfg.steps} steps, "
          f"{format_duration(result.seconds)}")
    return 0
