"""How good and how varied a generator's images are, against held-out real images.

All measures work in one feature space: the pooled 1280-d features of the
ImageNet EfficientNet-Lite0 the project already ships (no Inception weights
exist offline), so the numbers are "FID-like", comparable with each other but
not with published FIDs.

- Fréchet distance (Heusel et al. 2017): the distance between Gaussians fitted
  to real and generated features. It falls as samples look more like the real
  images *and* cover as much of their variety. It is biased upwards for small
  sets, so only compare values computed with the same sample counts.
- Precision and recall (Kynkäänniemi et al. 2019): the share of generated
  samples that fall inside the real images' k-NN manifold (fidelity), and the
  share of real images inside the generated samples' manifold (coverage).
  Mode collapse shows as low recall.
- Near-duplicate rate: the share of generated pairs closer to each other than
  the closest `quantile` of real pairs. A pair distribution does not depend on
  the set size, so real data scores `quantile` (1 %) by construction whatever
  the sample count, and a collapsed generator scores many times that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from artforge.models.efficientnet_lite import EfficientNetLite0, load_imagenet

#: side the 64-px images are upsampled to before the feature network (its 4x4 last map at 128 px)
FEATURE_SIZE = 128
#: neighbourhood size of the precision/recall manifolds (the paper's choice)
PR_NEIGHBOURS = 3
#: the share of real pairs that counts as "near-duplicate" distance
DUPLICATE_QUANTILE = 0.01


class FeatureExtractor:
    """Pooled EfficientNet-Lite0 features of RGB images (batches of uint8 NHWC or float NCHW in [-1, 1])."""

    def __init__(self, size: int = FEATURE_SIZE, batch_size: int = 50, weights: str | None = None,
                 network: EfficientNetLite0 | None = None) -> None:
        self.size = size
        self.batch_size = batch_size
        self.network = (network or load_imagenet(weights)).eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """[N, 1280] float64 features; uint8 input is NHWC 0..255, float input NCHW -1..1."""
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            if isinstance(chunk, np.ndarray):
                if chunk.dtype != np.uint8 or chunk.ndim != 4 or chunk.shape[-1] != 3:
                    raise ValueError(f"images must be uint8 [N, H, W, 3], got {chunk.dtype} {chunk.shape}")
                rgb = torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2).float()
            else:
                rgb = (chunk.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
            rgb = F.interpolate(rgb, size=(self.size, self.size), mode="bilinear", align_corners=False)
            out.append(self.network.features(self.network.normalize(rgb)).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1280))


@dataclass(frozen=True)
class FeatureStats:
    mean: np.ndarray
    cov: np.ndarray
    count: int


def feature_stats(features: np.ndarray) -> FeatureStats:
    if len(features) < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {len(features)}")
    features = np.asarray(features, np.float64)
    return FeatureStats(features.mean(axis=0), np.cov(features, rowvar=False), len(features))


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^1/2).

    Tr((C_a C_b)^1/2) is the sum of square roots of the eigenvalues of
    C_a^1/2 C_b C_a^1/2, a symmetric PSD matrix, so two symmetric
    eigendecompositions replace scipy's general (and sometimes complex) sqrtm.
    """
    diff = a.mean - b.mean
    w, v = np.linalg.eigh(a.cov)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root_a @ b.cov @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(max(0.0, diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * trace_root))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return torch.cdist(torch.from_numpy(np.asarray(a, np.float64)), torch.from_numpy(np.asarray(b, np.float64))).numpy()


def _knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    d = _distances(features, features)
    return np.sort(d, axis=1)[:, k]  # column 0 is the point itself


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = PR_NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al.): k-NN balls around each set's points."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} real and generated samples")
    cross = _distances(real, fake)  # [R, F]
    precision = (cross <= _knn_radii(real, k)[:, None]).any(axis=0).mean()
    recall = (cross <= _knn_radii(fake, k)[None, :]).any(axis=1).mean()
    return float(precision), float(recall)


def _pair_distances(features: np.ndarray) -> np.ndarray:
    d = _distances(features, features)
    return d[np.triu_indices(len(features), k=1)]


def near_duplicate_rate(real: np.ndarray, fake: np.ndarray, quantile: float = DUPLICATE_QUANTILE) -> float:
    """Share of generated pairs closer than the `quantile` of real pair distances (real data: `quantile`)."""
    if min(len(real), len(fake)) < 2:
        raise ValueError("near-duplicate rate needs at least 2 real and 2 generated samples")
    threshold = np.quantile(_pair_distances(real), quantile)
    return float((_pair_distances(fake) < threshold).mean())


class RealReference:
    """Held-out real images, embedded once, to score generated sets against (cheap to reuse during training)."""

    def __init__(self, extractor: FeatureExtractor, real_images: np.ndarray | torch.Tensor) -> None:
        self.extractor = extractor
        self.features = extractor(real_images)
        self.stats = feature_stats(self.features)

    def score(self, fake_images: np.ndarray | torch.Tensor) -> dict[str, Any]:
        return score_features(self.features, self.extractor(fake_images), self.stats)


def score_features(real: np.ndarray, fake: np.ndarray, real_stats: FeatureStats | None = None) -> dict[str, Any]:
    """Every measure of this module for one real and one generated feature set.

    Precision, recall and duplicates compare equal-size sets (the first
    min(len) of each), which the k-NN measures need to be comparable.
    """
    n = min(len(real), len(fake))
    precision, recall = precision_recall(real[:n], fake[:n])
    return {
        "fd": frechet_distance(real_stats or feature_stats(real), feature_stats(fake)),
        "precision": precision,
        "recall": recall,
        "duplicates": near_duplicate_rate(real[:n], fake[:n]),
        "real": len(real),
        "generated": len(fake),
    }
