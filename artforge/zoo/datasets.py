"""The zoo's training data, written as image folders: content crops for style
networks, art tiles for the DCGAN (with a held-out split), and the README demo's
sample photos (the classifier's data, rendered by the zoo's stylizers, is in
stylized_dataset.py).

Everything is deterministic for a given seed, so the zoo's provenance can
name a seed instead of shipping data. Each folder records how it was made
(synthetic.json), so an interrupted run resumes and a run with other settings
is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from artforge.files import write_bytes_atomic, write_json_atomic
from artforge.runtime.imageio import encode_image, write_image
from artforge.zoo.art_styles import RENDERERS
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


#: the photo renderings (art_styles) whose crops join the painted ones in the DCGAN tiles
TILE_RENDERINGS: tuple[str, ...] = ("watercolor", "oil", "cartoon", "pointillism", "pencil")

#: one tile source image: a painting, a rendered photo crop or a network-stylized photo crop
_SOURCE_SIZE = 288


def _tile_sources(
    seed: int, split: str, paintings: int, photos: Sequence[str], photo_crops: int,
    stylizers: Mapping[str, Callable[[np.ndarray], np.ndarray]],
) -> list[tuple[str, np.ndarray]]:
    """(family, image) for every source of one split; splits never share a painting or a photo."""
    sources = [("painted", paint_style_image(style, _SOURCE_SIZE, seed=seed * 10_000 + (split == "test") * 5_000 + k))
               for style in PAINTED_STYLES for k in range(paintings)]
    pictures = source_photos()
    for name in photos:
        for i in range(photo_crops):
            rng = item_rng(seed, "tile-photo", name, i)
            crop = _random_crop(pictures[name], rng, _SOURCE_SIZE, min_scale=0.4)
            sources += [("rendered", RENDERERS[r](crop, item_rng(seed, "tile-render", r, name, i)))
                        for r in TILE_RENDERINGS]
            sources += [("stylized", np.ascontiguousarray(stylize(crop)[..., :3])) for stylize in stylizers.values()]
    return sources


def _cut_tile(src: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    side = int(rng.integers(max(size, 48), min(160, src.shape[0]) + 1))
    y, x = (int(v) for v in rng.integers(0, src.shape[0] - side + 1, 2))
    tile = cv2.resize(src[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
    tile = np.rot90(tile, int(rng.integers(4)))
    tile = tile[:, ::-1] if rng.random() < 0.5 else tile
    return hue_shift(np.ascontiguousarray(tile), float(rng.uniform(0, 360)))


def art_tiles(
    out: Path,
    seed: int,
    count: int,
    test_count: int,
    size: int = 64,
    paintings_per_style: int = 12,
    photo_crops: int = 2,
    holdout: Sequence[str] | None = None,
    stylizers: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """DCGAN training tiles with real variety, and held-out tiles to measure a generator against.

    Sources: `paintings_per_style` procedural paintings of every painted style
    (each with its own seed), crops of the content photos rendered in
    TILE_RENDERINGS, and the same crops through `stylizers` (name -> function,
    e.g. the zoo's style networks run by the runtime). Tiles are random-scale
    crops of a random source, turned, mirrored and hue-shifted:
    out/train/tile_<i>.png (`count`) and out/test/tile_<i>.png (`test_count`),
    the test tiles cut only from sources training never sees (other paintings,
    the `holdout` photos, default DEFAULT_HOLDOUT). Returns the summary (also in
    out/synthetic.json). Re-running with the same arguments resumes.
    """
    out = Path(out)
    stylizers = dict(stylizers or {})
    holdout = list(DEFAULT_HOLDOUT if holdout is None else holdout)
    unknown = [h for h in holdout if h not in CONTENT_PHOTOS]
    if unknown:
        raise ValueError(f"holdout photo(s) {unknown} unknown; choose from {', '.join(CONTENT_PHOTOS)}")
    if count < 1 or test_count < 2 or size < 8 or paintings_per_style < 1 or photo_crops < 0:
        raise ValueError(f"art_tiles needs count >= 1, test_count >= 2, size >= 8, paintings_per_style >= 1 and "
                         f"photo_crops >= 0 (got {count}, {test_count}, {size}, {paintings_per_style}, {photo_crops})")
    params = {"seed": seed, "count": count, "test_count": test_count, "size": size,
              "paintings_per_style": paintings_per_style, "photo_crops": photo_crops, "holdout": holdout,
              "stylizers": sorted(stylizers)}
    _claim_folder(out, "art_tiles", params)
    splits = {
        "train": (count, paintings_per_style, [p for p in CONTENT_PHOTOS if p not in holdout]),
        "test": (test_count, max(1, paintings_per_style // 4), holdout),
    }
    summary: dict[str, Any] = {"size": size, "seed": seed, "stylizers": sorted(stylizers),
                               "renderings": list(TILE_RENDERINGS), "painted_styles": list(PAINTED_STYLES)}
    for split, (n, paintings, photos) in splits.items():
        paths = [out / split / f"tile_{i:05d}.png" for i in range(n)]
        if all(p.is_file() for p in paths):
            sources = None
        else:
            sources = _tile_sources(seed, split, paintings, photos, photo_crops, stylizers)
        families: dict[str, int] = {}
        for i, path in enumerate(_progress(paths, n, f"art tiles ({split})", progress)):
            rng = item_rng(seed, "art-tile", split, i)
            pick = int(rng.integers(0, 1 << 30))
            if sources is not None and not path.is_file():
                _, src = sources[pick % len(sources)]
                write_image(path, _cut_tile(src, rng, size))
        summary[split] = {"tiles": n, "paintings_per_style": paintings, "photos": list(photos)}
        if sources is not None:
            for family, _ in sources:
                families[family] = families.get(family, 0) + 1
            summary[split]["sources"] = families
    write_json_atomic(out / MANIFEST, {"kind": "art_tiles", **params, "summary": summary})
    return summary


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
