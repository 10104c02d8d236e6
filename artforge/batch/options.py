"""How to stylize a folder: the options of `artforge stylize`, the same for every executor.

Each executor checks them (Executor.check) and says which of them change its
pixels (Executor.pixel_options, recorded in the manifest for resume).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from artforge import defaults

#: images per model call when they share a padded size
DEFAULT_BATCH_SIZE = 4
#: images with more megapixels than this (after --max-side) are tiled
DEFAULT_TILE_ABOVE_MP = defaults.TILE_ABOVE_MP
#: decoding limit of the batch tool: above any camera, below what would exhaust memory; the
#: header is checked before a pixel is decoded (imageio), so absurd headers cost nothing
BATCH_MAX_PIXELS = 100_000_000


@dataclass(frozen=True)
class BatchOptions:
    #: output format jpg, png or webp (None: the output file's extension, else jpg)
    fmt: str | None = None
    #: JPEG / WebP quality 1-100 (None: the encoder's default, 95 / 90)
    quality: int | None = None
    #: downscale images whose longer side exceeds this
    max_side: int | None = None
    #: tile every image larger than this (pixels, rounded down to the model's size multiple)
    tile: int | None = None
    #: overlap of neighbouring tiles (None: an eighth of the tile)
    tile_overlap: int | None = None
    #: tile images over this many megapixels, with tile or tiling.DEFAULT_TILE (None: never automatically)
    tile_above: float | None = DEFAULT_TILE_ABOVE_MP
    #: the tiles' normalisation statistics: "estimate" or "exact" (runtime/tiling.py, stylize_tiled)
    tile_stats: str = defaults.TILE_STATS
    #: refuse images with more pixels than this
    max_pixels: int = BATCH_MAX_PIXELS
    batch_size: int = DEFAULT_BATCH_SIZE
    #: decode workers and encode workers, each (None: half the cores, 1 to 4)
    workers: int | None = None
    #: redo every output, finished or not
    force: bool = False
    #: write over existing files in OUT that this tool did not write with the model (never over an input)
    overwrite: bool = False


def options_from_args(args: argparse.Namespace) -> BatchOptions:
    """BatchOptions from the `artforge stylize` arguments (the executor checks them)."""
    return BatchOptions(fmt=args.format, quality=args.quality, max_side=args.max_side, tile=args.tile,
                        tile_overlap=args.tile_overlap, tile_above=args.tile_above,
                        tile_stats=args.tile_stats,
                        max_pixels=round(args.max_pixels * 1e6), batch_size=args.batch_size,
                        workers=args.workers, force=bool(args.force), overwrite=bool(args.overwrite))
