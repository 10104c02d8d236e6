"""Differentiable augmentation (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training",
NeurIPS 2020).

The same random transform is applied to real and generated images before
the discriminator sees them, in both networks' steps, and gradients flow
through it to the generator. D then cannot memorise a small training set,
and, unlike augmenting only the real images, G is not taught to draw the
augmentations. Images are float NCHW in [-1, 1]; draws use torch's global
RNG, which a resumed run restores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from artforge.training.configs import DIFFAUGMENT_POLICIES as POLICIES


def parse_policy(policy: str) -> tuple[str, ...]:
    """'color,translation' -> ('color', 'translation'); '' or 'none' -> ()."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip() and p.strip() != "none")
    bad = [n for n in names if n not in POLICIES]
    if bad:
        raise ValueError(f"--augment {policy!r}: unknown transform(s) {', '.join(bad)}; "
                         f"choose from {', '.join(POLICIES)} (comma-separated) or 'none'")
    return names


def _color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, device=x.device) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device) * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(n, 1, 1, 1, device=x.device) + 0.5) + mean  # contrast


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift by up to ratio of the side, filling with zeros (the [-1, 1] mid-grey)."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    ys = torch.clamp(gy.unsqueeze(0) + dy + 1, 0, h + 1)
    xs = torch.clamp(gx.unsqueeze(0) + dx + 1, 0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, ys, xs].permute(0, 3, 1, 2).contiguous()


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one random square of ratio of the side per image (its centre anywhere, so it may be clipped)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    oy = gy.unsqueeze(0) - cy + ch // 2
    ox = gx.unsqueeze(0) - cx + cw // 2
    inside = (oy >= 0) & (oy < ch) & (ox >= 0) & (ox < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_TRANSFORMS = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """Apply the policy's transforms (each with fresh random parameters per image)."""
    for name in POLICIES:
        if name in policy:
            x = _TRANSFORMS[name](x)
    return x
