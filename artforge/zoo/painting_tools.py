"""What the art styles and the painted style images share: value noise, colour
shifts, strokes and the relief of their paint."""

from __future__ import annotations

import cv2
import numpy as np


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 1) -> np.ndarray:
    """Value noise in [-1, 1]: random values on a coarse grid, cubic-upsampled;
    octaves add finer grids at half the amplitude each."""
    total = np.zeros((h, w), np.float32)
    amp = 1.0
    for _ in range(octaves):
        gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
        grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
        total += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= 0.5
        cell /= 2
    total -= total.mean()
    return total / (np.abs(total).max() + 1e-6)


def saturate(img: np.ndarray, factor: float, value: float = 1.0) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] *= factor
    hsv[..., 2] *= value
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)


def hue_shift(img: np.ndarray, degrees: float) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    # OpenCV keeps 8-bit hue in 0..179 (two degrees a step).
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(degrees / 2))) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def impasto(img: np.ndarray, height: np.ndarray, strength: float) -> np.ndarray:
    """Light a paint-thickness map from the top left so strokes stand out as ridges."""
    h = cv2.GaussianBlur(height.astype(np.float32), (0, 0), 1.0)
    gx = cv2.Sobel(h, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(h, cv2.CV_32F, 0, 1, ksize=3)
    shade = 1.0 - strength * (gx + gy) / 255.0
    return np.clip(img.astype(np.float32) * shade[..., None], 0, 255).astype(np.uint8)


def draw_strokes(
    canvas: np.ndarray,
    height: np.ndarray | None,
    paths: np.ndarray,
    colors: np.ndarray,
    widths: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Paint polylines (paths [N, K, 2] float xy) in order; each stroke also gets
    a random paint thickness on `height`, which impasto turns into relief."""
    pts = np.round(paths).astype(np.int32)
    heights = rng.uniform(60, 255, len(pts))
    for i in range(len(pts)):
        width = int(widths[i])
        cv2.polylines(canvas, [pts[i]], False, colors[i].tolist(), width, cv2.LINE_AA)
        if height is not None:
            cv2.polylines(height, [pts[i]], False, float(heights[i]), width, cv2.LINE_8)
