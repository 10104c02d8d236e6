"""Which perceptual-loss options make EfficientNet-Lite0 stylise better, judged by
network-free metrics (artforge.quality.style_metrics), never by the loss itself.

Two modes, each writing its own section of benchmarks/RESULTS.md:

- ``optimise`` (a quick screen of many variants): for each style and a
  held-out photo, the photo itself is optimised (Adam on its pixels, as
  Gatys et al.) under each loss variant; what a loss's optimum looks like is
  what a network trained through it converges towards.
- ``train`` (the check): short feed-forward trainings (`artforge train style`'s
  trainer) of the baseline and the chosen variants on crops of the training
  photos, scored on the held-out photos (DEFAULT_HOLDOUT) they never saw.

    python benchmarks/style_loss_ablation.py optimise [--steps 100]
    python benchmarks/style_loss_ablation.py train [--steps 300 --width 0.25]

Styles are the zoo's painted style images (zoo/styles/*.jpg).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, write_section  # noqa: E402

from artforge.quality.style_metrics import StyleReference, StyleScores, mean_scores  # noqa: E402
from artforge.runtime.imageio import read_image  # noqa: E402
from artforge.zoo.datasets import DEFAULT_HOLDOUT  # noqa: E402
from artforge.zoo.photos import CONTENT_PHOTOS, source_photos  # noqa: E402
from artforge.zoo.seeds import item_rng  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STYLES = ("swirl", "mosaic")
STYLE_SIZE = 256

#: name -> StyleConfig loss fields; the first is the baseline (the loss before this change)
VARIANTS: dict[str, dict[str, Any]] = {
    "plain Gram (before)": dict(smoothing="none"),
    "softmax T=1": dict(smoothing="softmax", temperature=1.0),
    "softmax T=0.5": dict(smoothing="softmax", temperature=0.5),
    "softmax T=2": dict(smoothing="softmax", temperature=2.0),
    "plain, style x0.5,1,2": dict(smoothing="none", style_scales=(0.5, 1.0, 2.0)),
    "softmax T=1, style x0.5,1,2": dict(smoothing="softmax", temperature=1.0, style_scales=(0.5, 1.0, 2.0)),
    "softmax T=1, +block10": dict(smoothing="softmax", temperature=1.0,
                                  style_layers=("block0", "block2", "block4", "block7", "block10")),
    "plain, style weight 2": dict(smoothing="none", style_weight=2.0),
    "plain, style 384 px": dict(smoothing="none", style_size=384),
    "plain, sliced": dict(smoothing="none", style_match="sliced"),
    "sliced, style weight 2": dict(smoothing="none", style_match="sliced", style_weight=2.0),
    "sliced, style weight 4": dict(smoothing="none", style_match="sliced", style_weight=4.0),
    "plain, +block10": dict(smoothing="none", style_layers=("block0", "block2", "block4", "block7", "block10")),
}


def square(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(h, w)
    crop = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)


def style_image(name: str, size: int = STYLE_SIZE) -> np.ndarray:
    return square(read_image(ROOT / "zoo" / "styles" / f"{name}.jpg")[..., :3], size)


def held_out_photos(side: int, names: tuple[str, ...] = DEFAULT_HOLDOUT) -> dict[str, np.ndarray]:
    photos = source_photos()
    return {name: square(photos[name], side) for name in names}


def table(rows: list[tuple[str, str, StyleScores]]) -> list[str]:
    lines = ["| style | loss | colour SWD (Lab) ↓ | Gabor Gram dist ↓ | edge SSIM ↑ |", "|---|---|---:|---:|---:|"]
    lines += [f"| {style} | {variant} | {s.colour:.2f} | {s.texture:.3f} | {s.edges:.3f} |"
              for style, variant, s in rows]
    return lines


def optimise(args: argparse.Namespace) -> None:
    import torch

    from artforge.training.configs import StyleConfig
    from artforge.training.losses import PerceptualLoss, build_loss_network

    torch.manual_seed(0)
    photos = held_out_photos(args.size, tuple(args.photos.split(",")))
    rows = []
    for style in STYLES:
        ref = StyleReference(style_image(style))
        for variant, fields in VARIANTS.items():
            cfg = StyleConfig(style="", data="", out="", **fields)
            net = build_loss_network(cfg.loss_network, None, cfg.style_layers, cfg.content_layer)
            sizes = sorted({round(STYLE_SIZE * s) for s in cfg.style_scales})
            styles = [torch.from_numpy(style_image(style, s)).permute(2, 0, 1)[None].float() for s in sizes]
            loss = PerceptualLoss(net, styles, cfg.loss_weight_values(), cfg.loss_options())
            scores = []
            for photo in photos.values():
                content = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
                target = loss.content_target(content)
                pixels = content.clone().requires_grad_(True)
                opt = torch.optim.Adam([pixels], lr=args.lr)
                for _ in range(args.steps):
                    opt.zero_grad()
                    loss(pixels, target)["total"].backward()
                    opt.step()
                    with torch.no_grad():
                        pixels.clamp_(0, 255)
                out = pixels.detach().round().byte()[0].permute(1, 2, 0).numpy()
                scores.append(ref.score(out, photo))
                cv2.imwrite(str(args.scratch / f"opt_{style}_{variant.replace(' ', '_')}.png"),
                            cv2.cvtColor(np.concatenate([photo, out], 1), cv2.COLOR_RGB2BGR))
            rows.append((style, variant, mean_scores(scores)))
            print(rows[-1], flush=True)
    body = ["## Style loss screen: pixel optimisation under each loss variant", "",
            f"Command: `{command_line()}`  ", f"Machine: {machine()}", "",
            f"Each held-out photo ({', '.join(photos)}, centre {args.size} px) is optimised for "
            f"{args.steps} Adam steps (lr {args.lr}) under the loss through EfficientNet-Lite0, default weights, "
            f"style image at {STYLE_SIZE} px; scores are means over the photos, against the style image "
            "(colour, texture) and the photo (edges).", "", *table(rows)]
    write_section("style-loss-screen", "\n".join(body))


def _content_crops(folder: Path, count: int, side: int) -> Path:
    """Random crops of the training photos (every content photo but the held-out ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = source_photos()
    names = [n for n in CONTENT_PHOTOS if n not in DEFAULT_HOLDOUT]
    for i in range(count):
        path = folder / f"{names[i % len(names)]}_{i:04d}.jpg"
        if path.exists():
            continue
        photo = photos[names[i % len(names)]]
        rng = item_rng(0, "ablation", i)
        h, w = photo.shape[:2]
        s = int(min(h, w) * rng.uniform(0.3, 1.0))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        crop = cv2.resize(photo[y:y + s, x:x + s], (side, side), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def train(args: argparse.Namespace) -> None:
    import torch

    from artforge.models import build
    from artforge.training import common
    from artforge.training.configs import StyleConfig
    from artforge.training.style import train as train_style

    data = _content_crops(args.scratch / "content", 200, 192)
    photos = held_out_photos(256)
    rows, cells = [], []
    chosen = [v for v in args.variants.split(";")] if args.variants else list(VARIANTS)[:2]
    styles = args.styles.split(",")
    for style in styles:
        for variant in chosen:
            # Texture is judged at the pixel scale the network was trained to reproduce.
            ref = StyleReference(style_image(style, VARIANTS[variant].get("style_size", STYLE_SIZE)))
            # A finished run folder is reused (the trainer resumes at its last step), so
            # variants can be trained by parallel invocations and tabulated by a last one.
            run = args.scratch / "runs" / f"{style}_{variant.replace(' ', '_').replace(',', '')}_{args.steps}"
            t0 = time.perf_counter()
            train_style(StyleConfig(style=str(ROOT / "zoo" / "styles" / f"{style}.jpg"), data=str(data),
                                    out=str(run), width=args.width, image_size=args.size,
                                    steps=args.steps, max_steps=args.stop_at, batch_size=4, progress=False,
                                    sample_every=50, checkpoint_every=50,
                                    **{"style_size": STYLE_SIZE, **VARIANTS[variant]}))
            artifact = common.load_artifact(run)
            net = build(artifact["kind"], artifact["arch"])
            net.load_state_dict(artifact["state_dict"])
            net.eval()
            scores, outs = [], []
            for photo in photos.values():
                with torch.no_grad():
                    y = net(torch.from_numpy(photo).permute(2, 0, 1)[None].float())
                out = y.clamp(0, 255).round().byte()[0].permute(1, 2, 0).numpy()
                scores.append(ref.score(out, photo))
                outs.append(out)
            rows.append((style, f"{variant}, step {artifact['provenance']['steps']}", mean_scores(scores)))
            cells.append(np.concatenate(outs, 1))
            print(rows[-1], f"{time.perf_counter() - t0:.0f} s", flush=True)
    sheet = np.concatenate(cells, 0)
    cv2.imwrite(str(ROOT / "benchmarks" / "plots" / "style_loss_ablation.jpg"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    body = ["## Style loss check: short feed-forward trainings, held-out photos", "",
            f"Command: `{command_line()}`  ", f"Machine: {machine()}", "",
            f"TransformerNet width {args.width}, {args.size} px crops of the training photos, batch 4, "
            f"a {args.steps}-step run" + (f" scored at its checkpoint at step {args.stop_at}" if args.stop_at else "")
            + f", style image at {STYLE_SIZE} px; scored on the held-out photos "
            f"({', '.join(DEFAULT_HOLDOUT)}, centre 256 px) never seen in training. Rows of "
            "`plots/style_loss_ablation.jpg`: each style x loss, the held-out photos left to right.", "",
            *table(rows)]
    write_section(args.section, "\n".join(body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("optimise", "train"))
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (optimise: 100, train: 300)")
    parser.add_argument("--size", type=int, default=128, help="content side in pixels")
    parser.add_argument("--lr", type=float, default=4.0, help="pixel learning rate (optimise)")
    parser.add_argument("--width", type=float, default=0.25, help="TransformerNet width (train)")
    parser.add_argument("--stop-at", type=int, default=None, help="stop (and score) at this step; "
                        "a later invocation without it continues the same runs (train)")
    parser.add_argument("--section", default="style-loss-train", help="RESULTS.md section to write (train)")
    parser.add_argument("--variants", default=None, help="';'-separated VARIANTS names to train "
                        "(default: the baseline and softmax T=1)")
    parser.add_argument("--styles", default=",".join(STYLES), help="zoo style images to train (train)")
    parser.add_argument("--photos", default=",".join(DEFAULT_HOLDOUT), help="held-out photos to optimise")
    parser.add_argument("--scratch", type=Path, default=ROOT / "scratch" / "ablation")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    args.steps = args.steps or (100 if args.mode == "optimise" else 300)
    (optimise if args.mode == "optimise" else train)(args)


if __name__ == "__main__":
    main()
