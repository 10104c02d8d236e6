"""Style images for feed-forward style transfer, painted procedurally (mosaic,
swirl, kandinsky, waves) or rendered from a photo in an art style."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from artforge.zoo.art_styles import ART_STYLES, RENDERERS, render_oil
from artforge.zoo.painting_tools import draw_strokes, impasto, saturate, smooth_noise
from artforge.zoo.photos import SOURCE_PHOTOS, source_photos
from artforge.zoo.seeds import item_rng

# The style images the zoo trains its style networks on (and ships in zoo/styles/).
STYLE_IMAGES: tuple[str, ...] = ("mosaic", "swirl", "kandinsky", "waves", "oil:coffee")

# The procedurally painted styles, the ones art_tiles draws from.
PAINTED_STYLES: tuple[str, ...] = ("mosaic", "swirl", "kandinsky", "waves")

# Palettes in RGB.
_MOSAIC_PALETTE = np.array(
    [[18, 60, 160], [30, 140, 200], [20, 170, 160], [240, 190, 30], [230, 90, 30], [200, 30, 50],
     [245, 240, 225], [40, 130, 70]], np.float32)  # fmt: skip
_NIGHT_PALETTE = np.array(
    [[10, 20, 60], [20, 50, 130], [40, 90, 180], [70, 140, 200], [150, 190, 200], [240, 220, 110],
     [250, 180, 40]], np.float32)  # fmt: skip
_KANDINSKY_COLORS = np.array(
    [[220, 30, 40], [250, 200, 20], [20, 60, 170], [20, 20, 25], [240, 120, 20], [120, 40, 140],
     [30, 140, 80], [90, 170, 220], [235, 90, 140]], np.float32)  # fmt: skip
_WAVES_PALETTE = np.array(
    [[230, 50, 40], [250, 170, 20], [250, 235, 200], [30, 150, 140], [20, 50, 110], [240, 110, 130]],
    np.float32)  # fmt: skip


def _palette_lookup(palette: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Continuous palette: t in [0, 1] runs linearly through the colours."""
    pos = np.clip(t, 0, 1) * (len(palette) - 1)
    i = np.minimum(pos.astype(np.int32), len(palette) - 2)
    f = (pos - i)[..., None]
    return palette[i] * (1 - f) + palette[i + 1] * f


def _trace(field_x: np.ndarray, field_y: np.ndarray, starts: np.ndarray, steps: int, step: float) -> np.ndarray:
    """Follow a unit vector field from each start point (xy); returns [N, steps+1, 2]."""
    h, w = field_x.shape
    pos: np.ndarray = starts.astype(np.float32).copy()
    path = [pos.copy()]
    for _ in range(steps):
        xi = np.clip(pos[:, 0].astype(np.int32), 0, w - 1)
        yi = np.clip(pos[:, 1].astype(np.int32), 0, h - 1)
        pos = pos + step * np.stack([field_x[yi, xi], field_y[yi, xi]], axis=1)
        path.append(pos.copy())
    return np.stack(path, axis=1)


def _paint_mosaic(size: int, rng: np.random.Generator) -> np.ndarray:
    # Tiles stay at least 10 px across so small renders are not all grout.
    spacing = max(10.0, size / 30)
    n = int(size / spacing) + 1
    gy, gx = np.mgrid[0:n, 0:n].astype(np.float32) * spacing
    # Jittered grid: tiles of nearly even size like hand-cut tesserae.
    seeds = np.stack([gx, gy], -1).reshape(-1, 2) + rng.uniform(-0.35, 0.35, (n * n, 2)) * spacing
    seeds = np.clip(np.round(seeds), 0, size - 1).astype(np.int32)
    seeds = np.unique(seeds, axis=0)
    marks = np.full((size, size), 255, np.uint8)
    marks[seeds[:, 1], seeds[:, 0]] = 0
    _, labels = cv2.distanceTransformWithLabels(marks, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    # The design: a radiant sun of concentric rings and rays, warped by noise so
    # it is not geometrically perfect; each tile takes the design's colour at its seed.
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot(xx - cx, yy - cy) / size
    a = np.arctan2(yy - cy, xx - cx)
    warp = smooth_noise(rng, size, size, cell=size / 4)
    rays = int(rng.integers(8, 16))
    design = np.sin(r * rng.uniform(12, 18) + warp * 1.5) + 0.7 * np.sin(a * rays + r * 4 + warp)
    band = ((design + 1.8) / 3.6 * len(_MOSAIC_PALETTE)).astype(np.int32) % len(_MOSAIC_PALETTE)
    rot = int(rng.integers(len(_MOSAIC_PALETTE)))
    tile_band = band[seeds[:, 1], seeds[:, 0]]
    tile_color = _MOSAIC_PALETTE[(tile_band + rot) % len(_MOSAIC_PALETTE)]
    tile_color *= rng.uniform(0.82, 1.1, (len(seeds), 1))  # glazes vary tile to tile
    table = np.zeros((labels.max() + 1, 3), np.float32)
    table[labels[seeds[:, 1], seeds[:, 0]]] = tile_color
    img = table[labels]
    # Glaze: a soft highlight toward each tile's upper left, plus fine grain.
    dist, _ = cv2.distanceTransformWithLabels(marks, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    img *= (1.08 - 0.2 * np.clip(dist / spacing, 0, 1))[..., None]
    img *= (1 + 0.05 * smooth_noise(rng, size, size, cell=2))[..., None]
    grout = cv2.morphologyEx(labels.astype(np.float32), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    grout = cv2.dilate(grout.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0
    img[grout] = np.array([45, 40, 36], np.float32) * (1 + 0.15 * rng.standard_normal((int(grout.sum()), 1)))
    return np.clip(img, 0, 255).astype(np.uint8)


def _paint_swirl(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Stream function: broad noise for a turbulent sky plus a few vortices;
    # strokes follow its level lines (the curl), which never cross or converge.
    psi = smooth_noise(rng, size, size, cell=size / 3, octaves=2) * 1.5
    glow = np.zeros_like(psi)
    for _ in range(int(rng.integers(3, 6))):
        vx, vy = rng.uniform(0.1, 0.9, 2) * size
        rad = rng.uniform(0.06, 0.14) * size
        d2 = ((xx - vx) ** 2 + (yy - vy) ** 2) / rad**2
        psi += rng.choice([-1, 1]) * rng.uniform(1.5, 3) * np.exp(-d2 / 2)
        glow += np.exp(-d2 / 1.5)
    gy, gx = np.gradient(psi)
    norm = np.hypot(gx, gy) + 1e-6
    fx, fy = gy / norm, -gx / norm
    # Colour: deep blues drifting with the flow, burning yellow in the vortex cores.
    t = 0.35 + 0.25 * smooth_noise(rng, size, size, cell=size / 4) + 0.5 * np.clip(glow, 0, 1)
    base = _palette_lookup(_NIGHT_PALETTE, t)
    canvas = np.clip(cv2.GaussianBlur(base, (0, 0), size / 60), 0, 255).astype(np.uint8)
    height = np.zeros((size, size), np.float32)
    unit = size / 512
    for count, steps, width in ((5000, 8, 6), (7000, 5, 3)):
        n = int(count * unit**2)
        starts = rng.uniform(0, size - 1, (n, 2))
        paths = _trace(fx, fy, starts, steps, step=3.0 * unit)
        xi, yi = starts[:, 0].astype(int), starts[:, 1].astype(int)
        tt = t[yi, xi] + rng.normal(0, 0.06, n)
        colors = _palette_lookup(_NIGHT_PALETTE, tt) * rng.uniform(0.85, 1.15, (n, 1))
        widths = np.maximum(1, np.round(width * unit * rng.uniform(0.7, 1.3, n)))
        draw_strokes(canvas, height, paths, np.clip(colors, 0, 255), widths, rng)
    return impasto(canvas, height, strength=0.35)


def _paper(size: int, rng: np.random.Generator) -> np.ndarray:
    base = np.array([236, 226, 200], np.float32)
    stain = smooth_noise(rng, size, size, cell=size / 3, octaves=3)
    tint = np.array([-10, 0, 25], np.float32) * stain[..., None]  # bluish-cream blotches
    grain = 8 * smooth_noise(rng, size, size, cell=2)
    return base + tint + grain[..., None]


def _paint_kandinsky(size: int, rng: np.random.Generator) -> np.ndarray:
    img = _paper(size, rng)
    u = size / 512

    def color() -> tuple[float, ...]:
        return tuple(float(c) for c in _KANDINSKY_COLORS[rng.integers(len(_KANDINSKY_COLORS))])

    def blend(layer: np.ndarray, mask: np.ndarray, alpha: float) -> None:
        m = (mask.astype(np.float32) / 255.0 * alpha)[..., None]
        img[:] = img * (1 - m) + layer * m

    def pt() -> tuple[int, int]:
        return int(rng.uniform(0, size)), int(rng.uniform(0, size))

    # Translucent colour fields first, then solid shapes, then black line work on
    # top: the layering Kandinsky's compositions are built from.
    for _ in range(4):
        layer = np.zeros_like(img)
        mask = np.zeros((size, size), np.uint8)
        poly = rng.uniform(0, size, (int(rng.integers(3, 6)), 2)).astype(np.int32)
        cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA)
        layer[:] = color()
        blend(layer, mask, float(rng.uniform(0.35, 0.6)))
    for _ in range(int(rng.integers(7, 11))):
        kind = rng.choice(["rings", "disc", "triangle", "checker"], p=[0.3, 0.3, 0.25, 0.15])
        layer = np.zeros_like(img)
        mask = np.zeros((size, size), np.uint8)
        c = pt()
        if kind == "rings":
            radius = int(rng.uniform(40, 110) * u)
            rings = int(rng.integers(3, 6))
            for k in range(rings):
                r = int(radius * (1 - k / rings))
                cv2.circle(layer, c, r, color(), -1, cv2.LINE_AA)
            cv2.circle(mask, c, radius, 255, -1, cv2.LINE_AA)
            alpha = 0.95
        elif kind == "disc":
            radius = int(rng.uniform(15, 80) * u)
            cv2.circle(layer, c, radius, color(), -1, cv2.LINE_AA)
            cv2.circle(mask, c, radius, 255, -1, cv2.LINE_AA)
            cv2.circle(layer, c, radius, (20, 20, 25), max(1, int(3 * u)), cv2.LINE_AA)
            alpha = float(rng.uniform(0.7, 1.0))
        elif kind == "triangle":
            s = rng.uniform(60, 180) * u
            tri = (np.array(c) + rng.uniform(-s, s, (3, 2))).astype(np.int32)
            cv2.fillPoly(layer, [tri], color(), cv2.LINE_AA)
            cv2.fillPoly(mask, [tri], 255, cv2.LINE_AA)
            alpha = float(rng.uniform(0.75, 1.0))
        else:
            cells, cs = int(rng.integers(3, 6)), int(rng.uniform(12, 25) * u)
            a, b = color(), color()
            for i in range(cells):
                for j in range(cells):
                    p0 = (c[0] + i * cs, c[1] + j * cs)
                    cv2.rectangle(layer, p0, (p0[0] + cs, p0[1] + cs), a if (i + j) % 2 else b, -1)
            cv2.rectangle(mask, c, (c[0] + cells * cs, c[1] + cells * cs), 255, -1)
            alpha = 0.9
        blend(layer, mask, alpha)
    ink = (20, 20, 25)
    canvas = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(6, 10))):
        cv2.line(canvas, pt(), pt(), ink, max(1, int(rng.uniform(1, 7) * u)), cv2.LINE_AA)
    for _ in range(int(rng.integers(3, 6))):
        axes = (int(rng.uniform(40, 160) * u), int(rng.uniform(20, 120) * u))
        start = float(rng.uniform(0, 360))
        cv2.ellipse(
            canvas,
            pt(),
            axes,
            float(rng.uniform(0, 180)),
            start,
            start + float(rng.uniform(60, 200)),
            color(),
            max(2, int(rng.uniform(3, 8) * u)),
            cv2.LINE_AA,
        )
    for _ in range(int(rng.integers(10, 20))):
        cv2.circle(canvas, pt(), max(2, int(rng.uniform(3, 9) * u)), color(), -1, cv2.LINE_AA)
    return canvas


def _paint_waves(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # Op-art bands: level sets of a tilted, noise-warped sine field, each band a
    # flat colour with a dark edge, like a screen print.
    angle = rng.uniform(0, np.pi)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    across = -xx * np.sin(angle) + yy * np.cos(angle)
    warp = smooth_noise(rng, size, size, cell=size / 3, octaves=2)
    field = across + 0.08 * np.sin(along * rng.uniform(8, 14) + warp * 3) + 0.06 * warp
    bands = field * rng.uniform(14, 22)
    idx = np.floor(bands).astype(np.int32) % len(_WAVES_PALETTE)
    img = _WAVES_PALETTE[(idx * int(rng.choice([1, 5]))) % len(_WAVES_PALETTE)].copy()
    frac = bands - np.floor(bands)
    # Shade each band toward its edges so it reads as a folded ribbon, and draw
    # a dark line where bands meet.
    img *= (0.8 + 0.35 * np.sin(frac * np.pi))[..., None]
    edge = (frac < 0.06) | (frac > 0.96)
    img[edge] = [25, 20, 35]
    img *= (1 + 0.06 * smooth_noise(rng, size, size, cell=2))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


_PAINTERS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "mosaic": _paint_mosaic,
    "swirl": _paint_swirl,
    "kandinsky": _paint_kandinsky,
    "waves": _paint_waves,
}


def _stylized_photo(style: str, photo: str, size: int, rng: np.random.Generator) -> np.ndarray:
    img = source_photos()[photo]
    h, w = img.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    crop = cv2.resize(img[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
    if style == "oil":
        # Exaggerated strokes and saturation: a style image must carry strong texture.
        return saturate(render_oil(crop, rng, scale=1.6), 1.3)
    return RENDERERS[style](crop, rng)


def paint_style_image(name: str, size: int = 512, seed: int = 0) -> np.ndarray:
    """A style image (RGB uint8, size x size) for style-transfer training.

    ``name`` is a painted style (mosaic, swirl, kandinsky, waves) or
    ``"<art style>:<photo>"``, a content photo rendered in one of ART_STYLES
    (e.g. ``"oil:coffee"``). STYLE_IMAGES lists the ones the zoo uses.
    """
    if size < 32:
        raise ValueError(f"style image size must be at least 32 pixels (got {size})")
    rng = item_rng(seed, "paint", name, size)
    if name in _PAINTERS:
        return _PAINTERS[name](size, rng)
    style, _, photo = name.partition(":")
    if style in RENDERERS and photo in SOURCE_PHOTOS:
        return _stylized_photo(style, photo, size, rng)
    raise ValueError(
        f"unknown style image {name!r}; choose one of {', '.join(_PAINTERS)} "
        f"or '<style>:<photo>' with style in {ART_STYLES} and photo in {tuple(SOURCE_PHOTOS)}"
    )
