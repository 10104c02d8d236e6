"""Tiled vs whole-image stylization: how far tiles drift in tone, with and without the tile graph.

For each case a photo is stylized whole (the reference), then in tiles with each tile's own
instance-norm statistics (models exported before tile graphs) and with the whole image's statistics
from the tile graph's stats pass (runtime/tiling.py). Reports the mean absolute difference from the
whole-image run in uint8 levels, and the wall time of each. Writes the `tiling` section of
benchmarks/RESULTS.md and, with --picture, the before/after picture docs/batch.md shows.

    python benchmarks/bench_tiling.py [--repo zoo/repository] [--models mosaic,swirl] [--picture docs/images/tiling.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, write_section  # noqa: E402

from artforge.runtime import Repository  # noqa: E402
from artforge.runtime.tiling import stylize_tiled  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: a larger stats pass than the default (one tile), to show what the budget buys: a 1024 x 1024 tile's pixels
LARGER_STATS = 1 << 20


def cases() -> list[tuple[str, np.ndarray, int]]:
    """(description, RGB image, tile side): the two cases issue 15 reported."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    astronaut = cv2.resize(skimage.data.astronaut(), (1400, 1400), interpolation=cv2.INTER_CUBIC)
    china = cv2.resize(load_sample_image("china.jpg"), (2712, 1808), interpolation=cv2.INTER_CUBIC)
    return [("astronaut 1400x1400, tile 256", astronaut, 256), ("china.jpg 2712x1808 (4.9 MP), tile 1024", china, 1024)]


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def picture(path: Path, whole: np.ndarray, *tiled: np.ndarray) -> None:
    """Whole | each tiled run (own statistics, estimate, exact), a crop that crosses tile seams."""
    crop = (slice(120, 720), slice(700, 1300))
    panels = [cv2.resize(np.ascontiguousarray(a[crop]), (240, 240), interpolation=cv2.INTER_AREA)
              for a in (whole, *tiled)]
    gap = np.full((240, 4, 3), 255, np.uint8)
    sheet = np.hstack([part for panel in panels for part in (panel, gap)][:-1])
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def tiled(model, image: np.ndarray, tile: int, norm, norm_pixels: int | None = None,
          tile_stats: str = "estimate") -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    out = stylize_tiled(image, model.run_padded, tile=tile, multiple=model.size_multiple, min_size=model.min_size,
                        norm=norm, norm_pixels=norm_pixels, tile_stats=tile_stats)
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "zoo" / "repository")
    parser.add_argument("--models", default="mosaic,swirl")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--picture", type=Path, default=None, help="write the before/after picture here")
    args = parser.parse_args()
    repo = Repository(args.repo)
    rows = ["| model | case | own statistics | estimate: stats pass at one tile (default) | estimate: stats pass at "
            f"{LARGER_STATS / 1e6:.2g} MP | exact (`--tile-stats exact`) | seconds: whole / own / estimate / exact |",
            "|---|---|---|---|---|---|---|"]
    for name in args.models.split(","):
        model = repo.stylizer(name, backend=args.backend)
        norm = model.shared_norm()
        for label, image, tile in cases():
            started = time.perf_counter()
            whole = model.stylize(image)
            t_whole = time.perf_counter() - started

            (before, t_before) = tiled(model, image, tile, None)
            (after, t_after) = tiled(model, image, tile, norm)
            (larger, _) = tiled(model, image, tile, norm, LARGER_STATS)
            (exact, t_exact) = tiled(model, image, tile, norm, tile_stats="exact")
            rows.append(f"| {name} | {label} | {difference(before, whole):.1f} | {difference(after, whole):.1f} | "
                        f"{difference(larger, whole):.1f} | {difference(exact, whole):.2f} | "
                        f"{t_whole:.1f} / {t_before:.1f} / {t_after:.1f} / {t_exact:.1f} |")
            print(rows[-1], flush=True)
            if args.picture and name == "mosaic" and tile == 256:
                picture(args.picture, whole, before, after, exact)
    body = "\n".join([
        "## Tiled vs whole-image stylization (mean absolute difference from the whole-image run, uint8 levels)", "",
        f"Command: `{command_line()}`", f"Machine: {machine()}", "",
        "Estimate: one stats pass of the tile graph on the image downscaled to the pixels named; then every "
        "tile is normalised with those statistics. Exact: from there, one pass over the tiles per instance-norm "
        "layer measures the full-resolution statistics (runtime/tiling.py, SharedNorm.exact_statistics).", "",
        *rows])
    write_section("tiling", body)


if __name__ == "__main__":
    main()
