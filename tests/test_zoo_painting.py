"""Art styles and painted style images of the zoo's recipe: determinism, shapes, colour."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from artforge.zoo.art_styles import ART_STYLES, render_style
from artforge.zoo.painting import STYLE_IMAGES, paint_style_image
from artforge.zoo.photos import source_photos


@pytest.mark.parametrize("style", ART_STYLES)
def test_render_style_keeps_shape_and_changes_pixels(style: str) -> None:
    img = np.ascontiguousarray(source_photos()["coffee"][100:196, 200:296])
    out = render_style(img, style, seed=3)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, render_style(img, style, seed=3))
    if style != "photo":
        assert np.abs(out.astype(int) - img).mean() > 5


@pytest.mark.parametrize("name", STYLE_IMAGES)
def test_painted_style_images_are_sized_colourful_and_deterministic(name: str) -> None:
    img = paint_style_image(name, size=128, seed=5)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert (img.reshape(-1, 3).std(axis=0) > 25).all(), "flat image"
    saturation = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[..., 1]
    assert saturation.mean() > 60, "not colourful"
    assert np.array_equal(img, paint_style_image(name, size=128, seed=5))
    assert not np.array_equal(img, paint_style_image(name, size=128, seed=6))


def test_paint_style_image_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown style image"):
        paint_style_image("cubism")
    with pytest.raises(ValueError, match="unknown style image"):
        paint_style_image("oil:no_such_photo")
