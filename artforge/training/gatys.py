"""Gatys et al.'s style transfer: optimise the pixels of one image.

`artforge gatys CONTENT STYLE OUT` starts from the content photo (or from
noise) and changes its pixels to lower the style trainer's own perceptual
loss (artforge.training.losses: content loss at one layer of a frozen
pretrained network, Gram-matrix style loss at several, total variation),
with L-BFGS or Adam. Slow, one image at a time, and with no network to
ship: it is the quality reference the fast, trained stylizers are measured
against, since it minimises for this one image the loss they minimise on
average over their training photos.

A step is one loss evaluation (a forward and a backward pass through the
loss network) for either optimiser, so --steps buys the same time with
both. Pixels live on a 0..1 scale and are clamped to it after every step.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from artforge.training import common
from artforge.training.configs import GATYS_INITS, GATYS_OPTIMIZERS, LOSS_NETWORKS, GatysConfig
from artforge.training.data import read_rgb
from artforge.training.losses import PerceptualLoss, build_loss_network
from artforge.training.progress import StepProgress

#: the smallest side an input may have: the loss network's deepest style layer works at 1/16
MIN_SIDE = 32
#: output extensions runtime.imageio.write_image encodes
OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
#: learning rate when none is given: L-BFGS takes whole quasi-Newton steps; Adam moves pixels (0..1) by ~lr a step
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
#: L-BFGS memory (pairs of past steps kept), PyTorch's default
LBFGS_HISTORY = 100


@dataclass
class GatysResult:
    image: np.ndarray  # RGB uint8 HWC
    history: list[dict[str, float]] = field(default_factory=list)  # losses every log_every steps
    first: dict[str, float] = field(default_factory=dict)  # losses of the starting image
    final: dict[str, float] = field(default_factory=dict)  # losses of the image returned (clamped)
    seconds: float = 0.0


def _check_output(out: str | os.PathLike) -> Path:
    """Refuse an output the run could not write, before the slow part."""
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder; name an image file")
    if path.suffix.lower() not in OUTPUT_EXTENSIONS:
        raise ValueError(f"cannot write {path}: the extension must be one of {', '.join(OUTPUT_EXTENSIONS)}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: the folder {parent} is not writable")
    return path


def _validate(cfg: GatysConfig) -> None:
    if cfg.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {cfg.steps}")
    if cfg.size < MIN_SIDE:
        raise ValueError(f"--size must be at least {MIN_SIDE} pixels, got {cfg.size}")
    if cfg.style_size < MIN_SIDE:
        raise ValueError(f"--style-size must be at least {MIN_SIDE} pixels, got {cfg.style_size}")
    if cfg.optimizer not in GATYS_OPTIMIZERS:
        raise ValueError(f"--optimizer must be one of {', '.join(GATYS_OPTIMIZERS)}, got {cfg.optimizer!r}")
    if cfg.init not in GATYS_INITS:
        raise ValueError(f"--init must be one of {', '.join(GATYS_INITS)}, got {cfg.init!r}")
    if cfg.loss_network not in LOSS_NETWORKS:
        raise ValueError(f"--loss-network must be one of {', '.join(LOSS_NETWORKS)}, got {cfg.loss_network!r}")
    if cfg.lr is not None and not cfg.lr > 0:
        raise ValueError(f"--lr must be greater than 0, got {cfg.lr}")
    if cfg.log_every < 1:
        raise ValueError(f"--log-every must be at least 1, got {cfg.log_every}")
    for name in ("content_weight", "style_weight", "tv_weight"):
        value = getattr(cfg, name)
        if value is not None and not value >= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be 0 or more, got {value}")


def _read(path: str | os.PathLike, what: str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} image not found: {path}")
    try:
        image = read_rgb(path)
    except ValueError:
        raise ValueError(f"cannot decode the {what} image {path}; use a JPEG/PNG/BMP/WebP/TIFF file") from None
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"the {what} image {path} is {w}x{h} pixels; gatys needs at least {MIN_SIDE} on each side")
    return image


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    new = (max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale)))
    return cv2.resize(image, new, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def _to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().contiguous().to(device)


def _start(content: torch.Tensor, init: str, seed: int) -> torch.Tensor:
    """The starting pixels on the 0..1 scale."""
    if init == "content":
        return content / 255.0
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(content.shape, generator=generator).to(content.device)


def _losses(values: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in values.items()}


def run_gatys(cfg: GatysConfig) -> GatysResult:
    """Optimise the output for cfg (cfg.out is not written here; see gatys_to_file)."""
    _validate(cfg)
    device = common.pick_device(cfg.device)
    content_image = _read(cfg.content, "content")
    style_image = _read(cfg.style, "style")
    content_image = _resize(content_image, cfg.size / max(content_image.shape[:2]))
    style_image = _resize(style_image, cfg.style_size / min(style_image.shape[:2]))

    common.set_seed(cfg.seed)
    network = build_loss_network(cfg.loss_network, cfg.loss_weights)
    criterion = PerceptualLoss(network, _to_tensor(style_image, torch.device("cpu")),
                               cfg.loss_weight_values()).to(device)
    content = _to_tensor(content_image, device)
    target = criterion.content_target(content)
    pixels = _start(content, cfg.init, cfg.seed).requires_grad_(True)
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer]
    optimizer: torch.optim.Optimizer
    if cfg.optimizer == "lbfgs":
        # One iteration per .step(): a step is then one loss evaluation, as for Adam, and the bar moves.
        optimizer = torch.optim.LBFGS([pixels], lr=lr, max_iter=1, history_size=LBFGS_HISTORY)
    else:
        optimizer = torch.optim.Adam([pixels], lr=lr)

    last: dict[str, torch.Tensor] = {}

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        values = criterion(pixels * 255.0, target)
        values["total"].backward()
        last.update(values)
        return values["total"]

    result = GatysResult(image=content_image)
    started = time.perf_counter()
    bar = StepProgress(total=cfg.steps, desc="gatys", enabled=cfg.progress)
    try:
        for step in range(1, cfg.steps + 1):
            optimizer.step(closure)
            with torch.no_grad():
                pixels.clamp_(0.0, 1.0)
            losses = _losses(last)
            if step == 1:
                # The loss was evaluated before this step's update: the starting image's.
                result.first = losses
            if not all(np.isfinite(v) for v in losses.values()):
                raise ValueError(f"the loss became {losses['total']} at step {step}; "
                                 "lower --lr or use --optimizer adam")
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                result.history.append({"step": step, **losses})
                bar.set_postfix(total=f"{losses['total']:.4g}", content=f"{losses['content']:.3g}",
                                style=f"{losses['style']:.3g}", tv=f"{losses['tv']:.3g}")
    finally:
        bar.close()
    with torch.no_grad():
        result.final = _losses(criterion(pixels * 255.0, target))
    result.seconds = time.perf_counter() - started
    result.image = (pixels.detach()[0] * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return result


def gatys_to_file(cfg: GatysConfig) -> tuple[Path, GatysResult]:
    """Run cfg and write the image to cfg.out (checked before the optimisation starts)."""
    from artforge.runtime.imageio import write_image

    if cfg.out is None:
        raise ValueError("no output file given")
    out = _check_output(cfg.out)
    result = run_gatys(cfg)
    write_image(out, result.image)
    return out, result


def gatys(content: str | os.PathLike, style: str | os.PathLike, **options: Any) -> np.ndarray:
    """The stylized image (RGB uint8 HWC) of `content` in the style of `style`.

    options: the fields of artforge.training.configs.GatysConfig (steps, size,
    style_size, optimizer, lr, init, loss_network, loss_weights, the loss
    weights, seed, device, progress).
    """
    return run_gatys(GatysConfig(content=str(content), style=str(style), **options)).image
