"""Tiled stylization of images too large to run whole: overlapping tiles, feathered together.

A style network's memory grows with the pixels it sees, so a 24 MP photo is
cut into equal, overlapping tiles that run in small batches, and the tiles
are blended back with raised-cosine weights that fall towards each tile's
inner edges. Weights are normalised by their sum, so any overlap pattern
blends exactly, and a tile's outer edge (the image border) keeps full
weight.

Why the details:
- The networks use instance normalisation: run alone, a tile is normalised
  with its own statistics, so its tone drifts from a whole-image run (31
  levels on average for a 1400x1400 photo in 256 px tiles, with blotches and
  visible tile blocks). A stylizer exported with a tile graph (contract.TILE_IO)
  avoids that: one stats pass runs the tile graph on the whole image,
  downscaled to at most one tile's pixels (so memory stays bounded by the
  tile), and reads every instance-norm layer's mean and variance; every tile
  is then normalised with those (SharedNorm). That estimate carries the
  downscale's tone (6-21 levels off a whole-image run); tile_stats="exact"
  then measures the full-resolution statistics through the tiles, one pass
  per layer, and matches a whole-image run (under half a level) at ~15x the time.
  Models exported before tile graphs keep per-tile statistics (a one-time
  warning says so). The overlap and feathering hide what is left at the seams. Tiles are as large as
  allowed (the tile size is shrunk per image only to spread the overlap
  evenly, never below what the overlap needs).
- Tile sizes and positions are multiples of the model's size multiple (its
  total stride), so every tile samples the image on the same grid as a
  whole-image run; the image is conceptually padded to that multiple by
  mirroring, exactly as the untiled pipeline pads it.
- Blending keeps float accumulators for one band of tile rows only (tile
  height x image width), finishing rows as soon as no later tile touches
  them: memory is the input, the output and one band, not a float copy of
  the whole image.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from artforge import defaults
from artforge.errors import InvalidInputError
from artforge.runtime import pipeline

log = logging.getLogger(__name__)

DEFAULT_TILE = defaults.TILE
#: how tiles with a tile graph get the whole image's normalisation statistics (stylize_tiled's tile_stats)
TILE_STATS = defaults.TILE_STATS_MODES
#: rows finished per step when blending (bounds the temporaries)
_ROWS = 64


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles go: every tile is tile_h x tile_w, at (y, x) for y in ys, x in xs."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def default_overlap(tile: int) -> int:
    """An eighth of the tile: generous enough to hide instance-norm steps at ~25% extra compute."""
    return max(tile // 8, 0)


def check_tiling(tile: int, overlap: int, multiple: int = 1) -> None:
    """Raise InvalidInputError unless tile and overlap make sense together."""
    pipeline.check_positive(tile, "tile size")
    if tile < multiple:
        raise InvalidInputError(f"tile size {tile} is smaller than the model's size multiple {multiple}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap <= tile // 2:
        raise InvalidInputError(f"tile overlap must be a whole number from 0 to half the tile size ({tile // 2}), "
                                f"got {overlap!r}")


def _axis(length: int, tile: int, overlap: int, multiple: int, min_size: int) -> tuple[int, tuple[int, ...]]:
    """Tile size and start positions along one axis, in pixels, all multiples of `multiple`."""
    units = -(-max(length, min_size) // multiple)  # the axis padded up to the multiple, in units of it
    tile_u = max(tile // multiple, 1)
    if units <= tile_u:
        return units * multiple, (0,)
    overlap_u = min(-(-overlap // multiple), tile_u - 1)  # at least the asked overlap
    count = -(-(units - overlap_u) // (tile_u - overlap_u))
    # The smallest equal size that still overlaps by overlap_u: less wasted compute than full tiles.
    size_u = min(tile_u, -(-(units + (count - 1) * overlap_u) // count))
    starts = tuple(round(i * (units - size_u) / (count - 1)) * multiple for i in range(count))
    return size_u * multiple, starts


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple: int = 1, min_size: int = 1) -> TileLayout:
    """The tile layout for an image; see the module docstring."""
    check_tiling(tile, overlap, multiple)
    if tile < min_size:
        raise InvalidInputError(f"tile size {tile} is smaller than the model's minimum image size {min_size}")
    tile = tile // multiple * multiple
    tile_h, ys = _axis(height, tile, overlap, multiple, min_size)
    tile_w, xs = _axis(width, tile, overlap, multiple, min_size)
    return TileLayout(height, width, tile_h, tile_w, ys, xs)


def _ramp(length: int) -> np.ndarray:
    """Raised cosine from near 0 to near 1 over `length` samples (never exactly 0: weights are divided by)."""
    d = np.arange(length, dtype=np.float32) + 0.5
    return (0.5 - 0.5 * np.cos(np.pi * d / length)).astype(np.float32)


def feather(size: int, lead: int, trail: int) -> np.ndarray:
    """1-D weights of a tile: 1 inside, falling over `lead` samples at its start and `trail` at its end
    (0 for an image border, which no other tile covers)."""
    weights = np.ones(size, dtype=np.float32)
    if lead:
        weights[:lead] *= _ramp(min(lead, size))
    if trail:
        weights[size - min(trail, size):] *= _ramp(min(trail, size))[::-1]
    return weights


def _weights(starts: tuple[int, ...], size: int) -> list[np.ndarray]:
    """Per tile along an axis: feathered over exactly its overlap with each neighbour."""
    out = []
    for i, start in enumerate(starts):
        lead = starts[i - 1] + size - start if i > 0 else 0
        trail = start + size - starts[i + 1] if i + 1 < len(starts) else 0
        out.append(feather(size, max(lead, 0), max(trail, 0)))
    return out


def _crop(image: np.ndarray, y: int, x: int, tile_h: int, tile_w: int) -> np.ndarray:
    """One tile; where it reaches past the image (the last row/column of tiles), mirrored like
    pipeline.pad_to_multiple pads the whole image, so the pixels are the same as a whole-image run's."""
    part = image[y:y + tile_h, x:x + tile_w]
    bottom, right = tile_h - part.shape[0], tile_w - part.shape[1]
    if not bottom and not right:
        return part
    border = cv2.BORDER_REFLECT_101 if bottom < part.shape[0] and right < part.shape[1] else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(part, 0, bottom, 0, right, border)


Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class SharedNorm:
    """A stylizer's tile graph (contract.TILE_IO), which normalises tiles with statistics it is given.

    run: the tile graph's feeds -> its outputs (by name); channels: C of norm_stats [N,2,C]; layers: each
    instance-norm layer's share of C, in order (empty for the first tile graphs, which did not record them:
    those can only estimate, see stylize_tiled's tile_stats).
    """

    run: Callable[[Feeds], Feeds]
    channels: int
    layers: tuple[int, ...] = ()

    def statistics(self, image: np.ndarray, pixels: int, multiple: int = 1, min_size: int = 1) -> np.ndarray:
        """float32 [2,C]: every instance-norm layer's per-channel mean and variance on `image`, downscaled
        to at most `pixels` pixels (one graph run of that size: the memory bound)."""
        height, width = image.shape[:2]
        scale = min(1.0, (pixels / (height * width)) ** 0.5)
        small = image if scale >= 1 else cv2.resize(
            image, (max(1, int(width * scale)), max(1, int(height * scale))), interpolation=cv2.INTER_AREA)
        # Padding up to the multiple adds fewer than `multiple` rows and columns: within the bound's slack.
        padded = pipeline.pad_to_multiple(small, multiple, min_size)
        h, w = padded.shape[:2]
        moments = self.run({"image": padded[np.newaxis], "norm_stats": np.zeros((1, 2, self.channels), np.float32),
                            "norm_own": np.ones((1, 1), np.float32),
                            "norm_region": np.array([[0, h, 0, w]], np.int64)})["norm_moments"][0]
        count, first, second = moments.astype(np.float64)  # about a given mean of 0: plain sums
        mean = first / count
        variance = np.maximum(second / count - mean * mean, 0.0)
        return np.stack([mean, variance]).astype(np.float32)

    def moments(self, image: np.ndarray, layout: TileLayout, stats: np.ndarray, batch_size: int = 1) -> np.ndarray:
        """float32 [2,C]: every layer's input mean and variance on the whole image at full resolution, measured
        through the tiles (one pass over them) while they are normalised with `stats`.

        Each tile reports its layers' input moments over its own share of the image (_shares: a partition),
        so their sums are the whole image's. A layer's figures are exact once every layer before it was
        given its exact statistics: see exact_statistics.
        """
        rows, cols = _shares(layout.ys, layout.tile_h), _shares(layout.xs, layout.tile_w)
        total = np.zeros((3, self.channels), np.float64)
        for row, y in enumerate(layout.ys):
            tiles = [_crop(image, y, x, layout.tile_h, layout.tile_w) for x in layout.xs]
            for part in pipeline.chunks(len(tiles), max(batch_size, 1)):
                count = part.stop - part.start
                regions = np.array([[*rows[row], *cols[col]] for col in range(part.start, part.stop)], np.int64)
                moments = self.run({"image": pipeline.stack(tiles[part]),
                                    "norm_stats": np.broadcast_to(stats, (count, *stats.shape)).copy(),
                                    "norm_own": np.zeros((count, 1), np.float32),
                                    "norm_region": regions})["norm_moments"]
                total += moments.astype(np.float64).sum(axis=0)
        count, first, second = total
        shift = first / count  # the moments are about the given mean
        mean = stats[0].astype(np.float64) + shift
        variance = np.maximum(second / count - shift * shift, 0.0)
        return np.stack([mean, variance]).astype(np.float32)

    def exact_statistics(self, image: np.ndarray, layout: TileLayout, estimate: np.ndarray,
                         batch_size: int = 1) -> np.ndarray:
        """float32 [2,C]: the statistics a whole-image run normalises with, one pass over the tiles per layer.

        Layer i's input depends on the statistics of layers 0..i-1 only, so pass i, given those exactly,
        measures layer i exactly; the layers after it keep the estimate meanwhile (measured: taking their
        figures from a pass whose earlier layers are not yet exact makes them worse than the estimate,
        and they diverge). Memory stays one tile's; time is one tiled run per layer.
        """
        stats = estimate.copy()
        offset = 0
        for channels in self.layers:
            measured = self.moments(image, layout, stats, batch_size)
            stats[:, offset:offset + channels] = measured[:, offset:offset + channels]
            offset += channels
        return stats

    def tiles(self, stats: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """A tile runner for stylize_tiled: [N,h,w,3] uint8 -> stylized, normalised with `stats`."""
        def run(batch: np.ndarray) -> np.ndarray:
            count, height, width = batch.shape[:3]
            return self.run({"image": batch, "norm_stats": np.broadcast_to(stats, (count, *stats.shape)).copy(),
                             "norm_own": np.zeros((count, 1), np.float32),
                             "norm_region": np.array([[0, height, 0, width]] * count, np.int64)})["stylized"]
        return run


@functools.cache
def _warn_no_layers() -> None:
    log.warning("exact tile statistics need a tile graph that records its layers; this model's predates that, so "
                "its tiles use the estimate: re-export it with `artforge export` for exact statistics")


def _shares(starts: tuple[int, ...], size: int) -> list[tuple[int, int]]:
    """Per tile along an axis, the part of it (tile coordinates) that is its own: neighbours split their
    overlap in the middle, so the shares partition the padded axis exactly once. Starts and sizes are
    multiples of the model's size multiple, and so are the cuts, which keeps them on every layer's grid."""
    step = math.gcd(*starts, size)
    cuts = [0] + [(starts[i + 1] + starts[i] + size) // 2 // step * step for i in range(len(starts) - 1)]
    cuts.append(starts[-1] + size)
    return [(cuts[i] - start, cuts[i + 1] - start) for i, start in enumerate(starts)]


def stats_pixels(layout: TileLayout) -> int:
    """The stats pass's default pixel budget: one tile's, so that tiling with shared statistics needs no more
    memory than tiling without. A network's statistics change with the image's scale, so a larger budget
    (stylize_tiled's norm_pixels) gives closer tones for more memory: measured on a 1400x1400 photo in
    256 px tiles, a 256 px stats pass left tiles 13.9 levels off a whole-image run, a 1024 px one 4.0
    (docs/decisions.md, "Tiling with the whole image's statistics")."""
    return layout.tile_h * layout.tile_w


def stylize_tiled(image: np.ndarray, run: Callable[[np.ndarray], np.ndarray], tile: int = DEFAULT_TILE,
                  overlap: int | None = None, multiple: int = 1, min_size: int = 1,
                  batch_size: int = 1, norm: SharedNorm | None = None,
                  norm_pixels: int | None = None, tile_stats: str = defaults.TILE_STATS) -> np.ndarray:
    """Stylize an RGB uint8 HxWx3 image tile by tile.

    run: a [N,h,w,3] uint8 batch (h, w multiples of `multiple`) -> the same
    shape, stylized; it is called with at most batch_size tiles of one tile
    row at a time, so a caller can stop between calls (by raising). With
    `norm` (the model's tile graph) the tiles run through it instead, with the
    whole image's normalisation statistics, and `run` is not called; its stats
    pass sees at most `norm_pixels` pixels (default: stats_pixels). tile_stats:
    "estimate" normalises every tile with those statistics of a downscale;
    "exact" then measures them at full resolution through the tiles, one pass
    per instance-norm layer (SharedNorm.exact_statistics): the tiles match a
    whole-image run, for that many more tiled runs' time.
    """
    if tile_stats not in TILE_STATS:
        raise InvalidInputError(f"tile statistics must be one of {', '.join(TILE_STATS)}, got {tile_stats!r}")
    if overlap is None:
        overlap = default_overlap(tile)
    height, width = image.shape[:2]
    layout = plan_tiles(height, width, tile, overlap, multiple, min_size)
    tile_h, tile_w = layout.tile_h, layout.tile_w
    if norm is not None and layout.count > 1:  # one tile is the whole image: its own statistics are the right ones
        budget = stats_pixels(layout) if norm_pixels is None else norm_pixels
        stats = norm.statistics(image, budget, multiple, min_size)
        if tile_stats == "exact":
            if norm.layers:
                stats = norm.exact_statistics(image, layout, stats, batch_size)
            else:
                _warn_no_layers()
        run = norm.tiles(stats)
    wide = layout.xs[-1] + tile_w  # the padded width the tiles cover
    wy, wx = _weights(layout.ys, tile_h), _weights(layout.xs, tile_w)
    out = np.empty((height, width, 3), dtype=np.uint8)
    acc = np.zeros((tile_h, wide, 3), dtype=np.float32)
    total = np.zeros((tile_h, wide), dtype=np.float32)
    top = 0  # the image row acc[0] holds

    def finish(until: int) -> None:
        """Write rows [top, until) to out (no later tile touches them) and slide the band down.

        Both steps go a few rows at a time, so their temporaries stay small next to the band.
        """
        nonlocal top
        rows = min(until, height) - top
        for start in range(0, max(rows, 0), _ROWS):
            stop = min(start + _ROWS, rows)
            blended = acc[start:stop, :width] / total[start:stop, :width, np.newaxis]
            np.add(blended, 0.5, out=blended)
            np.clip(blended, 0, 255, out=blended)
            out[top + start:top + stop] = blended  # float -> uint8 truncates: rounded by the +0.5
        shift = until - top
        for start in range(0, tile_h - shift, shift):  # row blocks no larger than the shift never overlap
            stop = min(start + shift, tile_h - shift)
            acc[start:stop] = acc[start + shift:stop + shift]
            total[start:stop] = total[start + shift:stop + shift]
        acc[tile_h - shift:] = 0
        total[tile_h - shift:] = 0
        top = until

    for row, y in enumerate(layout.ys):
        if y > top:
            finish(y)
        tiles = [_crop(image, y, x, tile_h, tile_w) for x in layout.xs]
        for part in pipeline.chunks(len(tiles), max(batch_size, 1)):
            styled = run(pipeline.stack(tiles[part]))
            for col, result in zip(range(part.start, part.stop), styled, strict=True):
                x = layout.xs[col]
                weight = np.outer(wy[row], wx[col])
                weighted = result.astype(np.float32)
                np.multiply(weighted, weight[:, :, np.newaxis], out=weighted)
                acc[:, x:x + tile_w] += weighted
                total[:, x:x + tile_w] += weight
    finish(top + tile_h)
    return out


def needs_tiling(height: int, width: int, tile: int | None, tile_above: float | None) -> bool:
    """Whether the batch tool tiles an image: --tile given and the image larger than one tile, or more
    megapixels than tile_above."""
    if tile is not None:
        return max(height, width) > tile
    return tile_above is not None and height * width > tile_above * 1e6

