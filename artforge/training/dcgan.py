"""Train a DCGAN (Radford et al.) on a folder of images.

`artforge train dcgan --data DIR --out RUN` trains
artforge.models.dcgan.Generator / Discriminator with the paper's recipe:
binary cross-entropy (on the discriminator's logits), Adam with lr 2e-4 and
beta1 0.5, a 100-d Gaussian latent, 64x64 RGB images scaled to [-1, 1].
Options add the practice that keeps a DCGAN from collapsing on small data:
spectral normalisation in D, the hinge loss, two time-scale learning rates,
an exponential moving average of G's weights (what is then exported) and
differentiable augmentation; `--eval-every` measures the Fréchet distance,
precision/recall and near-duplicate rate (artforge.quality.gan_metrics)
into metrics.json and the model card.

The images are decoded once, up front, and kept at 64 pixels on the shorter
side (~14 KB each): DCGAN data sets are small tiles and decoding them again
every epoch would cost more than the training step on a small CPU. Epoch e
shuffles with an RNG seeded by (seed, e) and batch b crops with (seed, e, b),
so a resumed run replays exactly the batches an uninterrupted run would have
seen, from nothing more than the step counter.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from artforge.models.dcgan import Discriminator, Generator
from artforge.training import common
from artforge.training.configs import DCGAN_LOSSES, DCGANConfig
from artforge.training.data import read_rgb, training_images
from artforge.training.diffaugment import diff_augment, parse_policy
from artforge.training.progress import StepProgress
from artforge.training.run_record import FINISHED, MAX_STEPS, run_record

IMAGE_SIZE = 64
# Keep a little of a non-square image's longer side so that random crops
# move along it, without storing whole panoramas.
MAX_LONG_SIDE = 80
# Batches of fresh latents that re-estimate the EMA generator's batch-norm
# statistics: its weights are an average, so the live G's running statistics do not fit them.
BN_RECALIBRATION_BATCHES = 8


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
    if cfg.loss not in DCGAN_LOSSES:
        raise ValueError(f"--loss must be one of {', '.join(DCGAN_LOSSES)}, got {cfg.loss!r}")
    if cfg.lr_d is not None and cfg.lr_d <= 0:
        raise ValueError(f"--lr-d must be greater than 0, got {cfg.lr_d}")
    if not 0 <= cfg.ema < 1:
        raise ValueError(f"--ema must be in [0, 1) (0 turns it off), got {cfg.ema}")
    parse_policy(cfg.augment)
    if cfg.eval_every < 0:
        raise ValueError(f"--eval-every must be 0 (never) or a positive number of epochs, got {cfg.eval_every}")
    if cfg.eval_samples < 8:
        raise ValueError(f"--eval-samples must be at least 8, got {cfg.eval_samples}")
    if not Path(cfg.data).is_dir():
        raise FileNotFoundError(f"image folder not found: {cfg.data}")
    if cfg.eval_data is not None and not Path(cfg.eval_data).is_dir():
        raise FileNotFoundError(f"--eval-data folder not found: {cfg.eval_data}")


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
    paths = training_images(folder)
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


def center_tiles(images: list[np.ndarray]) -> np.ndarray:
    """The centre 64x64 of each (already shrunk) image, as uint8 NHWC."""
    out = np.empty((len(images), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for k, image in enumerate(images):
        h, w = image.shape[:2]
        y, x = (h - IMAGE_SIZE) // 2, (w - IMAGE_SIZE) // 2
        out[k] = image[y:y + IMAGE_SIZE, x:x + IMAGE_SIZE]
    return out


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, loss: str) -> torch.Tensor:
    """D's loss on its logits for real and generated images."""
    if loss == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()  # BCE with targets 1 and 0


def generator_loss(fake: torch.Tensor, loss: str) -> torch.Tensor:
    """G's loss on D's logits for its images: -D(G(z)) (hinge) or the non-saturating -log sigmoid D(G(z))."""
    return -fake.mean() if loss == "hinge" else F.softplus(-fake).mean()


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for averaged, live in zip(ema.parameters(), model.parameters(), strict=True):
        averaged.lerp_(live, 1 - decay)


@torch.no_grad()
def recalibrate_batch_norm(generator: Generator, nz: int, batch: int, seed: int) -> None:
    """Re-estimate G's batch-norm running statistics from fresh latents (its own RNG: training's is untouched)."""
    draw = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    norms = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches below
    generator.train()
    for _ in range(BN_RECALIBRATION_BATCHES):
        generator(torch.randn(batch, nz, generator=draw).to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    generator.eval()


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


class _Reference:
    """Real images that measurements compare against, embedded once per run."""

    def __init__(self, real: np.ndarray, description: str) -> None:
        from artforge.quality.gan_metrics import FeatureExtractor, RealReference  # loads the feature network
        self.reference = RealReference(FeatureExtractor(), real)
        self.description = description

    def score(self, fake: torch.Tensor) -> dict[str, Any]:
        return self.reference.score(fake)


def _reference(cfg: DCGANConfig, images: list[np.ndarray]) -> _Reference:
    if cfg.eval_data is not None:
        held_out, _ = load_images(Path(cfg.eval_data), cfg.progress)
        pick = np.random.default_rng([cfg.seed, 1]).permutation(len(held_out))[:cfg.eval_samples]
        return _Reference(center_tiles([held_out[i] for i in pick]), f"{len(pick)} images of {cfg.eval_data}")
    pick = np.random.default_rng([cfg.seed, 1]).permutation(len(images))[:cfg.eval_samples]
    return _Reference(center_tiles([images[i] for i in pick]), f"{len(pick)} training images (no --eval-data)")


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
    discriminator = Discriminator(ndf=cfg.ndf, spectral_norm=cfg.spectral_norm).to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr_d or cfg.lr, betas=(cfg.beta1, 0.999))
    ema = copy.deepcopy(generator) if cfg.ema else None
    policy = parse_policy(cfg.augment)
    # Its own generator, so the grid uses the same latents however training went.
    fixed_noise = torch.randn(cfg.sample_count, cfg.nz, generator=torch.Generator().manual_seed(cfg.seed)).to(device)

    steps_per_epoch = max(1, len(images) // cfg.batch_size)  # drop the ragged last batch: tiny batches upset BN
    batch = min(cfg.batch_size, len(images))
    total = cfg.epochs * steps_per_epoch
    stop = min(total, cfg.max_steps or total)
    reference: _Reference | None = None  # made on first use: a finished run that is reopened needs none

    step = 0
    history: list[dict[str, float]] = []
    epochs: list[dict[str, float]] = []
    quality: list[dict[str, Any]] = []
    if state is not None:
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        step, history, epochs = state["step"], state["history"], state["epochs"]
        quality = state.get("quality", [])
        common.restore_rng(state)

    def shipped() -> Generator:
        """The generator that samples, measurements and export use: the EMA one (statistics re-estimated) if on."""
        if ema is None:
            return generator
        recalibrate_batch_norm(ema, cfg.nz, batch, cfg.seed)
        return ema

    def measure(epoch: float) -> None:
        nonlocal reference
        if reference is None:
            reference = _reference(cfg, images)
        model = shipped()
        noise = torch.randn(cfg.eval_samples, cfg.nz, generator=torch.Generator().manual_seed(cfg.seed + 1))
        was_training = model.training
        model.eval()
        with torch.no_grad():
            fake = torch.cat([model(z.to(device)).cpu() for z in noise.split(64)])
        model.train(was_training)
        scores = {"step": step, "epoch": round(epoch, 3), **reference.score(fake), "reference": reference.description}
        quality.append(scores)
        bar.write(f"step {step}: FD {scores['fd']:.2f}, precision {scores['precision']:.2f}, "
                  f"recall {scores['recall']:.2f}, near-duplicates {scores['duplicates']:.3f}")

    keys = ("loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2")
    log_sums = dict.fromkeys(keys, 0.0)
    epoch_sums = dict.fromkeys(keys, 0.0)
    log_count = epoch_count = 0

    def checkpoint() -> None:
        common.save_state(run, {
            "step": step, "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "history": history, "epochs": epochs,
            "quality": quality, **({"ema": ema.state_dict()} if ema is not None else {})})

    def write_metrics(rate: float | None = None) -> None:
        metrics: dict[str, Any] = {
            "step": step, "steps": total, "stop": stop, "steps_per_epoch": steps_per_epoch,
            "epoch": step / steps_per_epoch, "images": len(images), "skipped_files": skipped,
            "history": history, "epochs": epochs}
        if history:
            metrics["final"] = history[-1]
        if quality:
            metrics["quality"] = quality
            metrics["reference"] = quality[-1].get("reference")
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

            # Discriminator: push D(real) up and D(G(z)) down.
            opt_d.zero_grad(set_to_none=True)
            out_real = discriminator(diff_augment(real, policy))
            fake = generator(torch.randn(n, cfg.nz, device=device))
            out_fake = discriminator(diff_augment(fake.detach(), policy))
            loss_d = discriminator_loss(out_real, out_fake, cfg.loss)
            loss_d.backward()
            opt_d.step()

            # Generator: the non-saturating loss, -log D(G(z)), as in the paper (or the hinge's -D(G(z))).
            opt_g.zero_grad(set_to_none=True)
            out_gen = discriminator(diff_augment(fake, policy))
            loss_g = generator_loss(out_gen, cfg.loss)
            loss_g.backward()
            opt_g.step()
            if ema is not None:
                # Warm-up: a short average early on, so the initial weights fade out quickly.
                update_ema(ema, generator, min(cfg.ema, (1 + step) / (10 + step)))

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
                _save_samples(run, f"epoch_{epoch:03d}", shipped(), fixed_noise)
                if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0 and step < stop:
                    measure(epoch + 1)
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

    if cfg.eval_every and (not quality or quality[-1]["step"] != step):
        measure(step / steps_per_epoch)
    checkpoint()
    write_metrics(rate)
    final_generator = shipped()
    if step % steps_per_epoch:
        _save_samples(run, f"step_{step:06d}", final_generator, fixed_noise)
    provenance = {
        "data": str(cfg.data), "images": len(images), "skipped_files": skipped, "epochs": step / steps_per_epoch,
        "steps": step, "batch_size": batch, "lr": cfg.lr, "beta1": cfg.beta1, "nz": cfg.nz, "ngf": cfg.ngf,
        "ndf": cfg.ndf, "flip": cfg.flip, "seed": cfg.seed, "final_losses": history[-1] if history else {},
        "loss": cfg.loss, "spectral_norm": cfg.spectral_norm, "lr_d": cfg.lr_d or cfg.lr, "ema": cfg.ema,
        "augment": ",".join(policy) or "none",
        **run_record(config, step, total, FINISHED if step >= total else MAX_STEPS),
    }
    if quality:
        provenance["quality"] = quality[-1]
    common.save_artifact(run, "generator", {"name": "dcgan", "nz": cfg.nz, "ngf": cfg.ngf}, final_generator,
                         provenance=provenance, latent_size=cfg.nz, output_size=IMAGE_SIZE)
    return run
