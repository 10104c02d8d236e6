"""Contact sheets: many same-size images laid out on one canvas."""

from __future__ import annotations

import numpy as np


def tile_grid(images: list[np.ndarray], columns: int, gap: int = 2, background: int = 255) -> np.ndarray:
    """Lay out HxWx3 uint8 images row by row; cells take the largest image's size."""
    if not images:
        raise ValueError("tile_grid needs at least one image")
    cell_h = max(im.shape[0] for im in images)
    cell_w = max(im.shape[1] for im in images)
    rows = -(-len(images) // columns)
    canvas = np.full((rows * cell_h + (rows + 1) * gap, columns * cell_w + (columns + 1) * gap, 3),
                     background, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        y, x = gap + r * (cell_h + gap), gap + c * (cell_w + gap)
        canvas[y:y + im.shape[0], x:x + im.shape[1]] = im[..., :3]
    return canvas
