"""Gatys optimisation: L-BFGS against Adam, the same number of loss evaluations each.

For each (photo, style, optimiser) the total loss (the style trainer's loss,
same network, layers and weights) is recorded every 25 steps; the table says
which optimiser reaches the lower loss and how many steps each needs to come
within 5 % of its own last value. This is the measurement behind
`artforge gatys`'s default --optimizer and --steps.

    python benchmarks/bench_gatys.py [--size 128] [--steps 300] [--photos chelsea,coffee] [--styles mosaic,waves]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import command_line, machine, write_section  # noqa: E402

from artforge.training.configs import GATYS_OPTIMIZERS, GatysConfig  # noqa: E402
from artforge.training.gatys import run_gatys  # noqa: E402

CLOSE = 0.05  # "within 5 % of the last value"


def steps_to_within(history: list[dict[str, float]], close: float) -> int:
    last = history[-1]["total"]
    return next(h["step"] for h in history if h["total"] <= last * (1 + close))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--photos", default="chelsea,coffee")
    parser.add_argument("--styles", default="mosaic,waves")
    parser.add_argument("--init", default="content")
    args = parser.parse_args()
    rows = []
    for photo in args.photos.split(","):
        for style in args.styles.split(","):
            for optimizer in GATYS_OPTIMIZERS:
                cfg = GatysConfig(content=str(ROOT / "zoo" / "samples" / f"{photo}.jpg"),
                                  style=str(ROOT / "zoo" / "styles" / f"{style}.jpg"), steps=args.steps,
                                  size=args.size, optimizer=optimizer, init=args.init, progress=False, log_every=25)
                result = run_gatys(cfg)
                curve = {h["step"]: h["total"] for h in result.history}
                rows.append((photo, style, optimizer, result.first["total"], curve, result.final,
                             steps_to_within(result.history, CLOSE), result.seconds))
                print(photo, style, optimizer, result.final, f"{result.seconds:.0f} s", flush=True)
                write(args, rows)  # after every run: a long benchmark stopped early still leaves its rows


def write(args: argparse.Namespace, rows: list[tuple]) -> None:
    marks = [s for s in (25, 50, 100, 150, 200, 300, 500) if s <= args.steps]
    load = os.getloadavg()[0]
    lines = [f"Machine: {machine()}; load average {load:.1f} when written (above the core count, other work "
             "shared the CPU and the seconds are inflated)", "", f"Command: `{command_line()}`", "",
             f"Output {args.size} px on the longer side, style image 256 px on the shorter, init {args.init}, "
             "EfficientNet-Lite0 loss network with the trainer's default weights. Total loss after N steps "
             "(a step is one loss evaluation for either optimiser); `5 %` is the step at which the loss first "
             "came within 5 % of its final value.", "",
             "| photo | style | optimiser | start | " + " | ".join(f"{m}" for m in marks)
             + " | final content / style / tv | 5 % | seconds |",
             "|---|---|---|---|" + "---|" * len(marks) + "---|---|---|"]
    for photo, style, optimizer, first, curve, final, within, seconds in rows:
        lines.append(f"| {photo} | {style} | {optimizer} | {first:.3f} | "
                     + " | ".join(f"{curve.get(m, float('nan')):.3f}" for m in marks)
                     + f" | {final['content']:.3f} / {final['style']:.3f} / {final['tv']:.3f} | {within} | "
                       f"{seconds:.0f} |")
    write_section("gatys", "## Gatys: L-BFGS vs Adam\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
