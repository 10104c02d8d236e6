"""Datasets for the shipped model zoo, made offline from photos that ship inside
scikit-image and scikit-learn, or painted procedurally.

Everything here is deterministic for a given seed, so the zoo's provenance can
name a seed instead of shipping data. Images are RGB uint8 HWC in memory and
are written with OpenCV (BGR on disk, as every reader in training/ expects).

- ``source_photos``        the colour photographs used as content
- ``render_style_dataset`` art-style classification data (ImageFolder, held-out photos in test)
- ``paint_style_image``    painted style images for feed-forward style transfer
- ``content_images``       content crops for style-network training
- ``abstract_tiles``       64x64 abstract-art tiles for a DCGAN
- ``sample_photos``        a few photos for the README demo
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

# name -> where it comes from. Only colour photographs: the pencil style renders
# in grey, so grey source photos would blur the line between "photo" and
# "pencil", and style transfer needs colour content to learn colour mapping.
# skimage.data.cat is the same picture as chelsea, and the right view of
# stereo_motorcycle is a near duplicate of the left, so each appears once.
SOURCE_PHOTOS: dict[str, str] = {
    "astronaut": "skimage.data.astronaut",
    "chelsea": "skimage.data.chelsea",
    "coffee": "skimage.data.coffee",
    "rocket": "skimage.data.rocket",
    "motorcycle": "skimage.data.stereo_motorcycle (left view)",
    "immunohistochemistry": "skimage.data.immunohistochemistry",
    "retina": "skimage.data.retina",
    "hubble_deep_field": "skimage.data.hubble_deep_field",
    "china": "sklearn.datasets.load_sample_images (china.jpg)",
    "flower": "sklearn.datasets.load_sample_images (flower.jpg)",
}

# The Hubble field is almost all black: its crops render to the same near-black
# image in every style, which would be label noise for the classifier and empty
# content for style transfer. It stays in SOURCE_PHOTOS for completeness only.
CONTENT_PHOTOS: tuple[str, ...] = tuple(n for n in SOURCE_PHOTOS if n != "hubble_deep_field")

# Test photos differ in kind from each other and from the training ones (an
# animal, a night scene, a close-up of a plant), so test accuracy measures
# recognising the style on new content rather than recognising the scene.
DEFAULT_HOLDOUT: tuple[str, ...] = ("chelsea", "rocket", "flower")

ART_STYLES: tuple[str, ...] = ("photo", "pencil", "watercolor", "oil", "cartoon", "pointillism")

STYLE_IMAGES: tuple[str, ...] = ("mosaic", "swirl", "kandinsky", "waves", "oil:coffee")

# The procedurally painted styles, the ones abstract_tiles draws from.
PAINTED_STYLES: tuple[str, ...] = ("mosaic", "swirl", "kandinsky", "waves")

MANIFEST = "synthetic.json"


# ---------------------------------------------------------------- helpers


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    # One generator per item keyed by names, not by loop position, so an item's
    # pixels do not change when another item is added, held out or skipped on resume.
    entropy = [seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF]
    entropy += [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(entropy)


def _write_image(path: Path, rgb: np.ndarray, quality: int = 92) -> None:
    """Encode and write atomically (temporary file in the same folder, then rename)."""
    ext = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    _write_json(manifest, wanted)


def _progress(items: Iterable, total: int, desc: str, show: bool) -> Iterable:
    return tqdm(items, total=total, desc=desc, unit="img", disable=not show, leave=False)


@functools.cache
def _load_photos() -> dict[str, np.ndarray]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    sk = load_sample_images()
    by_file = {Path(f).stem: img for f, img in zip(sk.filenames, sk.images, strict=True)}
    loaders: dict[str, Callable[[], np.ndarray]] = {
        "astronaut": skimage.data.astronaut,
        "chelsea": skimage.data.chelsea,
        "coffee": skimage.data.coffee,
        "rocket": skimage.data.rocket,
        "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
        "immunohistochemistry": skimage.data.immunohistochemistry,
        "retina": skimage.data.retina,
        "hubble_deep_field": skimage.data.hubble_deep_field,
        "china": lambda: by_file["china"],
        "flower": lambda: by_file["flower"],
    }
    photos = {}
    for name in SOURCE_PHOTOS:
        img = np.ascontiguousarray(loaders[name]()[..., :3], dtype=np.uint8)
        img.setflags(write=False)  # shared by every caller through the cache
        photos[name] = img
    return photos


def source_photos() -> dict[str, np.ndarray]:
    """Every photo in SOURCE_PHOTOS as RGB uint8 HWC (read-only arrays; copy to edit)."""
    return dict(_load_photos())


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


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 1) -> np.ndarray:
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


def _saturate(img: np.ndarray, factor: float, value: float = 1.0) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] *= factor
    hsv[..., 2] *= value
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)


def _hue_shift(img: np.ndarray, degrees: float) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    # OpenCV keeps 8-bit hue in 0..179 (two degrees a step).
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(degrees / 2))) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _impasto(img: np.ndarray, height: np.ndarray, strength: float) -> np.ndarray:
    """Light a paint-thickness map from the top left so strokes stand out as ridges."""
    h = cv2.GaussianBlur(height.astype(np.float32), (0, 0), 1.0)
    gx = cv2.Sobel(h, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(h, cv2.CV_32F, 0, 1, ksize=3)
    shade = 1.0 - strength * (gx + gy) / 255.0
    return np.clip(img.astype(np.float32) * shade[..., None], 0, 255).astype(np.uint8)


def _draw_strokes(
    canvas: np.ndarray,
    height: np.ndarray | None,
    paths: np.ndarray,
    colors: np.ndarray,
    widths: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Paint polylines (paths [N, K, 2] float xy) in order; each stroke also gets
    a random paint thickness on `height`, which _impasto turns into relief."""
    pts = np.round(paths).astype(np.int32)
    heights = rng.uniform(60, 255, len(pts))
    for i in range(len(pts)):
        width = int(widths[i])
        cv2.polylines(canvas, [pts[i]], False, colors[i].tolist(), width, cv2.LINE_AA)
        if height is not None:
            cv2.polylines(height, [pts[i]], False, float(heights[i]), width, cv2.LINE_8)


def _trace(field_x: np.ndarray, field_y: np.ndarray, starts: np.ndarray, steps: int, step: float) -> np.ndarray:
    """Follow a unit vector field from each start point (xy); returns [N, steps+1, 2]."""
    h, w = field_x.shape
    pos = starts.astype(np.float32).copy()
    path = [pos.copy()]
    for _ in range(steps):
        xi = np.clip(pos[:, 0].astype(np.int32), 0, w - 1)
        yi = np.clip(pos[:, 1].astype(np.int32), 0, h - 1)
        pos = pos + step * np.stack([field_x[yi, xi], field_y[yi, xi]], axis=1)
        path.append(pos.copy())
    return np.stack(path, axis=1)


# ---------------------------------------------------------------- art styles


def _style_photo(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return img


def _style_pencil(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gray, color = cv2.pencilSketch(
        img,
        sigma_s=float(rng.uniform(30, 80)),
        sigma_r=float(rng.uniform(0.05, 0.1)),
        shade_factor=float(rng.uniform(0.02, 0.06)),
    )
    # Mostly graphite; some coloured-pencil renders keep the class from being
    # learnable as just "has no colour".
    if rng.random() < 0.7:
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    return color


def _style_watercolor(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    flat = cv2.stylization(img, sigma_s=float(rng.uniform(40, 100)), sigma_r=float(rng.uniform(0.35, 0.6)))
    flat = flat.astype(np.float32)
    # Thinned pigment over white paper: the wash never reaches full saturation.
    paper = np.array([250, 246, 236], np.float32)
    wash = rng.uniform(0.2, 0.35)
    out = flat * (1 - wash) + paper * wash
    # Pigment pools in the paper grain and at the wet edges of each region.
    grain = _smooth_noise(rng, h, w, cell=3, octaves=2) * 0.5 + _smooth_noise(rng, h, w, cell=40) * 0.5
    out *= (1 + 0.07 * grain)[..., None]
    edges = cv2.Canny(flat.astype(np.uint8), 40, 120)
    edges = cv2.GaussianBlur(edges.astype(np.float32), (0, 0), 1.2) / 255.0
    out *= (1 - 0.25 * np.clip(edges, 0, 1))[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def _orientation(img: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors along edges (perpendicular to the smoothed structure tensor's
    gradient), the direction painters follow with their strokes."""
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), sigma)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), sigma)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), sigma)
    theta = 0.5 * np.arctan2(2 * jxy, jxx - jyy) + np.pi / 2
    return np.cos(theta), np.sin(theta)


def _style_oil(img: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    h, w = img.shape[:2]
    unit = max(h, w) / 256 * scale
    src = _saturate(cv2.bilateralFilter(img, 7, 40, 7), rng.uniform(1.2, 1.5))
    coarse = cv2.GaussianBlur(src, (0, 0), 3 * unit)
    canvas = coarse.copy()
    height = np.zeros((h, w), np.float32)
    ox, oy = _orientation(img, 4 * unit)
    # Two layers like an actual painting: broad strokes blocking in colour, then
    # shorter ones restating the detail.
    for spacing, length, width, source in ((5.0, 16.0, 5, coarse), (3.0, 9.0, 3, src)):
        spacing *= unit
        n = int(h * w / spacing**2)
        centres = rng.uniform([0, 0], [w - 1, h - 1], (n, 2)).astype(np.float32)
        xi, yi = centres[:, 0].astype(int), centres[:, 1].astype(int)
        direction = np.stack([ox[yi, xi], oy[yi, xi]], axis=1)
        half = (length * unit * rng.uniform(0.6, 1.4, n))[:, None] * direction / 2
        paths = np.stack([centres - half, centres + half], axis=1)
        colors = source[yi, xi].astype(np.float32) * rng.uniform(0.9, 1.1, (n, 1))
        widths = np.maximum(1, np.round(width * unit * rng.uniform(0.7, 1.3, n)))
        _draw_strokes(canvas, height, paths, np.clip(colors, 0, 255), widths, rng)
    return _impasto(canvas, height, strength=float(rng.uniform(0.15, 0.25)))


def _style_cartoon(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    smooth = img
    for _ in range(int(rng.integers(2, 5))):
        smooth = cv2.bilateralFilter(smooth, 9, 60, 7)
    # Flat fills: a few k-means colours fitted on a subsample (fast, and the
    # palette still comes from this crop).
    k = int(rng.integers(5, 10))
    pixels = smooth.reshape(-1, 3).astype(np.float32)
    sample = pixels[rng.choice(len(pixels), min(len(pixels), 4000), replace=False)]
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    _, _, centres = cv2.kmeans(
        sample, k, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0), 2, cv2.KMEANS_PP_CENTERS
    )
    dist = ((pixels[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    flat = centres[dist.argmin(1)].reshape(img.shape)
    flat = _saturate(np.clip(flat, 0, 255).astype(np.uint8), rng.uniform(1.2, 1.6), 1.05)
    gray = cv2.medianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 5)
    block = int(rng.choice([7, 9, 11]))
    edges = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, rng.uniform(3, 6))
    edges = cv2.erode(edges, np.ones((2, 2), np.uint8)) if rng.random() < 0.5 else edges
    return np.where(edges[..., None] > 0, flat, 20).astype(np.uint8)


def _style_pointillism(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    unit = max(h, w) / 256
    src = _saturate(cv2.GaussianBlur(img, (0, 0), 1.5 * unit), rng.uniform(1.3, 1.8), 1.05)
    # Dots a few pixels wide come out as diamonds when drawn directly; drawing at
    # twice the size and shrinking keeps them round.
    ss = 2
    canvas = np.empty((h * ss, w * ss, 3), np.uint8)
    canvas[:] = rng.uniform([235, 225, 205], [250, 245, 230])
    radius = rng.uniform(1.8, 3.0) * unit
    n = int(h * w / (radius**2 * rng.uniform(2.2, 3.0)))
    xy = rng.uniform([0, 0], [w - 1, h - 1], (n, 2))
    xi, yi = xy[:, 0].astype(int), xy[:, 1].astype(int)
    # Seurat's dots are pure hues placed side by side; a per-dot value jitter
    # and an occasional complementary-tinted dot give that broken colour.
    colors = src[yi, xi].astype(np.float32) * rng.uniform(0.8, 1.2, (n, 1))
    tint = rng.random(n) < 0.06
    colors[tint] = 255 - colors[tint] * 0.6
    colors = np.clip(colors, 0, 255)
    radii = np.maximum(ss, np.round(radius * ss * rng.uniform(0.7, 1.2, n))).astype(int)
    pts = np.round(xy * ss).astype(int)
    for i in range(n):
        cv2.circle(canvas, (int(pts[i, 0]), int(pts[i, 1])), int(radii[i]), colors[i].tolist(), -1, cv2.LINE_AA)
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)


_STYLE_FUNCS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "photo": _style_photo,
    "pencil": _style_pencil,
    "watercolor": _style_watercolor,
    "oil": _style_oil,
    "cartoon": _style_cartoon,
    "pointillism": _style_pointillism,
}


def render_style(img: np.ndarray, style: str, seed: int = 0) -> np.ndarray:
    """Render an RGB uint8 image in one of ART_STYLES (deterministic for a seed)."""
    if style not in _STYLE_FUNCS:
        raise ValueError(f"unknown art style {style!r}; choose one of {', '.join(ART_STYLES)}")
    return _STYLE_FUNCS[style](np.ascontiguousarray(img), _rng(seed, style))


# ---------------------------------------------------------------- datasets


def render_style_dataset(
    out: Path,
    seed: int,
    crops_per_photo: int = 32,
    size: int = 256,
    holdout: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Art-style classification data in ImageFolder layout.

    Each crop of a photo is rendered in every style in ART_STYLES and written to
    out/<split>/<style>/<photo>_<i>.jpg; the test split holds the crops of whole
    photos (``holdout``, default DEFAULT_HOLDOUT) that training never sees.
    Returns the summary for the model card (also kept in out/synthetic.json).
    Re-running with the same arguments resumes, skipping finished files.
    """
    out = Path(out)
    holdout = list(DEFAULT_HOLDOUT if holdout is None else holdout)
    unknown = [h for h in holdout if h not in CONTENT_PHOTOS]
    if unknown:
        raise ValueError(f"holdout photo(s) {unknown} unknown; choose from {', '.join(CONTENT_PHOTOS)}")
    train_photos = [p for p in CONTENT_PHOTOS if p not in holdout]
    if not holdout or not train_photos:
        raise ValueError("holdout must name at least one and not all of the content photos")
    if crops_per_photo < 1 or size < 32:
        raise ValueError(f"crops_per_photo must be >= 1 and size >= 32 (got {crops_per_photo}, {size})")
    params = {"seed": seed, "crops_per_photo": crops_per_photo, "size": size, "holdout": holdout}
    _claim_folder(out, "style_dataset", params)

    photos = source_photos()
    jobs = [
        (split, name, i)
        for split, names in (("train", train_photos), ("test", holdout))
        for name in names
        for i in range(crops_per_photo)
    ]
    for split, name, i in _progress(jobs, len(jobs), "style dataset", progress):
        paths = {s: out / split / s / f"{name}_{i:03d}.jpg" for s in ART_STYLES}
        if all(p.is_file() for p in paths.values()):
            continue
        rng = _rng(seed, "crop", name, i)
        crop = _jitter_photo(_random_crop(photos[name], rng, size), rng)
        for style in ART_STYLES:
            _write_image(paths[style], _STYLE_FUNCS[style](crop, _rng(seed, style, name, i)))

    counts = {split: {s: len(list((out / split / s).glob("*.jpg"))) for s in ART_STYLES} for split in ("train", "test")}
    summary = {
        "styles": list(ART_STYLES),
        "size": size,
        "seed": seed,
        "crops_per_photo": crops_per_photo,
        "train_photos": train_photos,
        "held_out_photos": holdout,
        "counts": counts,
        "sources": {n: SOURCE_PHOTOS[n] for n in CONTENT_PHOTOS},
    }
    _write_json(out / MANIFEST, {"kind": "style_dataset", **params, "summary": summary})
    return summary


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
            rng = _rng(seed, "content", i)
            _write_image(path, _random_crop(photos[name], rng, size, min_scale=0.25), quality=95)
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
            rng = _rng(seed, "tile", i)
            src = paintings[int(rng.integers(len(paintings)))]
            side = int(rng.integers(max(size, 48), 160))
            y, x = (int(v) for v in rng.integers(0, src.shape[0] - side + 1, 2))
            tile = cv2.resize(src[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
            tile = np.rot90(tile, int(rng.integers(4)))
            tile = tile[:, ::-1] if rng.random() < 0.5 else tile
            tile = _hue_shift(np.ascontiguousarray(tile), float(rng.uniform(0, 360)))
            _write_image(path, tile)
        paths.append(path)
    return paths


SAMPLE_PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "motorcycle", "china", "flower")


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
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        quality = 90
        # Step quality down until the file fits; fine detail (china, the cat's
        # fur) needs it, flat photos keep 90.
        while quality > 50:
            ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and data.size <= 95_000:
                break
            quality -= 5
        path = out / f"{name}.jpg"
        _write_image(path, img, quality=quality)
        paths.append(path)
    return paths


# ---------------------------------------------------------------- painted style images

# Palettes in RGB.
_MOSAIC_PALETTE = np.array(
    [[18, 60, 160], [30, 140, 200], [20, 170, 160], [240, 190, 30], [230, 90, 30], [200, 30, 50],
     [245, 240, 225], [40, 130, 70]], np.float32)  # fmt: skip
_NIGHT_PALETTE = np.array(
    [[10, 20, 60], [20, 50, 130], [40, 90, 180], [70, 140, 200], [150, 190, 200], [240, 220, 110],
     [250, 180, 40]], np.float32)  # fmt: skip
_KANDINSKY_COLORS = np.array(
    [[220, 30, 40], [250, 200, 20], [20, 60, 170], [20, 20, 25], [240, 120, 20], [120, 40, 140],
     [30, 140, 80], [90, 170, 220], [235, 90, 140]], np.float32)  # fmt: skip
_WAVES_PALETTE = np.array(
    [[230, 50, 40], [250, 170, 20], [250, 235, 200], [30, 150, 140], [20, 50, 110], [240, 110, 130]],
    np.float32)  # fmt: skip


def _palette_lookup(palette: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Continuous palette: t in [0, 1] runs linearly through the colours."""
    pos = np.clip(t, 0, 1) * (len(palette) - 1)
    i = np.minimum(pos.astype(np.int32), len(palette) - 2)
    f = (pos - i)[..., None]
    return palette[i] * (1 - f) + palette[i + 1] * f


def _paint_mosaic(size: int, rng: np.random.Generator) -> np.ndarray:
    # Tiles stay at least 10 px across so small renders are not all grout.
    spacing = max(10.0, size / 30)
    n = int(size / spacing) + 1
    gy, gx = np.mgrid[0:n, 0:n].astype(np.float32) * spacing
    # Jittered grid: tiles of nearly even size like hand-cut tesserae.
    seeds = np.stack([gx, gy], -1).reshape(-1, 2) + rng.uniform(-0.35, 0.35, (n * n, 2)) * spacing
    seeds = np.clip(np.round(seeds), 0, size - 1).astype(np.int32)
    seeds = np.unique(seeds, axis=0)
    marks = np.full((size, size), 255, np.uint8)
    marks[seeds[:, 1], seeds[:, 0]] = 0
    _, labels = cv2.distanceTransformWithLabels(marks, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    # The design: a radiant sun of concentric rings and rays, warped by noise so
    # it is not geometrically perfect; each tile takes the design's colour at its seed.
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot(xx - cx, yy - cy) / size
    a = np.arctan2(yy - cy, xx - cx)
    warp = _smooth_noise(rng, size, size, cell=size / 4)
    rays = int(rng.integers(8, 16))
    design = np.sin(r * rng.uniform(12, 18) + warp * 1.5) + 0.7 * np.sin(a * rays + r * 4 + warp)
    band = ((design + 1.8) / 3.6 * len(_MOSAIC_PALETTE)).astype(np.int32) % len(_MOSAIC_PALETTE)
    rot = int(rng.integers(len(_MOSAIC_PALETTE)))
    tile_band = band[seeds[:, 1], seeds[:, 0]]
    tile_color = _MOSAIC_PALETTE[(tile_band + rot) % len(_MOSAIC_PALETTE)]
    tile_color *= rng.uniform(0.82, 1.1, (len(seeds), 1))  # glazes vary tile to tile
    table = np.zeros((labels.max() + 1, 3), np.float32)
    table[labels[seeds[:, 1], seeds[:, 0]]] = tile_color
    img = table[labels]
    # Glaze: a soft highlight toward each tile's upper left, plus fine grain.
    dist, _ = cv2.distanceTransformWithLabels(marks, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    img *= (1.08 - 0.2 * np.clip(dist / spacing, 0, 1))[..., None]
    img *= (1 + 0.05 * _smooth_noise(rng, size, size, cell=2))[..., None]
    grout = cv2.morphologyEx(labels.astype(np.float32), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    grout = cv2.dilate(grout.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0
    img[grout] = np.array([45, 40, 36], np.float32) * (1 + 0.15 * rng.standard_normal((int(grout.sum()), 1)))
    return np.clip(img, 0, 255).astype(np.uint8)


def _paint_swirl(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Stream function: broad noise for a turbulent sky plus a few vortices;
    # strokes follow its level lines (the curl), which never cross or converge.
    psi = _smooth_noise(rng, size, size, cell=size / 3, octaves=2) * 1.5
    glow = np.zeros_like(psi)
    for _ in range(int(rng.integers(3, 6))):
        vx, vy = rng.uniform(0.1, 0.9, 2) * size
        rad = rng.uniform(0.06, 0.14) * size
        d2 = ((xx - vx) ** 2 + (yy - vy) ** 2) / rad**2
        psi += rng.choice([-1, 1]) * rng.uniform(1.5, 3) * np.exp(-d2 / 2)
        glow += np.exp(-d2 / 1.5)
    gy, gx = np.gradient(psi)
    norm = np.hypot(gx, gy) + 1e-6
    fx, fy = gy / norm, -gx / norm
    # Colour: deep blues drifting with the flow, burning yellow in the vortex cores.
    t = 0.35 + 0.25 * _smooth_noise(rng, size, size, cell=size / 4) + 0.5 * np.clip(glow, 0, 1)
    base = _palette_lookup(_NIGHT_PALETTE, t)
    canvas = np.clip(cv2.GaussianBlur(base, (0, 0), size / 60), 0, 255).astype(np.uint8)
    height = np.zeros((size, size), np.float32)
    unit = size / 512
    for count, steps, width in ((5000, 8, 6), (7000, 5, 3)):
        n = int(count * unit**2)
        starts = rng.uniform(0, size - 1, (n, 2))
        paths = _trace(fx, fy, starts, steps, step=3.0 * unit)
        xi, yi = starts[:, 0].astype(int), starts[:, 1].astype(int)
        tt = t[yi, xi] + rng.normal(0, 0.06, n)
        colors = _palette_lookup(_NIGHT_PALETTE, tt) * rng.uniform(0.85, 1.15, (n, 1))
        widths = np.maximum(1, np.round(width * unit * rng.uniform(0.7, 1.3, n)))
        _draw_strokes(canvas, height, paths, np.clip(colors, 0, 255), widths, rng)
    return _impasto(canvas, height, strength=0.35)


def _paper(size: int, rng: np.random.Generator) -> np.ndarray:
    base = np.array([236, 226, 200], np.float32)
    stain = _smooth_noise(rng, size, size, cell=size / 3, octaves=3)
    tint = np.array([-10, 0, 25], np.float32) * stain[..., None]  # bluish-cream blotches
    grain = 8 * _smooth_noise(rng, size, size, cell=2)
    return base + tint + grain[..., None]


def _paint_kandinsky(size: int, rng: np.random.Generator) -> np.ndarray:
    img = _paper(size, rng)
    u = size / 512

    def color() -> tuple[float, ...]:
        return tuple(float(c) for c in _KANDINSKY_COLORS[rng.integers(len(_KANDINSKY_COLORS))])

    def blend(layer: np.ndarray, mask: np.ndarray, alpha: float) -> None:
        m = (mask.astype(np.float32) / 255.0 * alpha)[..., None]
        img[:] = img * (1 - m) + layer * m

    def pt() -> tuple[int, int]:
        return int(rng.uniform(0, size)), int(rng.uniform(0, size))

    # Translucent colour fields first, then solid shapes, then black line work on
    # top: the layering Kandinsky's compositions are built from.
    for _ in range(4):
        layer = np.zeros_like(img)
        mask = np.zeros((size, size), np.uint8)
        poly = rng.uniform(0, size, (int(rng.integers(3, 6)), 2)).astype(np.int32)
        cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA)
        layer[:] = color()
        blend(layer, mask, float(rng.uniform(0.35, 0.6)))
    for _ in range(int(rng.integers(7, 11))):
        kind = rng.choice(["rings", "disc", "triangle", "checker"], p=[0.3, 0.3, 0.25, 0.15])
        layer = np.zeros_like(img)
        mask = np.zeros((size, size), np.uint8)
        c = pt()
        if kind == "rings":
            radius = int(rng.uniform(40, 110) * u)
            rings = int(rng.integers(3, 6))
            for k in range(rings):
                r = int(radius * (1 - k / rings))
                cv2.circle(layer, c, r, color(), -1, cv2.LINE_AA)
            cv2.circle(mask, c, radius, 255, -1, cv2.LINE_AA)
            alpha = 0.95
        elif kind == "disc":
            radius = int(rng.uniform(15, 80) * u)
            cv2.circle(layer, c, radius, color(), -1, cv2.LINE_AA)
            cv2.circle(mask, c, radius, 255, -1, cv2.LINE_AA)
            cv2.circle(layer, c, radius, (20, 20, 25), max(1, int(3 * u)), cv2.LINE_AA)
            alpha = float(rng.uniform(0.7, 1.0))
        elif kind == "triangle":
            s = rng.uniform(60, 180) * u
            tri = (np.array(c) + rng.uniform(-s, s, (3, 2))).astype(np.int32)
            cv2.fillPoly(layer, [tri], color(), cv2.LINE_AA)
            cv2.fillPoly(mask, [tri], 255, cv2.LINE_AA)
            alpha = float(rng.uniform(0.75, 1.0))
        else:
            cells, cs = int(rng.integers(3, 6)), int(rng.uniform(12, 25) * u)
            a, b = color(), color()
            for i in range(cells):
                for j in range(cells):
                    p0 = (c[0] + i * cs, c[1] + j * cs)
                    cv2.rectangle(layer, p0, (p0[0] + cs, p0[1] + cs), a if (i + j) % 2 else b, -1)
            cv2.rectangle(mask, c, (c[0] + cells * cs, c[1] + cells * cs), 255, -1)
            alpha = 0.9
        blend(layer, mask, alpha)
    ink = (20, 20, 25)
    canvas = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(6, 10))):
        cv2.line(canvas, pt(), pt(), ink, max(1, int(rng.uniform(1, 7) * u)), cv2.LINE_AA)
    for _ in range(int(rng.integers(3, 6))):
        axes = (int(rng.uniform(40, 160) * u), int(rng.uniform(20, 120) * u))
        start = float(rng.uniform(0, 360))
        cv2.ellipse(
            canvas,
            pt(),
            axes,
            float(rng.uniform(0, 180)),
            start,
            start + float(rng.uniform(60, 200)),
            color(),
            max(2, int(rng.uniform(3, 8) * u)),
            cv2.LINE_AA,
        )
    for _ in range(int(rng.integers(10, 20))):
        cv2.circle(canvas, pt(), max(2, int(rng.uniform(3, 9) * u)), color(), -1, cv2.LINE_AA)
    return canvas


def _paint_waves(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # Op-art bands: level sets of a tilted, noise-warped sine field, each band a
    # flat colour with a dark edge, like a screen print.
    angle = rng.uniform(0, np.pi)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    across = -xx * np.sin(angle) + yy * np.cos(angle)
    warp = _smooth_noise(rng, size, size, cell=size / 3, octaves=2)
    field = across + 0.08 * np.sin(along * rng.uniform(8, 14) + warp * 3) + 0.06 * warp
    bands = field * rng.uniform(14, 22)
    idx = np.floor(bands).astype(np.int32) % len(_WAVES_PALETTE)
    img = _WAVES_PALETTE[(idx * int(rng.choice([1, 5]))) % len(_WAVES_PALETTE)].copy()
    frac = bands - np.floor(bands)
    # Shade each band toward its edges so it reads as a folded ribbon, and draw
    # a dark line where bands meet.
    img *= (0.8 + 0.35 * np.sin(frac * np.pi))[..., None]
    edge = (frac < 0.06) | (frac > 0.96)
    img[edge] = [25, 20, 35]
    img *= (1 + 0.06 * _smooth_noise(rng, size, size, cell=2))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


_PAINTERS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "mosaic": _paint_mosaic,
    "swirl": _paint_swirl,
    "kandinsky": _paint_kandinsky,
    "waves": _paint_waves,
}


def _stylized_photo(style: str, photo: str, size: int, rng: np.random.Generator) -> np.ndarray:
    img = source_photos()[photo]
    h, w = img.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    crop = cv2.resize(img[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
    if style == "oil":
        # Exaggerated strokes and saturation: a style image must carry strong texture.
        return _saturate(_style_oil(crop, rng, scale=1.6), 1.3)
    return _STYLE_FUNCS[style](crop, rng)


def paint_style_image(name: str, size: int = 512, seed: int = 0) -> np.ndarray:
    """A style image (RGB uint8, size x size) for style-transfer training.

    ``name`` is a painted style (mosaic, swirl, kandinsky, waves) or
    ``"<art style>:<photo>"``, a content photo rendered in one of ART_STYLES
    (e.g. ``"oil:coffee"``). STYLE_IMAGES lists the ones the zoo uses.
    """
    if size < 32:
        raise ValueError(f"style image size must be at least 32 pixels (got {size})")
    rng = _rng(seed, "paint", name, size)
    if name in _PAINTERS:
        return _PAINTERS[name](size, rng)
    style, _, photo = name.partition(":")
    if style in _STYLE_FUNCS and photo in SOURCE_PHOTOS:
        return _stylized_photo(style, photo, size, rng)
    raise ValueError(
        f"unknown style image {name!r}; choose one of {', '.join(_PAINTERS)} "
        f"or '<style>:<photo>' with style in {ART_STYLES} and photo in {tuple(SOURCE_PHOTOS)}"
    )
