"""GAN quality measures: Fréchet distance, precision/recall and near-duplicates, on real feature
networks and real generators (a DCGAN made to collapse on purpose)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from artforge.models.dcgan import Generator
from artforge.quality.gan_metrics import (
    FeatureExtractor,
    RealReference,
    feature_stats,
    frechet_distance,
    near_duplicate_rate,
    precision_recall,
    score_features,
)


def gaussian(n: int, dim: int = 16, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)) + shift


def test_frechet_distance_of_a_set_with_itself_is_zero() -> None:
    features = gaussian(400)
    assert frechet_distance(feature_stats(features), feature_stats(features)) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_grows_with_a_shift_and_matches_the_closed_form() -> None:
    base = feature_stats(gaussian(2000))
    distances = [frechet_distance(base, feature_stats(gaussian(2000, shift=s, seed=1))) for s in (0.0, 0.5, 1.0, 2.0)]
    assert distances == sorted(distances) and distances[0] < distances[1]
    # Same covariance, means apart by s in each of 16 dimensions: FD = 16 s^2 (plus sampling noise).
    assert distances[3] == pytest.approx(16 * 4, rel=0.1)
    # Diagonal covariances: FD = sum (sigma_a - sigma_b)^2 when the means agree.
    wide = feature_stats(gaussian(4000, seed=2) * 2)
    assert frechet_distance(feature_stats(gaussian(4000, seed=3)), wide) == pytest.approx(16, rel=0.15)


def test_precision_recall_and_duplicates_of_matching_sets() -> None:
    real, fake = gaussian(300), gaussian(300, seed=1)
    precision, recall = precision_recall(real, fake)
    assert precision > 0.7 and recall > 0.7  # k-NN balls in 16-d miss some points of the same distribution
    assert near_duplicate_rate(real, fake) < 0.03  # real data scores 1 % by construction


def test_collapsed_features_are_flagged() -> None:
    real = gaussian(300)
    collapsed = gaussian(300, seed=1) * 0.01 + real[0]  # every sample next to one real point
    precision, recall = precision_recall(real, collapsed)
    assert recall < 0.05
    assert near_duplicate_rate(real, collapsed) > 0.9


def test_measures_refuse_too_few_samples() -> None:
    with pytest.raises(ValueError, match="needs more than 3"):
        precision_recall(gaussian(3), gaussian(10))
    with pytest.raises(ValueError, match="at least 2"):
        feature_stats(gaussian(1))


def painted_tiles(n: int, seed: int) -> np.ndarray:
    """Varied 64x64 tiles: random backgrounds with a random bright disc and bar."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    tiles = np.empty((n, 64, 64, 3), np.uint8)
    for i in range(n):
        tile = np.empty((64, 64, 3))
        tile[:] = rng.integers(0, 256, 3)
        cy, cx, r = rng.integers(8, 56), rng.integers(8, 56), rng.integers(5, 20)
        tile[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
        y0 = rng.integers(0, 56)
        tile[y0:y0 + 6, :] = rng.integers(0, 256, 3)
        tiles[i] = tile
    return tiles


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    # 64 px (the images' own size) keeps the test quick; the measures do not depend on the size.
    return FeatureExtractor(size=64)


def test_image_features_frechet_distance(extractor: FeatureExtractor) -> None:
    real = painted_tiles(48, seed=0)
    features = extractor(real)
    assert features.shape == (48, 1280)
    # uint8 NHWC and float NCHW in [-1, 1] are the same pictures
    as_float = torch.from_numpy(real).permute(0, 3, 1, 2).float() / 127.5 - 1
    np.testing.assert_allclose(extractor(as_float), features, atol=1e-3)
    stats = feature_stats(features)
    assert frechet_distance(stats, stats) == pytest.approx(0, abs=1e-6)
    darker = [frechet_distance(stats, feature_stats(extractor((real * f).astype(np.uint8)))) for f in (0.8, 0.5, 0.2)]
    assert 0 < darker[0] < darker[1] < darker[2]


def test_a_generator_built_to_collapse_is_flagged(extractor: FeatureExtractor) -> None:
    torch.manual_seed(0)
    generator = Generator(nz=16, ngf=8).eval()
    # Collapse on purpose: the first layer ignores the latent, so every sample is the same image.
    with torch.no_grad():
        generator.net[0].weight.zero_()
        generator.net[1].bias.normal_(0, 1)
        collapsed = generator(torch.randn(48, 16))
    assert (collapsed - collapsed[0]).abs().max() < 1e-5

    reference = RealReference(extractor, painted_tiles(48, seed=0))
    varied = reference.score(painted_tiles(48, seed=1))  # held-out real tiles: what a perfect generator gives
    flagged = reference.score(collapsed)
    assert flagged["duplicates"] > 0.9 and varied["duplicates"] < 0.1
    assert flagged["recall"] < 0.1 < varied["recall"]
    assert flagged["fd"] > 2 * varied["fd"]
    assert set(flagged) == {"fd", "precision", "recall", "duplicates", "real", "generated"}
    assert score_features(reference.features, reference.features)["fd"] == pytest.approx(0, abs=1e-6)
