"""The network-free style metrics: identity gives the ideal value, a known
perturbation (colour shift, blur, a different texture) moves each as it should."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from artforge.quality.style_metrics import (
    StyleReference,
    StyleScores,
    colour_distance,
    edge_ssim,
    fit_side,
    gabor_gram,
    mean_scores,
    texture_distance,
)


def _painting(seed: int = 0, side: int = 128) -> np.ndarray:
    """A colourful image with strokes at several scales (no photo needed)."""
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
    for _ in range(40):
        p = rng.integers(0, side, 4)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(image, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), colour, int(rng.integers(1, 4)))
    return image


def _stripes(period: int, side: int = 128, vertical: bool = True) -> np.ndarray:
    x = np.arange(side)
    wave = (127.5 + 127.5 * np.sin(2 * np.pi * x / period)).astype(np.uint8)
    plane = np.tile(wave, (side, 1)) if vertical else np.tile(wave[:, None], (1, side))
    return np.repeat(plane[..., None], 3, axis=2)


def test_identity_gives_the_ideal_value_of_each_metric() -> None:
    image = _painting()
    assert colour_distance(image, image) == pytest.approx(0, abs=1e-6)
    assert texture_distance(image, image) == pytest.approx(0, abs=1e-9)
    assert edge_ssim(image, image) == pytest.approx(1, abs=1e-9)
    assert StyleReference(image).score(image, image) == StyleScores(colour=0.0, texture=0.0, edges=1.0)


def test_colour_distance_measures_a_uniform_shift_in_lab_units() -> None:
    image = _painting()
    lab = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    distances = []
    for shift in (5.0, 10.0, 20.0):
        moved = lab + np.array([0, 0, shift], np.float32)  # towards yellow, b* only
        rgb = np.clip(cv2.cvtColor(moved, cv2.COLOR_Lab2RGB) * 255, 0, 255).round().astype(np.uint8)
        distances.append(colour_distance(rgb, image))
    # A shift v projects onto unit directions d as |v.d|: its mean over directions
    # uniform on the sphere is |v| / 2 (rounding and gamut clipping blur it a little).
    assert distances[0] < distances[1] < distances[2]
    assert distances[2] == pytest.approx(10.0, rel=0.25)
    # Texture and edges barely notice a colour shift.
    assert texture_distance(image, image) < 0.05 and edge_ssim(image, image) > 0.95


def test_colour_distance_sees_a_missing_colour() -> None:
    blue = np.zeros((64, 64, 3), np.uint8)
    blue[...] = (40, 80, 200)
    with_yellow = blue.copy()
    with_yellow[:16] = (240, 200, 40)  # a quarter of the picture is yellow
    assert colour_distance(blue, with_yellow) > 10
    assert colour_distance(with_yellow, with_yellow) == pytest.approx(0, abs=1e-6)


def test_texture_distance_grows_with_blur_and_tells_textures_apart() -> None:
    image = _painting()
    blurred = [cv2.GaussianBlur(image, (0, 0), sigma) for sigma in (0.7, 1.5, 3.0)]
    distances = [texture_distance(b, image) for b in blurred]
    assert 0 < distances[0] < distances[1] < distances[2]
    fine, coarse = _stripes(8), _stripes(32)
    # Same texture, shifted: near 0. A different scale or orientation: far.
    assert texture_distance(np.roll(fine, 3, axis=1), fine) < 0.1
    assert texture_distance(coarse, fine) > 0.5
    assert texture_distance(_stripes(8, vertical=False), fine) > 0.5
    gram = gabor_gram(image)
    assert gram.shape == (48, 48) and np.allclose(gram, gram.T)


def test_edge_ssim_falls_with_blur_and_ignores_colour() -> None:
    image = _painting()
    ssims = [edge_ssim(cv2.GaussianBlur(image, (0, 0), sigma), image) for sigma in (1.0, 2.0, 4.0)]
    assert 1 > ssims[0] > ssims[1] > ssims[2]
    inverted = 255 - image  # same edges, other colours
    assert edge_ssim(inverted, image) > 0.95
    assert edge_ssim(_painting(seed=1), image) < 0.3  # another picture's edges
    # A stylized image at another size is compared at the content's size.
    assert edge_ssim(cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA), image) > 0.6


def test_large_images_are_measured_at_max_side() -> None:
    big = cv2.resize(_painting(), (600, 400), interpolation=cv2.INTER_CUBIC)
    assert fit_side(big).shape == (171, 256, 3)
    assert fit_side(big[:100, :100]).shape == (100, 100, 3)
    assert colour_distance(big, big) == pytest.approx(0, abs=1e-6)


def test_mean_scores_and_bad_input() -> None:
    mean = mean_scores([StyleScores(1, 0.2, 0.5), StyleScores(3, 0.4, 0.7)])
    assert mean == StyleScores(2.0, pytest.approx(0.3), pytest.approx(0.6))
    assert mean.as_dict() == {"colour": 2.0, "texture": 0.3, "edges": 0.6}
    with pytest.raises(ValueError, match="no scores"):
        mean_scores([])
    with pytest.raises(ValueError, match="RGB uint8"):
        colour_distance(np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        texture_distance(np.zeros((20, 20, 3), np.uint8), np.zeros((64, 64, 3), np.uint8))
