"""Train a feed-forward style network (Johnson et al.) for one style image.

`artforge train style --style IMG --data DIR --out RUN` trains
artforge.models.style_net.TransformerNet with a perceptual loss through a
frozen pretrained loss network (see artforge.training.losses): content loss
at one layer, Gram-matrix style loss at several, and total variation.

Content images are random square crops of the images under DIR, resized to
--image-size. Every training step draws its batch from an RNG seeded with
(seed, step), so a resumed run sees exactly the batches an uninterrupted run
would have seen, without saving any data-loader state.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from artforge.models.style_net import SIZE_MULTIPLE, TransformerNet
from artforge.training import common
from artforge.training.configs import (
    LOSS_NETWORKS,
    META_STYLE_KIND,
    SMOOTHINGS,
    STYLE_MATCHES,
    LossOptions,
    StyleConfig,
)
from artforge.training.data import read_rgb, training_images
from artforge.training.losses import PerceptualLoss, build_loss_network
from artforge.training.progress import StepProgress
from artforge.training.run_record import FINISHED, MAX_STEPS, run_record

RESIDUAL_BLOCKS = 5


def check_network_and_loss(cfg: Any) -> None:
    """The settings a style network and its loss share across trainers (StyleConfig, MetaStyleConfig)."""
    if cfg.width <= 0:
        raise ValueError(f"--width must be greater than 0 (1.0 is the full network, 0.5 half), got {cfg.width}")
    if cfg.image_size < 16 or cfg.image_size % SIZE_MULTIPLE:
        raise ValueError(f"--image-size must be a multiple of {SIZE_MULTIPLE} and at least 16, got {cfg.image_size}")
    if cfg.style_size < 16:
        raise ValueError(f"--style-size must be at least 16 pixels, got {cfg.style_size}")
    for name in ("content_weight", "style_weight", "tv_weight"):
        value = getattr(cfg, name)
        if value is not None and value < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be 0 or more, got {value}")
    if cfg.loss_network not in LOSS_NETWORKS:
        raise ValueError(f"--loss-network must be one of {', '.join(LOSS_NETWORKS)}, got {cfg.loss_network!r}")


def _validate(cfg: StyleConfig) -> None:
    check_network_and_loss(cfg)
    for name in ("steps", "batch_size", "sample_every", "checkpoint_every", "log_every"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(cfg, name)}")
    if cfg.max_steps is not None and cfg.max_steps <= 0:
        raise ValueError(f"--max-steps must be a positive integer, got {cfg.max_steps}")
    if cfg.lr <= 0:
        raise ValueError(f"--lr must be greater than 0, got {cfg.lr}")
    if cfg.smoothing not in SMOOTHINGS:
        raise ValueError(f"--smoothing must be one of {', '.join(SMOOTHINGS)}, got {cfg.smoothing!r}")
    if cfg.style_match not in STYLE_MATCHES:
        raise ValueError(f"--style-match must be one of {', '.join(STYLE_MATCHES)}, got {cfg.style_match!r}")
    if cfg.temperature <= 0:
        raise ValueError(f"--temperature must be greater than 0, got {cfg.temperature}")
    if not cfg.style_scales or any(s <= 0 for s in cfg.style_scales):
        raise ValueError(f"--style-scales must be one or more numbers greater than 0, got {cfg.style_scales}")
    if min(cfg.style_scales) * cfg.style_size < 16:
        raise ValueError(f"--style-scales times --style-size must be at least 16 pixels; "
                         f"{min(cfg.style_scales)} x {cfg.style_size} is not")
    if not Path(cfg.style).is_file():
        raise FileNotFoundError(f"style image not found: {cfg.style}")
    if not Path(cfg.data).is_dir():
        raise FileNotFoundError(f"content image folder not found: {cfg.data}")
    if cfg.init is not None and not Path(cfg.init).exists():
        raise FileNotFoundError(f"--init {cfg.init} does not exist; pass a meta-style or style run folder "
                                "(or its model.pt)")


def init_weights(path: str | Path, width: float) -> dict[str, torch.Tensor]:
    """The TransformerNet weights a run starts from: a meta-style initialisation's or a style run's."""
    try:
        artifact = common.load_artifact(Path(path))
    except (FileNotFoundError, ValueError):
        raise
    except Exception as exc:  # torch.load / unpickling failures have many types; all mean "unreadable file"
        raise ValueError(f"--init {path} cannot be read as a torch checkpoint ({type(exc).__name__})") from None
    kind, arch = artifact["kind"], artifact["arch"]
    if kind not in (META_STYLE_KIND, "stylizer") or arch.get("name") != "transformer_net":
        raise ValueError(f"{path} holds a {kind} ({arch.get('name')}); an initialisation must be a meta-style "
                         "run (artforge train meta-style) or a style run")
    if arch.get("width") != width or arch.get("residual_blocks", RESIDUAL_BLOCKS) != RESIDUAL_BLOCKS:
        raise ValueError(f"{path} holds a network of width {arch.get('width')}; this run's --width is {width}: "
                         "they must match")
    return artifact["state_dict"]


def _load_style(path: Path, size: int) -> np.ndarray:
    """The style image, resized so that its shorter side is `size`."""
    image = read_rgb(path)
    h, w = image.shape[:2]
    scale = size / min(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, new, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def _square_crop(image: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
    """A square crop resized to size x size: random position and scale, or the centre when rng is None."""
    h, w = image.shape[:2]
    side = min(h, w)
    if rng is None:
        crop, y, x = side, (h - side) // 2, (w - side) // 2
    else:
        # Scale jitter shows the network its content at several sizes, which
        # matters when it later stylizes images larger than the training crops.
        crop = max(1, int(side * rng.uniform(0.6, 1.0)))
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    patch = image[y:y + crop, x:x + crop]
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if crop > size else cv2.INTER_LINEAR)


class ContentSampler:
    """Random content crops from an image folder; unreadable files are skipped and counted."""

    def __init__(self, paths: list[Path], size: int, seed: int, skipped: set[str] | None = None):
        self.paths = paths
        self.size = size
        self.seed = seed
        self.skipped: set[str] = set(skipped or ())

    def _read(self, path: Path) -> np.ndarray | None:
        if str(path) in self.skipped:
            return None
        try:
            return read_rgb(path)
        except (ValueError, OSError, cv2.error):
            self.skipped.add(str(path))
            return None

    def _check_any_left(self) -> None:
        if len(self.skipped) >= len(self.paths):
            raise ValueError(f"none of the {len(self.paths)} image file(s) found could be decoded")

    def batch(self, step: int, batch_size: int) -> np.ndarray:
        """uint8 [N, size, size, 3] for this step (the same for the same seed and step)."""
        rng = np.random.default_rng([self.seed, step])
        out: list[np.ndarray] = []
        while len(out) < batch_size:
            image = self._read(self.paths[int(rng.integers(len(self.paths)))])
            if image is None:
                self._check_any_left()
                continue
            out.append(_square_crop(image, self.size, rng))
        return np.stack(out)

    def fixed(self) -> np.ndarray:
        """A centre crop of the first readable image, for comparable samples across training."""
        for path in self.paths:
            image = self._read(path)
            if image is not None:
                return _square_crop(image, self.size, None)
        self._check_any_left()
        raise AssertionError("unreachable")


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().to(device)


def _to_uint8(batch: torch.Tensor) -> np.ndarray:
    return batch.detach().clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG, atomically."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV could not encode {path}")
    common.atomic_write_bytes(encoded.tobytes(), Path(path))


def _save_sample(run: Path, step: int, net: TransformerNet, content: np.ndarray, device: torch.device) -> Path:
    was_training = net.training
    net.eval()
    with torch.no_grad():
        stylized = _to_uint8(net(_to_tensor(content[None], device)))[0]
    net.train(was_training)
    gap = np.full((content.shape[0], 4, 3), 255, np.uint8)
    path = run / "samples" / f"step_{step:06d}.png"
    write_png(path, np.concatenate([content, gap, stylized], axis=1))
    return path


def _write_metrics(run: Path, history: list[dict[str, float]], step: int, stop: int, cfg: StyleConfig,
                   sampler: ContentSampler, steps_per_second: float | None) -> None:
    metrics: dict[str, Any] = {"step": step, "steps": cfg.steps, "stop": stop, "history": history,
                               "skipped_files": len(sampler.skipped), "images": len(sampler.paths)}
    if history:
        metrics["final"] = history[-1]
    if steps_per_second is not None:
        metrics["steps_per_second"] = round(steps_per_second, 4)
    common.atomic_write_json(metrics, run / common.METRICS)


def _start_at_style_colour(net: TransformerNet, style: np.ndarray) -> None:
    """Start the output at the style image's mean colour instead of black.

    The last convolution's outputs start within a few levels of 0 on the
    0..255 scale, and Adam moves its bias ~lr per step, so a fresh network
    spends its first few hundred steps climbing out of black: a 200-step run
    of the zoo's recipe still looks black, which is most of a user's short
    run. A resumed run replaces these weights with its saved ones."""
    last: torch.nn.Conv2d = net.decoder[-1].conv  # type: ignore[assignment]  # nn.Module's __getattr__ is untyped
    assert last.bias is not None, "the output convolution has a bias"
    with torch.no_grad():
        last.bias.copy_(torch.from_numpy(style.reshape(-1, 3).mean(0)).to(last.bias))


def train(cfg: StyleConfig) -> Path:
    """Train (or resume) a style network; returns the run folder holding model.pt."""
    _validate(cfg)
    device = common.pick_device(cfg.device)
    paths = training_images(cfg.data)
    weights = cfg.loss_weight_values()
    # Loss network and style image first: a mistake in either should not
    # leave a half-made run folder behind.
    loss_net = build_loss_network(cfg.loss_network, cfg.loss_weights, cfg.style_layers, cfg.content_layer)
    # Smallest first: the loss takes each layer's softmax temperature from the largest.
    sizes = sorted({max(16, round(cfg.style_size * scale)) for scale in cfg.style_scales})
    try:
        style_images = [_load_style(Path(cfg.style), size) for size in sizes]
    except ValueError:
        raise ValueError(f"cannot decode the style image {cfg.style}; use a JPEG/PNG/BMP/WebP/TIFF file") from None
    options = cfg.loss_options()
    cpu = torch.device("cpu")
    criterion = PerceptualLoss(loss_net, [_to_tensor(image[None], cpu) for image in style_images], weights,
                               options).to(device)
    init = init_weights(cfg.init, cfg.width) if cfg.init is not None else None

    config = asdict(cfg)
    # Lists, as the saved config.json holds them, so that a resume compares like with like.
    config.update(content_weight=weights.content, style_weight=weights.style, tv_weight=weights.tv,
                  style_scales=list(cfg.style_scales), style_layers=list(loss_net.style_layers),
                  content_layer=loss_net.content_layer)
    # max_steps only says where this invocation stops, so a run stopped by a
    # time budget can be continued with a larger one (or none).
    config.pop("max_steps")
    if cfg.style_match == LossOptions.style_match:
        # Runs from before --style-match have no such setting, and used this default: they still resume.
        config.pop("style_match")
    run = Path(cfg.out)
    state = common.prepare_run(run, config, resume=cfg.resume)
    if state is None:
        # A stale state from an earlier run must not be picked up by a later resume.
        (run / common.STATE).unlink(missing_ok=True)

    common.set_seed(cfg.seed)
    net = TransformerNet(width=cfg.width, residual_blocks=RESIDUAL_BLOCKS)
    if state is None and init is not None:
        net.load_state_dict(init)
    else:
        _start_at_style_colour(net, style_images[-1])
    net = net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)

    step = 0
    history: list[dict[str, float]] = []
    skipped: set[str] = set()
    if state is not None:
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        step, history, skipped = state["step"], state["history"], set(state["skipped"])
        common.restore_rng(state)
    sampler = ContentSampler(paths, cfg.image_size, cfg.seed, skipped)
    fixed_content = sampler.fixed()
    stop = min(cfg.steps, cfg.max_steps or cfg.steps)

    def checkpoint() -> None:
        common.save_state(run, {"step": step, "net": net.state_dict(), "optimizer": optimizer.state_dict(),
                                "history": history, "skipped": sorted(sampler.skipped)})

    sums = {"total": 0.0, "content": 0.0, "style": 0.0, "tv": 0.0}
    count = 0
    start_step, start_time = step, time.perf_counter()
    net.train()
    bar = StepProgress(total=stop, initial=step, desc="style", enabled=cfg.progress)
    try:
        while step < stop:
            content = _to_tensor(sampler.batch(step, cfg.batch_size), device)
            target = criterion.content_target(content)
            losses = criterion(net(content), target)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            step += 1
            for key in sums:
                sums[key] += losses[key].item()
            count += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == stop:
                entry = {"step": step, **{k: v / count for k, v in sums.items()}}
                history.append(entry)
                bar.set_postfix(total=f"{entry['total']:.3g}", content=f"{entry['content']:.3g}",
                                style=f"{entry['style']:.3g}", tv=f"{entry['tv']:.3g}")
                sums = dict.fromkeys(sums, 0.0)
                count = 0
            if step % cfg.sample_every == 0:
                _save_sample(run, step, net, fixed_content, device)
            if step % cfg.checkpoint_every == 0:
                checkpoint()
                _write_metrics(run, history, step, stop, cfg, sampler, None)
    except KeyboardInterrupt:
        bar.close()
        checkpoint()
        _write_metrics(run, history, step, stop, cfg, sampler, None)
        print(f"interrupted at step {step}; state saved in {run}; rerun the same command to resume",
              file=sys.stderr)
        raise
    bar.close()
    elapsed = time.perf_counter() - start_time
    rate = (step - start_step) / elapsed if step > start_step and elapsed > 0 else None

    checkpoint()
    _write_metrics(run, history, step, stop, cfg, sampler, rate)
    if step % cfg.sample_every:
        _save_sample(run, step, net, fixed_content, device)
    if sampler.skipped:
        print(f"skipped {len(sampler.skipped)} unreadable image file(s) under {cfg.data}", file=sys.stderr)
    provenance = {
        "style_image": str(cfg.style), "data": str(cfg.data), "images": len(paths),
        "skipped_files": len(sampler.skipped), "steps": step, "batch_size": cfg.batch_size,
        "image_size": cfg.image_size, "style_size": cfg.style_size, "lr": cfg.lr,
        "weights": {"content": weights.content, "style": weights.style, "tv": weights.tv},
        "loss_network": cfg.loss_network,
        "loss_layers": {"style": list(loss_net.style_layers), "content": loss_net.content_layer},
        "loss_options": {"smoothing": options.smoothing, "temperature": options.temperature,
                         "style_match": options.style_match, "style_sizes": sizes},
        "final_losses": history[-1] if history else {}, "seed": cfg.seed,
        **run_record(config, step, cfg.steps, FINISHED if step >= cfg.steps else MAX_STEPS),
    }
    if cfg.init is not None:
        provenance["init"] = str(cfg.init)
    common.save_artifact(run, "stylizer", {"name": "transformer_net", "width": cfg.width,
                                           "residual_blocks": RESIDUAL_BLOCKS},
                         net, provenance=provenance, size_multiple=SIZE_MULTIPLE)
    return run
