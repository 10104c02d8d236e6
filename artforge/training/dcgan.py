"""Train a DCGAN (Radford et al.) on a folder of images.

`artforge train dcgan --data DIR --out RUN` trains
artforge.models.dcgan.Generator / Discriminator with the paper's recipe:
binary cross-entropy (on the discriminator's logits), Adam with lr 2e-4 and
beta1 0.5, a 100-d Gaussian latent, 64x64 RGB images scaled to [-1, 1].

The images are decoded once, up front, and kept at 64 pixels on the shorter
side (~14 KB each): DCGAN data sets are small tiles and decoding them again
every epoch would cost more than the training step on a small CPU. Epoch e
shuffles with an RNG seeded by (seed, e) and batch b crops with (seed, e, b),
so a resumed run replays exactly the batches an uninterrupted run would have
seen, from nothing more than the step counter.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from artforge.models.dcgan import Discriminator, Generator
from artforge.training import common
from artforge.training.configs import DCGANConfig
from artforge.training.data import IMAGE_EXTENSIONS, list_images, read_rgb
from artforge.training.progress import StepProgress
from artforge.training.run_record import FINISHED, MAX_STEPS, run_record

IMAGE_SIZE = 64
# Keep a little of a non-square image's longer side so that random crops
# move along it, without storing whole panoramas.
MAX_LONG_SIDE = 80


def _validate(cfg: DCGANConfig) -> None:
    for name in ("nz", "ngf", "ndf", "epochs", "batch_size", "sample_count", "checkpoint_every", "log_every"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(cfg, name)}")
    if cfg.max_steps is not None and cfg.max_steps <= 0:
        raise ValueError(f"--max-steps must be a positive integer, got {cfg.max_steps}")
    if cfg.lr <= 0:
        raise ValueError(f"--lr must be greater than 0, got {cfg.lr}")
    if not 0 <= cfg.beta1 < 1:
        raise ValueError(f"--beta1 must be in [0, 1), got {cfg.beta1}")
    if not Path(cfg.data).is_dir():
        raise FileNotFoundError(f"image folder not found: {cfg.data}")


def _shrink(image: np.ndarray) -> np.ndarray:
    """Resize so the shorter side is 64, then centre-crop the longer side to at most MAX_LONG_SIDE."""
    h, w = image.shape[:2]
    scale = IMAGE_SIZE / min(h, w)
    nh, nw = max(IMAGE_SIZE, round(h * scale)), max(IMAGE_SIZE, round(w * scale))
    if (nh, nw) != (h, w):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    y, x = max(0, (nh - MAX_LONG_SIDE) // 2), max(0, (nw - MAX_LONG_SIDE) // 2)
    return np.ascontiguousarray(image[y:y + MAX_LONG_SIDE, x:x + MAX_LONG_SIDE])


def load_images(folder: Path, progress: bool = True) -> tuple[list[np.ndarray], int]:
    """Decode every image under folder to 64 px; returns (images, number of unreadable files skipped)."""
    paths = list_images(folder)
    if not paths:
        raise ValueError(
            f"no images found in {folder} (searched recursively for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    images, skipped = [], 0
    for path in tqdm(paths, desc="loading images", unit="img", disable=not progress, leave=False):
        try:
            images.append(_shrink(read_rgb(path)))
        except (ValueError, OSError, cv2.error):
            skipped += 1
    if not images:
        raise ValueError(f"none of the {len(paths)} image file(s) in {folder} could be decoded")
    return images, skipped


def _batch(images: list[np.ndarray], indices: np.ndarray, rng: np.random.Generator, flip: bool) -> torch.Tensor:
    """Random 64x64 crops (and flips) of the given images as float NCHW in [-1, 1]."""
    out = np.empty((len(indices), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for k, i in enumerate(indices):
        image = images[int(i)]
        h, w = image.shape[:2]
        y, x = int(rng.integers(0, h - IMAGE_SIZE + 1)), int(rng.integers(0, w - IMAGE_SIZE + 1))
        crop = image[y:y + IMAGE_SIZE, x:x + IMAGE_SIZE]
        out[k] = crop[:, ::-1] if flip and rng.random() < 0.5 else crop
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def image_grid(images: torch.Tensor, pad: int = 2) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> one RGB uint8 grid image, as square as possible."""
    n, _, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pixels = ((images.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = pixels[k]
    return grid


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG, atomically."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV could not encode {path}")
    common.atomic_write_bytes(encoded.tobytes(), Path(path))


def _save_samples(run: Path, name: str, generator: Generator, noise: torch.Tensor) -> Path:
    # Eval mode (batch norm running statistics) is what export ships, so the
    # grid shows what the exported generator will draw.
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        fake = generator(noise)
    generator.train(was_training)
    path = run / "samples" / f"{name}.png"
    write_png(path, image_grid(fake))
    return path


def train(cfg: DCGANConfig) -> Path:
    """Train (or resume) a DCGAN; returns the run folder holding model.pt (the generator)."""
    _validate(cfg)
    device = common.pick_device(cfg.device)
    images, skipped = load_images(Path(cfg.data), cfg.progress)
    if skipped:
        print(f"skipped {skipped} unreadable image file(s) under {cfg.data}", file=sys.stderr)
    config = asdict(cfg)
    # max_steps only says where this invocation stops, so a run stopped by a
    # time budget can be continued with a larger one (or none).
    config.pop("max_steps")
    run = Path(cfg.out)
    state = common.prepare_run(run, config, resume=cfg.resume)
    if state is None:
        # A stale state from an earlier run must not be picked up by a later resume.
        (run / common.STATE).unlink(missing_ok=True)

    common.set_seed(cfg.seed)
    generator = Generator(nz=cfg.nz, ngf=cfg.ngf).to(device)
    discriminator = Discriminator(ndf=cfg.ndf).to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    criterion = nn.BCEWithLogitsLoss()
    # Its own generator, so the grid uses the same latents however training went.
    fixed_noise = torch.randn(cfg.sample_count, cfg.nz, generator=torch.Generator().manual_seed(cfg.seed)).to(device)

    steps_per_epoch = max(1, len(images) // cfg.batch_size)  # drop the ragged last batch: tiny batches upset BN
    batch = min(cfg.batch_size, len(images))
    total = cfg.epochs * steps_per_epoch
    stop = min(total, cfg.max_steps or total)

    step = 0
    history: list[dict[str, float]] = []
    epochs: list[dict[str, float]] = []
    if state is not None:
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        step, history, epochs = state["step"], state["history"], state["epochs"]
        common.restore_rng(state)

    keys = ("loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2")
    log_sums = dict.fromkeys(keys, 0.0)
    epoch_sums = dict.fromkeys(keys, 0.0)
    log_count = epoch_count = 0

    def checkpoint() -> None:
        common.save_state(run, {
            "step": step, "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "history": history, "epochs": epochs})

    def write_metrics(rate: float | None = None) -> None:
        metrics: dict[str, Any] = {
            "step": step, "steps": total, "stop": stop, "steps_per_epoch": steps_per_epoch,
            "epoch": step / steps_per_epoch, "images": len(images), "skipped_files": skipped,
            "history": history, "epochs": epochs}
        if history:
            metrics["final"] = history[-1]
        if rate is not None:
            metrics["steps_per_second"] = round(rate, 4)
        common.atomic_write_json(metrics, run / common.METRICS)

    generator.train()
    discriminator.train()
    start_step, start_time = step, time.perf_counter()
    perm, perm_epoch = np.arange(0), -1
    bar = StepProgress(total=stop, initial=step, desc="dcgan", enabled=cfg.progress)
    try:
        while step < stop:
            epoch, index = divmod(step, steps_per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = np.random.default_rng([cfg.seed, epoch]).permutation(len(images)), epoch
            rng = np.random.default_rng([cfg.seed, epoch, index])
            real = _batch(images, perm[index * batch:(index + 1) * batch], rng, cfg.flip).to(device)
            n = real.shape[0]
            ones = torch.ones(n, device=device)
            zeros = torch.zeros(n, device=device)

            # Discriminator: push D(real) up and D(G(z)) down.
            opt_d.zero_grad(set_to_none=True)
            out_real = discriminator(real)
            fake = generator(torch.randn(n, cfg.nz, device=device))
            out_fake = discriminator(fake.detach())
            loss_d = criterion(out_real, ones) + criterion(out_fake, zeros)
            loss_d.backward()
            opt_d.step()

            # Generator: the non-saturating loss, -log D(G(z)), as in the paper.
            opt_g.zero_grad(set_to_none=True)
            out_gen = discriminator(fake)
            loss_g = criterion(out_gen, ones)
            loss_g.backward()
            opt_g.step()

            step += 1
            values = {"loss_d": loss_d.item(), "loss_g": loss_g.item(),
                      "d_x": torch.sigmoid(out_real).mean().item(),
                      "d_g_z1": torch.sigmoid(out_fake).mean().item(),
                      "d_g_z2": torch.sigmoid(out_gen).mean().item()}
            for key, value in values.items():
                log_sums[key] += value
                epoch_sums[key] += value
            log_count += 1
            epoch_count += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == stop:
                entry = {"step": step, "epoch": epoch, **{k: v / log_count for k, v in log_sums.items()}}
                history.append(entry)
                bar.set_postfix(epoch=epoch, loss_d=f"{entry['loss_d']:.3f}", loss_g=f"{entry['loss_g']:.3f}",
                                d_x=f"{entry['d_x']:.2f}", d_g_z=f"{entry['d_g_z2']:.2f}")
                log_sums = dict.fromkeys(keys, 0.0)
                log_count = 0
            if step % steps_per_epoch == 0:
                # Means over the steps this invocation ran of the epoch (all of it unless resumed midway).
                epochs.append({"epoch": epoch, "step": step, **{k: v / epoch_count for k, v in epoch_sums.items()}})
                epoch_sums = dict.fromkeys(keys, 0.0)
                epoch_count = 0
                _save_samples(run, f"epoch_{epoch:03d}", generator, fixed_noise)
                write_metrics()
            if step % cfg.checkpoint_every == 0:
                checkpoint()
                write_metrics()
    except KeyboardInterrupt:
        bar.close()
        checkpoint()
        write_metrics()
        print(f"interrupted at step {step}; state saved in {run}; rerun the same command to resume",
              file=sys.stderr)
        raise
    bar.close()
    elapsed = time.perf_counter() - start_time
    rate = (step - start_step) / elapsed if step > start_step and elapsed > 0 else None

    checkpoint()
    write_metrics(rate)
    if step % steps_per_epoch:
        _save_samples(run, f"step_{step:06d}", generator, fixed_noise)
    provenance = {
        "data": str(cfg.data), "images": len(images), "skipped_files": skipped, "epochs": step / steps_per_epoch,
        "steps": step, "batch_size": batch, "lr": cfg.lr, "beta1": cfg.beta1, "nz": cfg.nz, "ngf": cfg.ngf,
        "ndf": cfg.ndf, "flip": cfg.flip, "seed": cfg.seed, "final_losses": history[-1] if history else {},
        **run_record(config, step, total, FINISHED if step >= total else MAX_STEPS),
    }
    common.save_artifact(run, "generator", {"name": "dcgan", "nz": cfg.nz, "ngf": cfg.ngf}, generator,
                         provenance=provenance, latent_size=cfg.nz, output_size=IMAGE_SIZE)
    return run
