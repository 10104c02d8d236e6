"""Adapt a meta-learned initialisation to one new style: a servable style network in minutes.

`artforge adapt-style STYLE_IMAGE --init META_RUN --out RUN` is an ordinary style run
(training/style.py) that starts from the initialisation of `artforge train meta-style` instead of
random weights, with that meta-training's network and loss settings and --steps steps (the
initialisation's measured default). RUN is then a style run like any other: `artforge export RUN`
makes a stylizer of it. adapt_to_repository() does both, the one-shot form, with a time estimate
measured on this machine before it starts.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from artforge.cli.args import DEFAULT_ZOO
from artforge.errors import InvalidInputError, NotFoundError, WrongKindError
from artforge.training import common, style
from artforge.training.configs import META_STYLE_KIND, AdaptStyleConfig, StyleConfig
from artforge.training.data import read_rgb
from artforge.training.meta_style import MIN_STYLE_SIDE

#: the meta-learned initialisation the zoo ships (built by `artforge zoo build --only meta_style`)
SHIPPED_INIT = DEFAULT_ZOO / "checkpoints" / "meta_style.pt"
#: content photos the project ships, for adapting without --data
SHIPPED_PHOTOS = DEFAULT_ZOO / "samples"
#: what an export with its parity check takes on a 2-core CPU, for the estimate printed up front
EXPORT_SECONDS = 20


def machine() -> str:
    """The machine a run took its time on, as a model card says it."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        name += f", {torch.cuda.get_device_name(0)}"
    return f"{name}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads"


def read_init(path: Path) -> dict[str, Any]:
    """The meta-style initialisation artifact at `path` (a run folder or its model.pt), checked."""
    path = Path(path)
    if not path.exists():
        hint = ("build it with `artforge zoo build --only meta_style`" if path == SHIPPED_INIT
                else "train one with `artforge train meta-style`")
        raise NotFoundError(f"no meta-learned initialisation at {path}; {hint} or pass --init RUN")
    try:
        artifact = common.load_artifact(path)
    except Exception as exc:  # torch.load / unpickling failures have many types; all mean "unreadable file"
        raise InvalidInputError(f"--init {path} cannot be read as an artforge training artifact "
                                f"({type(exc).__name__})") from None
    if artifact["kind"] != META_STYLE_KIND:
        raise WrongKindError(f"--init {path} holds a {artifact['kind']}, not a meta-learned style initialisation; "
                             "pass the --out folder of `artforge train meta-style`")
    return artifact


def check_style_image(path: Path) -> None:
    """One clear error for a missing, undecodable or too small style image."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"style image not found: {path}")
    try:
        image = read_rgb(path)
    except ValueError:
        raise InvalidInputError(f"cannot decode the style image {path}; use a JPEG/PNG/BMP/WebP/TIFF file") from None
    h, w = image.shape[:2]
    if min(h, w) < MIN_STYLE_SIDE:
        raise InvalidInputError(f"the style image {path} is {w}x{h} pixels; its shorter side must be at least "
                                f"{MIN_STYLE_SIDE} pixels to carry a texture")


def style_config(cfg: AdaptStyleConfig) -> StyleConfig:
    """The ordinary style run an adaptation is: the initialisation's settings, this style, these steps."""
    init = Path(cfg.init) if cfg.init is not None else SHIPPED_INIT
    artifact = read_init(init)
    check_style_image(Path(cfg.style))
    provenance = artifact.get("provenance") or {}
    adapt = provenance.get("adapt", {})
    steps = cfg.steps if cfg.steps is not None else int(adapt.get("steps", 200))
    if steps < 1:
        raise InvalidInputError(f"--steps must be at least 1, got {steps}")
    lr = cfg.lr if cfg.lr is not None else float(adapt.get("lr", 1e-3))
    if not lr > 0:
        raise InvalidInputError(f"--lr must be greater than 0, got {lr}")
    data = Path(cfg.data) if cfg.data is not None else SHIPPED_PHOTOS
    if not data.is_dir():
        raise NotFoundError(f"content image folder not found: {data}" + (
            "" if cfg.data is not None else " (the photos the project ships); pass --data PHOTOS"))
    settings = dict(provenance.get("style_settings", {}))
    settings["width"] = artifact["arch"]["width"]
    known = {f for f in StyleConfig.__dataclass_fields__}
    return StyleConfig(style=str(cfg.style), data=str(data), out=str(cfg.out), init=str(init), steps=steps, lr=lr,
                       sample_every=cfg.sample_every, checkpoint_every=cfg.checkpoint_every,
                       log_every=cfg.log_every, seed=cfg.seed, device=cfg.device, max_steps=cfg.max_steps,
                       resume=cfg.resume, progress=cfg.progress,
                       **{k: v for k, v in settings.items() if k in known})


def adapt(cfg: AdaptStyleConfig) -> Path:
    """Fine-tune the initialisation on cfg.style; returns the style run folder (RUN/model.pt is a stylizer)."""
    settings = style_config(cfg)
    started = time.perf_counter()
    run = style.train(settings)
    wall = time.perf_counter() - started
    artifact = common.load_artifact(run)
    artifact["provenance"]["adaptation"] = {
        "init": settings.init, "steps": settings.steps, "lr": settings.lr,
        # After a resume, the wall time is the last invocation's only.
        "wall_time_s": round(wall, 1), "machine": machine(), "device": str(common.pick_device(settings.device)),
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    common.atomic_torch_save(artifact, run / common.ARTIFACT)
    return run


def measure_step_seconds(settings: StyleConfig, repeats: int = 2) -> float:
    """Seconds one adaptation step takes here, timed on random content (after one warm-up step)."""
    from artforge.models.style_net import TransformerNet
    from artforge.training.losses import PerceptualLoss, build_loss_network

    device = common.pick_device(settings.device)
    weights = settings.loss_weight_values()
    loss_net = build_loss_network(settings.loss_network, settings.loss_weights)
    generator = torch.Generator().manual_seed(0)
    style_image = torch.rand(1, 3, settings.style_size, settings.style_size, generator=generator) * 255
    criterion = PerceptualLoss(loss_net, style_image, weights).to(device)
    net = TransformerNet(width=settings.width, residual_blocks=style.RESIDUAL_BLOCKS).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    side = settings.image_size
    content = (torch.rand(settings.batch_size, 3, side, side, generator=generator) * 255).to(device)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        losses = criterion(net(content), criterion.content_target(content))
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def adapt_to_repository(cfg: AdaptStyleConfig, repo: Path, name: str, overwrite: bool = False,
                        log: Any = print) -> Path:
    """The one-shot form: estimate, adapt (progress bar), export with the parity check and a model card.

    Returns the written model.onnx. The model card's provenance names the initialisation, the steps,
    the adaptation's wall time and the machine.
    """
    from artforge.export import export_run
    from artforge.export.repository import validate_name

    name = validate_name(name)
    settings = style_config(cfg)
    per_step = measure_step_seconds(replace(settings, steps=1))
    remaining = settings.steps
    state_file = Path(settings.out) / common.STATE
    if settings.resume and state_file.exists():
        remaining = max(0, settings.steps - int(torch.load(state_file, weights_only=False)["step"]))
    estimate = remaining * per_step + EXPORT_SECONDS
    log(f"adapting to {settings.style}: {remaining} of {settings.steps} steps at {settings.image_size} px "
        f"(width {settings.width}), about {_duration(estimate)} here ({per_step:.2f} s per step measured, "
        f"plus ~{EXPORT_SECONDS} s to export and check); run folder {settings.out}")
    started = time.perf_counter()
    run = adapt(cfg)
    path = export_run(run, repo, name=name, overwrite=overwrite, log=log)
    log(f"done in {_duration(time.perf_counter() - started)}")
    return path


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
