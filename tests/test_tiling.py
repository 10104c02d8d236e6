"""Tiled stylization (artforge/runtime/tiling.py): layout, exact blending, no seams, bounded memory."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from artforge.cli.args import DEFAULT_ZOO
from artforge.errors import InvalidInputError
from artforge.runtime.tiling import feather, needs_tiling, plan_tiles, stylize_tiled

ZOO_REPO = DEFAULT_ZOO / "repository"


@pytest.mark.parametrize(("height", "width", "tile", "overlap", "multiple"),
                         [(4000, 6000, 1024, 128, 4), (301, 517, 128, 32, 4), (100, 5000, 512, 64, 4),
                          (961, 100, 512, 64, 8), (1025, 1024, 1024, 128, 4), (3, 700, 256, 32, 4)])
def test_layout_covers_the_image_with_equal_aligned_overlapping_tiles(height, width, tile, overlap, multiple):
    layout = plan_tiles(height, width, tile, overlap, multiple, min_size=8)
    assert layout.tile_h % multiple == 0 and layout.tile_w % multiple == 0
    assert layout.tile_h <= max(tile, 8) and layout.tile_w <= max(tile, 8)
    for starts, size, length in ((layout.ys, layout.tile_h, height), (layout.xs, layout.tile_w, width)):
        assert starts[0] == 0 and starts[-1] + size >= length  # everything covered
        assert all(s % multiple == 0 for s in starts)  # the same sampling grid as a whole-image run
        assert all(a + size - b >= overlap for a, b in zip(starts, starts[1:], strict=False))
        assert starts[-1] + size - length < multiple or len(starts) == 1  # no tile wasted past the edge


def test_feather_weights_fall_towards_inner_edges_only():
    w = feather(64, 16, 0)
    assert w[-1] == 1 and w[16:].min() == 1
    assert 0 < w[0] < 0.01 and np.all(np.diff(w[:16]) > 0)
    both = feather(64, 16, 16)
    assert np.allclose(both, both[::-1])


def test_bad_tiling_options_are_one_clear_error():
    with pytest.raises(InvalidInputError, match="overlap"):
        plan_tiles(100, 100, 64, 40)
    with pytest.raises(InvalidInputError, match="tile size"):
        plan_tiles(100, 100, 0, 0)


def test_needs_tiling_by_size_or_budget():
    assert needs_tiling(100, 200, 128, None) and not needs_tiling(100, 120, 128, None)
    assert needs_tiling(3000, 2000, None, 4.0) and not needs_tiling(2000, 1999, None, 4.0)
    assert not needs_tiling(10_000, 10_000, None, None)


def test_blending_is_exact_for_an_identity_model():
    image = np.random.default_rng(0).integers(0, 256, (301, 517, 3), dtype=np.uint8)
    shapes = []

    def identity(batch: np.ndarray) -> np.ndarray:
        shapes.append(batch.shape)
        return batch

    assert np.array_equal(stylize_tiled(image, identity, tile=128, overlap=32, multiple=4, batch_size=3), image)
    assert all(s[1] % 4 == 0 and s[2] % 4 == 0 and s[0] <= 3 for s in shapes)


def test_tiles_that_disagree_blend_smoothly():
    """Tiles return flat greys 30 levels apart, checkerwise: the output must ramp between them, never step."""
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    columns = len(plan_tiles(200, 300, 128, 32, 4).xs)
    index = iter(range(100))

    def flat(batch: np.ndarray) -> np.ndarray:
        levels = [100 + 30 * sum(divmod(next(index), columns)) % 60 for _ in batch]
        return np.stack([np.full(b.shape, level, dtype=np.uint8) for b, level in zip(batch, levels, strict=True)])

    out = stylize_tiled(image, flat, tile=128, overlap=32, multiple=4).astype(int)
    assert out.min() == 100 and out.max() == 130
    steps = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
    # 30-level differences spread over >= 32 px by a raised cosine: at most ~30 * pi / 64 per pixel.
    assert steps <= 3, steps


def test_large_image_tiles_in_bounded_memory():
    """A 3000 x 2000 photo: the blending holds one band of float accumulators, not a float image."""
    image = np.random.default_rng(1).integers(0, 256, (2000, 3000, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        out = stylize_tiled(image, lambda b: b, tile=512, overlap=64, multiple=4, batch_size=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(out, image)
    # The output itself plus a 512-row band is ~3x the image; float accumulators for the whole
    # image (weighted sum + weights) would be 16 bytes per pixel, over 5x.
    assert peak < 3.5 * image.nbytes, peak / image.nbytes


@pytest.mark.skipif(not (ZOO_REPO / "mosaic").is_dir(), reason="the shipped zoo is not built")
def test_tiled_agrees_with_whole_and_hides_seams():
    from artforge.runtime import Repository

    model = Repository(ZOO_REPO).load("mosaic", backend="onnxruntime", threads=2)
    photo = cv2.imread(str(sorted((DEFAULT_ZOO / "samples").glob("*.jpg"))[1]))
    image = cv2.cvtColor(cv2.resize(photo, (240, 160), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    whole = model.stylize(image)

    def tiled(overlap: int) -> np.ndarray:
        return stylize_tiled(image, model.run_padded, tile=96, overlap=overlap, multiple=model.size_multiple,
                             min_size=model.min_size, batch_size=4)

    def blurred(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a.astype(np.float32), (0, 0), 4)

    def worst_column_step(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a.astype(np.float32), axis=1)).mean(axis=(0, 2)).max())

    feathered, butted = tiled(24), tiled(0)
    # Instance normalisation sees each tile's own statistics, so tones drift a little (measured ~13
    # levels on blurred images, 96 px tiles); the texture and layout are the same.
    assert np.abs(blurred(feathered) - blurred(whole)).mean() < 20
    # Butted tiles show a seam (a column step far above the image's own); feathered ones do not.
    assert worst_column_step(butted) > 1.2 * worst_column_step(whole)
    assert worst_column_step(feathered) <= 1.1 * worst_column_step(whole)
    # One tile covering the image is exactly the whole-image run.
    single = stylize_tiled(image, model.run_padded, tile=256, overlap=0, multiple=model.size_multiple,
                           min_size=model.min_size)
    assert np.array_equal(single, whole)
