"""Photos rendered in an art style (pencil, watercolour, oil, cartoon,
pointillism, or left a photo): the classes of the art-style dataset."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from artforge.zoo.painting_tools import draw_strokes, impasto, saturate, smooth_noise
from artforge.zoo.seeds import item_rng

ART_STYLES: tuple[str, ...] = ("photo", "pencil", "watercolor", "oil", "cartoon", "pointillism")


def render_photo(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return img


def render_pencil(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gray, color = cv2.pencilSketch(
        img,
        sigma_s=float(rng.uniform(30, 80)),
        sigma_r=float(rng.uniform(0.05, 0.1)),
        shade_factor=float(rng.uniform(0.02, 0.06)),
    )
    # Mostly graphite; some coloured-pencil renders keep the class from being
    # learnable as just "has no colour".
    if rng.random() < 0.7:
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    return color


def render_watercolor(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    flat = cv2.stylization(img, sigma_s=float(rng.uniform(40, 100)), sigma_r=float(rng.uniform(0.35, 0.6)))
    flat = flat.astype(np.float32)
    # Thinned pigment over white paper: the wash never reaches full saturation.
    paper = np.array([250, 246, 236], np.float32)
    wash = rng.uniform(0.2, 0.35)
    out = flat * (1 - wash) + paper * wash
    # Pigment pools in the paper grain and at the wet edges of each region.
    grain = smooth_noise(rng, h, w, cell=3, octaves=2) * 0.5 + smooth_noise(rng, h, w, cell=40) * 0.5
    out *= (1 + 0.07 * grain)[..., None]
    edges = cv2.Canny(flat.astype(np.uint8), 40, 120)
    wet = cv2.GaussianBlur(edges.astype(np.float32), (0, 0), 1.2) / 255.0
    out *= (1 - 0.25 * np.clip(wet, 0, 1))[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def _orientation(img: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors along edges (perpendicular to the smoothed structure tensor's
    gradient), the direction painters follow with their strokes."""
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), sigma)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), sigma)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), sigma)
    theta = 0.5 * np.arctan2(2 * jxy, jxx - jyy) + np.pi / 2
    return np.cos(theta), np.sin(theta)


def render_oil(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    h, w = img.shape[:2]
    unit = max(h, w) / 256 * scale
    src = saturate(cv2.bilateralFilter(img, 7, 40, 7), rng.uniform(1.2, 1.5))
    coarse = cv2.GaussianBlur(src, (0, 0), 3 * unit)
    canvas = coarse.copy()
    height = np.zeros((h, w), np.float32)
    ox, oy = _orientation(img, 4 * unit)
    # Two layers like an actual painting: broad strokes blocking in colour, then
    # shorter ones restating the detail.
    for spacing, length, width, source in ((5.0, 16.0, 5, coarse), (3.0, 9.0, 3, src)):
        spacing *= unit
        n = int(h * w / spacing**2)
        centres = rng.uniform([0, 0], [w - 1, h - 1], (n, 2)).astype(np.float32)
        xi, yi = centres[:, 0].astype(int), centres[:, 1].astype(int)
        direction = np.stack([ox[yi, xi], oy[yi, xi]], axis=1)
        half = (length * unit * rng.uniform(0.6, 1.4, n))[:, None] * direction / 2
        paths = np.stack([centres - half, centres + half], axis=1)
        colors = source[yi, xi].astype(np.float32) * rng.uniform(0.9, 1.1, (n, 1))
        widths = np.maximum(1, np.round(width * unit * rng.uniform(0.7, 1.3, n)))
        draw_strokes(canvas, height, paths, np.clip(colors, 0, 255), widths, rng)
    return impasto(canvas, height, strength=float(rng.uniform(0.15, 0.25)))


def render_cartoon(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    smooth = img
    for _ in range(int(rng.integers(2, 5))):
        smooth = cv2.bilateralFilter(smooth, 9, 60, 7)
    # Flat fills: a few k-means colours fitted on a subsample (fast, and the
    # palette still comes from this crop).
    k = int(rng.integers(5, 10))
    pixels = smooth.reshape(-1, 3).astype(np.float32)
    sample = pixels[rng.choice(len(pixels), min(len(pixels), 4000), replace=False)]
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    _, _, centres = cv2.kmeans(  # type: ignore[call-overload]  # OpenCV's stubs want an out array for bestLabels
        sample, k, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0), 2, cv2.KMEANS_PP_CENTERS
    )
    dist = ((pixels[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    flat = centres[dist.argmin(1)].reshape(img.shape)
    flat = saturate(np.clip(flat, 0, 255).astype(np.uint8), rng.uniform(1.2, 1.6), 1.05)
    gray = cv2.medianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 5)
    block = int(rng.choice([7, 9, 11]))
    edges = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, rng.uniform(3, 6))
    edges = cv2.erode(edges, np.ones((2, 2), np.uint8)) if rng.random() < 0.5 else edges
    return np.where(edges[..., None] > 0, flat, 20).astype(np.uint8)


def render_pointillism(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    unit = max(h, w) / 256
    src = saturate(cv2.GaussianBlur(img, (0, 0), 1.5 * unit), rng.uniform(1.3, 1.8), 1.05)
    # Dots a few pixels wide come out as diamonds when drawn directly; drawing at
    # twice the size and shrinking keeps them round.
    ss = 2
    canvas = np.empty((h * ss, w * ss, 3), np.uint8)
    canvas[:] = rng.uniform([235, 225, 205], [250, 245, 230])
    radius = rng.uniform(1.8, 3.0) * unit
    n = int(h * w / (radius**2 * rng.uniform(2.2, 3.0)))
    xy = rng.uniform([0, 0], [w - 1, h - 1], (n, 2))
    xi, yi = xy[:, 0].astype(int), xy[:, 1].astype(int)
    # Seurat's dots are pure hues placed side by side; a per-dot value jitter
    # and an occasional complementary-tinted dot give that broken colour.
    colors = src[yi, xi].astype(np.float32) * rng.uniform(0.8, 1.2, (n, 1))
    tint = rng.random(n) < 0.06
    colors[tint] = 255 - colors[tint] * 0.6
    colors = np.clip(colors, 0, 255)
    radii = np.maximum(ss, np.round(radius * ss * rng.uniform(0.7, 1.2, n))).astype(int)
    pts = np.round(xy * ss).astype(int)
    for i in range(n):
        cv2.circle(canvas, (int(pts[i, 0]), int(pts[i, 1])), int(radii[i]), colors[i].tolist(), -1, cv2.LINE_AA)
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)


RENDERERS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "photo": render_photo,
    "pencil": render_pencil,
    "watercolor": render_watercolor,
    "oil": render_oil,
    "cartoon": render_cartoon,
    "pointillism": render_pointillism,
}


def render_style(img: np.ndarray, style: str, seed: int = 0) -> np.ndarray:
    """Render an RGB uint8 image in one of ART_STYLES (deterministic for a seed)."""
    if style not in RENDERERS:
        raise ValueError(f"unknown art style {style!r}; choose one of {', '.join(ART_STYLES)}")
    return RENDERERS[style](np.ascontiguousarray(img), item_rng(seed, style))

