"""Random generators keyed by names, so the zoo's data is a function of one seed."""

from __future__ import annotations

import zlib

import numpy as np


def item_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """The generator of one item (a crop, a tile, a painting), from the seed and the item's names."""
    # One generator per item keyed by names, not by loop position, so an item's
    # pixels do not change when another item is added, held out or skipped on resume.
    entropy = [seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF]
    entropy += [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(entropy)
