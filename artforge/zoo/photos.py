"""The colour photographs that ship inside scikit-image and scikit-learn: the
zoo's only source of content, so that nothing is downloaded."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

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

# Black-and-white photographs, for the art-style classifier only: nine colour
# photos are too few scenes for it to tell a style from a subject (it called
# the held-out cat's pointillist and blue swirl renderings "photo" and the
# plain night-time rocket "mosaic"), and these add fine natural textures
# (grass, gravel, brick) and everyday scenes.
# Style networks keep to colour content (CONTENT_PHOTOS).
GREY_PHOTOS: dict[str, str] = {
    name: f"skimage.data.{name} (grey)" for name in ("camera", "coins", "moon", "clock", "brick", "grass", "gravel")
}
#: the photos the classifier's data is cut from
CLASSIFIER_PHOTOS: tuple[str, ...] = CONTENT_PHOTOS + tuple(GREY_PHOTOS)


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


@functools.cache
def _load_grey_photos() -> dict[str, np.ndarray]:
    import skimage.data

    photos = {}
    for name in GREY_PHOTOS:
        grey = np.asarray(getattr(skimage.data, name)(), dtype=np.uint8)
        img = np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
        img.setflags(write=False)
        photos[name] = img
    return photos


def classifier_photos() -> dict[str, np.ndarray]:
    """Every photo in CLASSIFIER_PHOTOS as RGB uint8 HWC (grey ones in three equal channels; read-only)."""
    colour = _load_photos()
    return {name: colour[name] for name in CONTENT_PHOTOS} | _load_grey_photos()
