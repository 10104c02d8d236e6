"""`artforge train meta-style` and `artforge adapt-style`: meta-learn a style-network initialisation over many
styles, then adapt it to one new style in minutes (and, with --repo, export it as a servable stylizer).

Defaults come from MetaStyleConfig and AdaptStyleConfig (plain Python); torch is imported when a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from artforge.cli.args import add_command, positive_float, positive_int, repository_path
from artforge.cli.train import _defaults, _loss_network_options, _loss_weight_options, _run_options, _step_cadence
from artforge.training.configs import (
    INNER_PARAMS,
    AdaptStyleConfig,
    MetaStyleConfig,
)

#: where the one-shot form keeps its run folder when no --out is given (resumable: rerun the same command)
ADAPT_RUNS = Path("adapt-runs")


def add_train_meta_style(kinds: argparse._SubParsersAction) -> None:
    """`artforge train meta-style` (added to `artforge train`'s kinds)."""
    d = _defaults(MetaStyleConfig)
    parser = add_command(
        kinds, "meta-style", "meta-learn a style-network initialisation over many styles (MAML)", run_meta_style,
        description=f"Meta-train (MAML, as in MetaStyle) a style network's initialisation so that a few fine-tuning "
                    f"steps on a new style (`artforge adapt-style`) give a good style network. Styles: the images "
                    f"under --styles plus --procedural-styles painted ones. The defaults ({d['steps']} outer steps "
                    f"of {d['inner_steps']} inner steps, width {d['width']}, {d['image_size']} px) take about 20-30 "
                    "minutes on 2 idle CPU cores; --max-steps sets a time budget.")
    parser.add_argument("--data", required=True, help="folder of content images (searched recursively)")
    parser.add_argument("--out", required=True, help="run folder (rerun with the same folder to resume)")
    parser.add_argument("--styles", default=None, help="folder of style images (searched recursively)")
    parser.add_argument("--procedural-styles", type=int, default=d["procedural_styles"],
                        help="styles painted procedurally (painted families, photos in art styles; pointillism "
                             "is held out) added to the --styles images")
    meta = parser.add_argument_group("meta-learning")
    meta.add_argument("--steps", type=int, default=d["steps"], help="outer (meta) steps")
    meta.add_argument("--tasks-per-step", type=int, default=d["tasks_per_step"],
                      help="styles per outer step (meta-batch)")
    meta.add_argument("--inner-steps", type=int, default=d["inner_steps"],
                      help="gradient steps on the sampled style in the inner loop")
    meta.add_argument("--inner-lr", type=float, default=d["inner_lr"], help="inner-loop learning rate (plain SGD)")
    meta.add_argument("--outer-lr", type=float, default=d["outer_lr"], help="outer-loop learning rate (Adam)")
    meta.add_argument("--inner-params", choices=INNER_PARAMS, default=d["inner_params"],
                      help="parameters the inner loop adapts: all, or only the instance norms' scales and shifts")
    meta.add_argument("--second-order", action="store_true",
                      help="differentiate through the inner steps (full MAML; default: first-order)")
    meta.add_argument("--adapt-steps", type=int, default=d["adapt_steps"],
                      help="steps `artforge adapt-style` runs from this initialisation when not told")
    meta.add_argument("--adapt-lr", type=float, default=d["adapt_lr"],
                      help="Adam learning rate of `artforge adapt-style` from this initialisation when not told")
    net = parser.add_argument_group("network and loss (adaptation reuses them)")
    _loss_network_options(net, d)
    net.add_argument("--width", type=float, default=d["width"], help="channel width multiplier (0.5 = half)")
    net.add_argument("--image-size", type=int, default=d["image_size"], help="side of the content crops in pixels")
    net.add_argument("--style-size", type=int, default=d["style_size"],
                     help="shorter side the style images are resized to (sets the scale of their texture)")
    net.add_argument("--batch-size", type=int, default=d["batch_size"], help="content crops per inner step")
    _loss_weight_options(net, d)
    parser.add_argument("--sample-every", type=int, default=d["sample_every"],
                        help="save a content|initialisation sample to RUN/samples every N steps")
    _step_cadence(parser, d)
    _run_options(parser, d)


def _config(config: type, args: argparse.Namespace, **overrides: object) -> object:
    names = {f.name for f in dataclasses.fields(config)}
    return config(**{**{k: v for k, v in vars(args).items() if k in names}, **overrides})


def run_meta_style(args: argparse.Namespace) -> int:
    from artforge.training import meta_style  # torch: only now

    run = meta_style.train(_config(MetaStyleConfig, args))  # type: ignore[arg-type]
    print(f"meta-trained style initialisation: {run} (adapt it: artforge adapt-style STYLE_IMAGE --init {run} ...)")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    d = _defaults(AdaptStyleConfig)
    parser = add_command(
        commands, "adapt-style", "adapt a meta-learned initialisation to a new style image in minutes",
        run_adapt_style,
        description="Fine-tune a meta-learned style initialisation (`artforge train meta-style`; by default the "
                    "one the zoo ships) on one style image, with the initialisation's network and loss settings. "
                    "--out RUN writes an ordinary style run (`artforge export RUN`); --repo REPO also exports it, "
                    "with the parity check and a model card, as a servable stylizer.")
    parser.add_argument("style", type=Path, metavar="STYLE_IMAGE", help="the new style image")
    parser.add_argument("--init", type=Path, default=None,
                        help="meta-style run folder or its model.pt (default: the zoo's zoo/checkpoints/"
                             "meta_style.pt)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"run folder (rerun to resume; default with --repo: {ADAPT_RUNS}/NAME)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of content photos (default: the photos the project ships, zoo/samples)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="fine-tuning steps (default: the initialisation's measured default, 200 for the "
                             "shipped one)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="Adam learning rate (default: the initialisation's)")
    one_shot = parser.add_argument_group("one-shot: export to a model repository")
    one_shot.add_argument("--repo", type=Path, default=None, help="model repository to export the stylizer to")
    one_shot.add_argument("--name", default=None, help="model name (default: the style image's file name)")
    one_shot.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    parser.add_argument("--sample-every", type=positive_int, default=d["sample_every"],
                        help="save a content|stylized sample to RUN/samples every N steps")
    parser.add_argument("--checkpoint-every", type=positive_int, default=d["checkpoint_every"],
                        help="save a resumable state every N steps")
    parser.add_argument("--log-every", type=positive_int, default=d["log_every"], help="log the losses every N steps")
    _run_options(parser, d)


def run_adapt_style(args: argparse.Namespace) -> int:
    from artforge.errors import InvalidInputError

    if args.repo is None and args.out is None:
        raise InvalidInputError("adapt-style needs --out RUN (a style run to export later) or --repo REPO "
                                "(adapt and export in one go)")
    name = args.name or args.style.stem
    out = args.out or ADAPT_RUNS / name
    cfg = _config(AdaptStyleConfig, args, style=str(args.style), out=str(out),
                  init=None if args.init is None else str(args.init),
                  data=None if args.data is None else str(args.data))
    from artforge.training import adapt_style  # torch: only now

    if args.repo is None:
        run = adapt_style.adapt(cfg)  # type: ignore[arg-type]
        print(f"adapted style network: {run} (export it: artforge export {run})")
        return 0
    path = adapt_style.adapt_to_repository(cfg, repository_path(args), name,  # type: ignore[arg-type]
                                           overwrite=args.overwrite)
    print(f"exported: {path}")
    return 0
