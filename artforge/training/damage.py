"""The damage images meet on their way to a classifier: a down-and-up resample
(thumbnails, screenshots) and a JPEG re-encode (phones, web pages).

Both smear exactly the fine texture a style leaves, so the classifier trains on
damaged images and the zoo's validation split is damaged the same way: its
temperature is then fitted to images like those it will be asked about.
Torch-free, so the zoo's dataset writer shares it with the trainer.
"""

from __future__ import annotations

import cv2
import numpy as np

JPEG_CHANCE, JPEG_QUALITY = 0.5, (35, 95)
RESAMPLE_CHANCE, RESAMPLE_SCALE = 0.3, (0.4, 0.9)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area interpolation when shrinking both sides (no aliasing), linear otherwise."""
    h, w = image.shape[:2]
    shrinking = width < w and height < h
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def damage(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Maybe resample down and back up, then maybe JPEG re-encode (RGB uint8 HWC, size kept)."""
    out = image
    h, w = image.shape[:2]
    if rng.random() < RESAMPLE_CHANCE:
        scale = rng.uniform(*RESAMPLE_SCALE)
        out = resize(resize(out, max(8, round(w * scale)), max(8, round(h * scale))), w, h)
    if rng.random() < JPEG_CHANCE:
        quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
        ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(out[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            out = decoded[:, :, ::-1]
    return out
