"""Meta-learn a style network's initialisation over many styles (MAML applied to style transfer, as in MetaStyle).

`artforge train meta-style --data PHOTOS [--styles DIR] --out RUN` learns weights for
artforge.models.style_net.TransformerNet that are not a good stylizer for any one style but become one
after a few fine-tuning steps on a new style (`artforge adapt-style`, training/adapt_style.py).

One outer step (Finn et al. 2017, "Model-Agnostic Meta-Learning"; Zhang, Zhu & Zhu 2019, "MetaStyle"):

- draw a style (a task) from the pool: style images from --styles plus styles painted procedurally by
  artforge.zoo (painted families and photos rendered in art styles), as many as --procedural-styles;
- inner loop: starting from the current initialisation theta, take --inner-steps plain gradient steps
  of the perceptual loss of that style on content batches, with torch.func.functional_call, so that the
  adapted weights stay a function of theta;
- outer loop: the loss of the adapted weights on a fresh content batch (the query) is differentiated
  with respect to theta (through the inner steps with --second-order, or first-order MAML, which treats
  the inner gradients as constants) and Adam moves theta.

--inner-params norm adapts only the instance norms' scales and shifts in the inner loop (the outer
loop still moves every weight): cheaper inner steps, the conditional-instance-norm view of styles.

Every draw (style, content batches) comes from an RNG seeded with (seed, step), so a resumed run is
exactly the run that was not interrupted.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.func import functional_call
from tqdm import tqdm

from artforge.models.style_net import SIZE_MULTIPLE, TransformerNet
from artforge.training import common
from artforge.training.configs import INNER_PARAMS, META_STYLE_KIND, MetaStyleConfig, StyleConfig
from artforge.training.data import list_images, read_rgb, training_images
from artforge.training.losses import LossNetwork, PerceptualLoss, build_loss_network
from artforge.training.style import (
    RESIDUAL_BLOCKS,
    ContentSampler,
    _load_style,
    _to_tensor,
    check_network_and_loss,
    write_png,
)
from artforge.zoo.painting import PAINTED_STYLES, paint_style_image
from artforge.zoo.photos import CONTENT_PHOTOS

#: art styles whose renders of the content photos join the procedural pool. Pointillism stays out: it is
#: the family held out of meta-training, so that adapting to it (the zoo's adapted stylizer, the benchmark)
#: measures a style unlike any the initialisation saw.
META_ART_STYLES: tuple[str, ...] = ("oil", "watercolor", "cartoon", "pencil")
HELD_OUT_ART_STYLE = "pointillism"
#: one cycle of the procedural pool: the painted families, then each art style on each content photo
PROCEDURAL_FAMILIES: tuple[str, ...] = PAINTED_STYLES + tuple(
    f"{style}:{photo}" for style in META_ART_STYLES for photo in CONTENT_PHOTOS)
#: a style image whose shorter side is below this is refused (its texture would be upsampling blur)
MIN_STYLE_SIDE = 32
#: fields of StyleConfig that say where and how long a run goes, not which network and loss it trains
_RUN_FIELDS = {"style", "data", "out", "steps", "lr", "init", "sample_every", "checkpoint_every", "log_every",
               "seed", "device", "max_steps", "resume", "progress"}


def style_settings(cfg: MetaStyleConfig | dict[str, Any]) -> dict[str, Any]:
    """The network and loss options meta-training shares with StyleConfig (width, sizes, loss network, weights).

    By name: a loss option StyleConfig gains is carried by meta-training as soon as MetaStyleConfig has a
    field of the same name, and adaptation then trains with the same value.
    """
    values = asdict(cfg) if isinstance(cfg, MetaStyleConfig) else cfg
    shared = {f.name for f in fields(StyleConfig)} - _RUN_FIELDS
    return {name: values[name] for name in sorted(shared) if name in values}


def _validate(cfg: MetaStyleConfig) -> None:
    check_network_and_loss(cfg)
    for name in ("steps", "batch_size", "tasks_per_step", "inner_steps", "adapt_steps", "sample_every",
                 "checkpoint_every", "log_every"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(cfg, name)}")
    if cfg.procedural_styles < 0:
        raise ValueError(f"--procedural-styles must be 0 or more, got {cfg.procedural_styles}")
    if cfg.max_steps is not None and cfg.max_steps <= 0:
        raise ValueError(f"--max-steps must be a positive integer, got {cfg.max_steps}")
    for name in ("inner_lr", "outer_lr", "adapt_lr"):
        if not getattr(cfg, name) > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be greater than 0, got {getattr(cfg, name)}")
    if cfg.inner_params not in INNER_PARAMS:
        raise ValueError(f"--inner-params must be one of {', '.join(INNER_PARAMS)}, got {cfg.inner_params!r}")
    if not Path(cfg.data).is_dir():
        raise FileNotFoundError(f"content image folder not found: {cfg.data}")
    if cfg.styles is not None and not Path(cfg.styles).is_dir():
        raise FileNotFoundError(f"style image folder not found: {cfg.styles}")


def procedural_style(index: int, seed: int, size: int) -> tuple[str, np.ndarray]:
    """The index-th procedural style of the pool: (its name, RGB uint8 image whose shorter side is `size`)."""
    family = PROCEDURAL_FAMILIES[index % len(PROCEDURAL_FAMILIES)]
    # Seed 0 paints the zoo's own style images (zoo/styles); starting at 1 keeps those out of meta-training.
    paint_seed = seed * 1000 + 1 + index // len(PROCEDURAL_FAMILIES)
    image = paint_style_image(family, size=max(32, size), seed=paint_seed)
    if image.shape[0] != size:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if size < 32 else cv2.INTER_CUBIC)
    return f"{family}@{paint_seed}", image


class StylePool:
    """The styles meta-training draws from: image files, then procedural styles; each loaded on first use."""

    def __init__(self, files: list[Path], procedural: int, size: int, seed: int):
        self.files = files
        self.procedural = procedural
        self.size = size
        self.seed = seed
        self.skipped: set[str] = set()

    def __len__(self) -> int:
        return len(self.files) + self.procedural

    def image(self, index: int) -> tuple[str, np.ndarray | None]:
        """(name, image) of style `index`; the image is None for an unreadable or too small file."""
        if index >= len(self.files):
            return procedural_style(index - len(self.files), self.seed, self.size)
        path = self.files[index]
        try:
            image = read_rgb(path)
        except (ValueError, OSError, cv2.error):
            self.skipped.add(str(path))
            return str(path), None
        if min(image.shape[:2]) < MIN_STYLE_SIDE:
            self.skipped.add(str(path))
            return str(path), None
        return str(path), _load_style(path, self.size)


class StyleTasks:
    """One perceptual loss per style (its Gram targets computed once), drawn by (seed, step, task)."""

    def __init__(self, pool: StylePool, loss_net: LossNetwork, cfg: MetaStyleConfig, device: torch.device):
        self.pool = pool
        self.loss_net = loss_net
        self.weights = StyleConfig(style="", data="", out="", **style_settings(cfg)).loss_weight_values()
        self.device = device
        self.seed = cfg.seed
        self.criteria: dict[int, PerceptualLoss] = {}

    def draw(self, step: int, task: int) -> tuple[int, PerceptualLoss]:
        start = int(np.random.default_rng([self.seed, 1, step, task]).integers(len(self.pool)))
        # An unusable file passes the draw on to the next style, so every usable one is reachable.
        for offset in range(len(self.pool)):
            index = (start + offset) % len(self.pool)
            if index in self.criteria:
                return index, self.criteria[index]
            _, image = self.pool.image(index)
            if image is None:
                continue
            criterion = PerceptualLoss(self.loss_net, _to_tensor(image[None], torch.device("cpu")), self.weights)
            self.criteria[index] = criterion.to(self.device)
            return index, self.criteria[index]
        raise ValueError(f"none of the {len(self.pool.files)} style image(s) under the --styles folder could be "
                         f"used (unreadable, or shorter side under {MIN_STYLE_SIDE} px) and --procedural-styles is 0")


def adapted_names(net: TransformerNet, inner_params: str) -> list[str]:
    """Names of the parameters the inner loop adapts: all of them, or the instance norms' affine ones."""
    if inner_params == "all":
        return [name for name, _ in net.named_parameters()]
    return [f"{module_name}.{name}" for module_name, module in net.named_modules()
            if isinstance(module, torch.nn.InstanceNorm2d) for name, _ in module.named_parameters()]


def inner_loop(net: TransformerNet, criterion: PerceptualLoss, batches: list[torch.Tensor], names: list[str],
               lr: float, second_order: bool) -> tuple[dict[str, torch.Tensor], float]:
    """The parameters after one plain gradient step per batch, as functions of net's own parameters.

    Returns (all parameters, the loss before the first step). With second_order the steps' gradients
    keep their graph (full MAML); without it they are constants (first-order MAML), so the outer
    gradient is the query loss's gradient at the adapted weights.
    """
    params: dict[str, torch.Tensor] = dict(net.named_parameters())
    fast = {name: params[name] for name in names}
    first = float("nan")
    for k, content in enumerate(batches):
        losses = criterion(functional_call(net, {**params, **fast}, (content,)), criterion.content_target(content))
        if k == 0:
            first = losses["total"].item()
        grads = torch.autograd.grad(losses["total"], list(fast.values()), create_graph=second_order)
        fast = {name: p - lr * g for (name, p), g in zip(fast.items(), grads, strict=True)}
    return {**params, **fast}, first


def initial_network(cfg: MetaStyleConfig) -> TransformerNet:
    """The randomly initialised network meta-training starts from (the same for the same seed)."""
    common.set_seed(cfg.seed)
    return TransformerNet(width=cfg.width, residual_blocks=RESIDUAL_BLOCKS)


def _write_metrics(run: Path, history: list[dict[str, float]], step: int, stop: int, cfg: MetaStyleConfig,
                   pool: StylePool, sampler: ContentSampler, seconds_per_step: float | None) -> None:
    metrics: dict[str, Any] = {"step": step, "steps": cfg.steps, "stop": stop, "history": history,
                               "styles": len(pool), "skipped_style_files": len(pool.skipped),
                               "images": len(sampler.paths), "skipped_files": len(sampler.skipped)}
    if history:
        metrics["final"] = history[-1]
    if seconds_per_step is not None:
        metrics["seconds_per_step"] = round(seconds_per_step, 4)
    common.atomic_write_json(metrics, run / common.METRICS)


def _save_sample(run: Path, step: int, net: TransformerNet, content: np.ndarray, device: torch.device) -> None:
    """content | what the initialisation makes of it (no style of its own: about the content, re-rendered)."""
    net.eval()
    with torch.no_grad():
        out = net(_to_tensor(content[None], device)).clamp(0, 255).round().to(torch.uint8)
    net.train()
    gap = np.full((content.shape[0], 4, 3), 255, np.uint8)
    write_png(run / "samples" / f"step_{step:06d}.png",
              np.concatenate([content, gap, out[0].permute(1, 2, 0).cpu().numpy()], axis=1))


def train(cfg: MetaStyleConfig) -> Path:
    """Meta-train (or resume) a style-network initialisation; returns the run folder holding model.pt."""
    _validate(cfg)
    device = common.pick_device(cfg.device)
    paths = training_images(cfg.data)
    style_files = list_images(Path(cfg.styles)) if cfg.styles is not None else []
    pool = StylePool(style_files, cfg.procedural_styles, cfg.style_size, cfg.seed)
    if not len(pool):
        raise ValueError(f"no styles to meta-train on: {cfg.styles or 'no --styles folder'} holds no image files "
                         "and --procedural-styles is 0")
    loss_net = build_loss_network(cfg.loss_network, cfg.loss_weights)
    tasks = StyleTasks(pool, loss_net, cfg, device)

    config = asdict(cfg)
    weights = tasks.weights
    config.update(content_weight=weights.content, style_weight=weights.style, tv_weight=weights.tv)
    config.pop("max_steps")
    run = Path(cfg.out)
    state = common.prepare_run(run, config, resume=cfg.resume)
    if state is None:
        (run / common.STATE).unlink(missing_ok=True)

    net = initial_network(cfg).to(device)
    outer = torch.optim.Adam(net.parameters(), lr=cfg.outer_lr)
    names = adapted_names(net, cfg.inner_params)
    step = 0
    history: list[dict[str, float]] = []
    skipped: set[str] = set()
    if state is not None:
        net.load_state_dict(state["net"])
        outer.load_state_dict(state["optimizer"])
        step, history, skipped = state["step"], state["history"], set(state["skipped"])
        pool.skipped.update(state.get("skipped_styles", ()))
        common.restore_rng(state)
    sampler = ContentSampler(paths, cfg.image_size, cfg.seed, skipped)
    fixed_content = sampler.fixed()
    stop = min(cfg.steps, cfg.max_steps or cfg.steps)
    batches_per_task = cfg.inner_steps + 1

    def checkpoint() -> None:
        common.save_state(run, {"step": step, "net": net.state_dict(), "optimizer": outer.state_dict(),
                                "history": history, "skipped": sorted(sampler.skipped),
                                "skipped_styles": sorted(pool.skipped)})

    sums = {"query": 0.0, "support": 0.0, "content": 0.0, "style": 0.0}
    count = 0
    start_step, start_time = step, time.perf_counter()
    net.train()
    bar = tqdm(total=stop, initial=step, desc="meta-style", unit="step", disable=not cfg.progress,
               dynamic_ncols=True)
    try:
        while step < stop:
            outer.zero_grad(set_to_none=True)
            for task in range(cfg.tasks_per_step):
                _, criterion = tasks.draw(step, task)
                first = (step * cfg.tasks_per_step + task) * batches_per_task
                batches = [_to_tensor(sampler.batch(first + k, cfg.batch_size), device)
                           for k in range(batches_per_task)]
                params, support = inner_loop(net, criterion, batches[:-1], names, cfg.inner_lr, cfg.second_order)
                query = batches[-1]
                losses = criterion(functional_call(net, params, (query,)), criterion.content_target(query))
                (losses["total"] / cfg.tasks_per_step).backward()
                sums["query"] += losses["total"].item()
                sums["support"] += support
                sums["content"] += losses["content"].item()
                sums["style"] += losses["style"].item()
                count += 1
            outer.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == stop:
                entry = {"step": step, **{k: v / count for k, v in sums.items()}}
                history.append(entry)
                bar.set_postfix(query=f"{entry['query']:.3g}", support=f"{entry['support']:.3g}")
                if not cfg.progress:
                    print(f"meta-style step {step}/{stop}: loss after adaptation {entry['query']:.4g}, "
                          f"before {entry['support']:.4g}", file=sys.stderr, flush=True)
                sums = dict.fromkeys(sums, 0.0)
                count = 0
            if step % cfg.sample_every == 0:
                _save_sample(run, step, net, fixed_content, device)
            if step % cfg.checkpoint_every == 0:
                checkpoint()
                _write_metrics(run, history, step, stop, cfg, pool, sampler, None)
    except KeyboardInterrupt:
        bar.close()
        checkpoint()
        _write_metrics(run, history, step, stop, cfg, pool, sampler, None)
        print(f"interrupted at step {step}; state saved in {run}; rerun the same command to resume",
              file=sys.stderr)
        raise
    bar.close()
    elapsed = time.perf_counter() - start_time
    per_step = elapsed / (step - start_step) if step > start_step else None

    checkpoint()
    _write_metrics(run, history, step, stop, cfg, pool, sampler, per_step)
    if step % cfg.sample_every:
        _save_sample(run, step, net, fixed_content, device)
    for what, skipped_set, folder in (("image", sampler.skipped, cfg.data), ("style image", pool.skipped, cfg.styles)):
        if skipped_set:
            print(f"skipped {len(skipped_set)} unusable {what} file(s) under {folder}", file=sys.stderr)
    provenance = {
        "data": str(cfg.data), "images": len(paths), "styles_folder": cfg.styles,
        "style_files": len(style_files), "skipped_style_files": len(pool.skipped),
        "procedural_styles": cfg.procedural_styles,
        "held_out_family": HELD_OUT_ART_STYLE, "steps": step, "seed": cfg.seed,
        "meta": {"tasks_per_step": cfg.tasks_per_step, "inner_steps": cfg.inner_steps, "inner_lr": cfg.inner_lr,
                 "outer_lr": cfg.outer_lr, "inner_params": cfg.inner_params, "second_order": cfg.second_order},
        "style_settings": {**style_settings(cfg), "content_weight": weights.content, "style_weight": weights.style,
                           "tv_weight": weights.tv},
        "adapt": {"steps": cfg.adapt_steps, "lr": cfg.adapt_lr},
        "loss_layers": {"style": list(loss_net.style_layers), "content": loss_net.content_layer},
        "final_losses": history[-1] if history else {},
    }
    common.save_artifact(run, META_STYLE_KIND, {"name": "transformer_net", "width": cfg.width,
                                                "residual_blocks": RESIDUAL_BLOCKS},
                         net, provenance=provenance, size_multiple=SIZE_MULTIPLE)
    return run
