"""The zoo's training data, written as image folders: content crops for style
networks, abstract tiles for the DCGAN, and the README demo's sample photos
(the classifier's data, rendered by the zoo's stylizers, is in stylized_dataset.py).

Everything is deterministic for a given seed, so the zoo's provenance can
name a seed instead of shipping data. Each folder records how it was made
(synthetic.json), so an interrupted run resumes and a run with other settings
is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from artforge.files import write_bytes_atomic, write_json_atomic
from artforge.runtime.imageio import encode_image, write_image
from artforge.zoo.painting import PAINTED_STYLES, paint_style_image
from artforge.zoo.painting_tools import hue_shift
from artforge.zoo.photos import CONTENT_PHOTOS, source_photos
from artforge.zoo.seeds import item_rng

# Test photos differ in kind from each other and from the training ones (an
# animal, a night scene, a close-up of a plant), so test accuracy measures
# recognising the style on new content rather than recognising the scene.
DEFAULT_HOLDOUT: tuple[str, ...] = ("chelsea", "rocket", "flower")

# The photos of the README demo (zoo/samples/).
SAMPLE_PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "motorcycle", "china", "flower")

#: what each dataset folder records about how it was made
MANIFEST = "synthetic.json"


def _claim_folder(out: Path, kind: str, params: dict[str, Any]) -> None:
    """Make `out` resumable: files already there are reused only if they were made
    by the same call with the same settings, which the manifest records."""
    out = Path(out)
    manifest = out / MANIFEST
    wanted = {"kind": kind, **params}
    if manifest.is_file():
        found = json.loads(manifest.read_text())
        found_params = {k: v for k, v in found.items() if k != "summary"}
        if found_params != wanted:
            raise ValueError(
                f"{out} already holds a {found.get('kind')} dataset made with other settings "
                f"({found_params}); use an empty folder or delete it"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and has no {MANIFEST}; use an empty folder for a new dataset")
    write_json_atomic(manifest, wanted)


def _progress(items: Iterable, total: int, desc: str, show: bool) -> Iterable:
    return tqdm(items, total=total, desc=desc, unit="img", disable=not show, leave=False)


def _random_crop(photo: np.ndarray, rng: np.random.Generator, size: int, min_scale: float = 0.3) -> np.ndarray:
    """A square crop of random scale and place, maybe mirrored, resized to size.

    Crops that are mostly black (the retina's surround, night sky) are redrawn:
    they carry no style and would teach nothing.
    """
    h, w = photo.shape[:2]
    side_max = min(h, w)
    for _ in range(30):
        side = int(round(side_max * rng.uniform(min_scale, 1.0)))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        crop = photo[y : y + side, x : x + side]
        gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        if (gray < 20).mean() < 0.3 and gray.std() > 12:
            break
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp)


def _jitter_photo(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Mild exposure/colour changes shared by every style of one crop, so "photo"
    # is not recognisable by the source photos' exact colour statistics.
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] *= rng.uniform(0.8, 1.2)
    hsv[..., 2] = hsv[..., 2] * rng.uniform(0.85, 1.15) + rng.uniform(-12, 12)
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)


def content_images(out: Path, seed: int, count: int, size: int, progress: bool = True) -> list[Path]:
    """`count` random crops (scale, place, mirror) of CONTENT_PHOTOS as out/<photo>_<i>.jpg."""
    out = Path(out)
    if count < 1 or size < 16:
        raise ValueError(f"count must be >= 1 and size >= 16 (got {count}, {size})")
    _claim_folder(out, "content_images", {"seed": seed, "count": count, "size": size})
    photos = source_photos()
    names = list(CONTENT_PHOTOS)
    paths = []
    for i in _progress(range(count), count, "content images", progress):
        name = names[i % len(names)]  # round robin keeps the photos equally represented
        path = out / f"{name}_{i:05d}.jpg"
        if not path.is_file():
            rng = item_rng(seed, "content", i)
            write_image(path, _random_crop(photos[name], rng, size, min_scale=0.25), quality=95)
        paths.append(path)
    return paths


def abstract_tiles(
    out: Path,
    seed: int,
    count: int,
    size: int = 64,
    styles: Sequence[str] = PAINTED_STYLES,
    progress: bool = True,
) -> list[Path]:
    """`count` small tiles cut from painted style images (several paintings per
    style, random scale, quarter turns, mirrors and hue shifts) as out/tile_<i>.png.

    Every tile shares the painted family's vocabulary (bold flat colour, dark
    contours, strokes), which is what a small DCGAN can pick up in minutes.
    """
    out = Path(out)
    bad = [s for s in styles if s not in PAINTED_STYLES]
    if bad or not styles:
        raise ValueError(f"abstract_tiles styles {bad or '[]'} not allowed; choose from {', '.join(PAINTED_STYLES)}")
    if count < 1 or size < 8:
        raise ValueError(f"count must be >= 1 and size >= 8 (got {count}, {size})")
    _claim_folder(out, "abstract_tiles", {"seed": seed, "count": count, "size": size, "styles": list(styles)})
    paintings = [paint_style_image(s, 384, seed=seed * 100 + k) for s in styles for k in range(3)]
    paths = []
    for i in _progress(range(count), count, "abstract tiles", progress):
        path = out / f"tile_{i:05d}.png"
        if not path.is_file():
            rng = item_rng(seed, "tile", i)
            src = paintings[int(rng.integers(len(paintings)))]
            side = int(rng.integers(max(size, 48), 160))
            y, x = (int(v) for v in rng.integers(0, src.shape[0] - side + 1, 2))
            tile = cv2.resize(src[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
            tile = np.rot90(tile, int(rng.integers(4)))
            tile = tile[:, ::-1] if rng.random() < 0.5 else tile
            tile = hue_shift(np.ascontiguousarray(tile), float(rng.uniform(0, 360)))
            write_image(path, tile)
        paths.append(path)
    return paths


def sample_photos(out: Path, max_side: int = 512) -> list[Path]:
    """The SAMPLE_PHOTOS as out/<name>.jpg, longest side at most max_side, each
    small enough (under ~100 KB) to live in the repository for the README demo."""
    out = Path(out)
    photos = source_photos()
    paths = []
    for name in SAMPLE_PHOTOS:
        img = photos[name]
        scale = min(1.0, max_side / max(img.shape[:2]))
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        # Step quality down until the file fits; fine detail (china, the cat's
        # fur) needs it, flat photos keep 90.
        quality = 90
        data = encode_image(img, "jpeg", quality)
        while len(data) > 95_000 and quality > 50:
            quality -= 5
            data = encode_image(img, "jpeg", quality)
        path = out / f"{name}.jpg"
        write_bytes_atomic(path, data)
        paths.append(path)
    return paths
