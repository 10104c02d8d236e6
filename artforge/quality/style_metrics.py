"""Network-free measures of style transfer: colour, texture and content.

A stylized photo is judged against two references: the style image (did the
output take on its colours and its texture?) and the content photo (are the
photo's shapes still there?). None of these passes through a neural network,
so a loss network cannot grade its own homework:

- ``colour_distance``: sliced Wasserstein distance between the two images'
  pixel distributions in CIELAB, in Lab units (about one just-noticeable
  difference each). It sees a palette that is missing (the yellow of a style
  that never appears) as well as a colour cast; lower is closer.
- ``texture_distance``: relative distance between the Gram matrices of a
  fixed Gabor filter bank (several wavelengths and orientations, even and odd
  phase, half-wave rectified like a CNN layer) on the luminance. Texture
  scale and direction, stroke density and sharpness move it; lower is closer.
- ``edge_ssim``: SSIM between the gradient-magnitude maps of the output and of
  the content photo; 1 keeps every edge, near 0 keeps none of them.

Every function takes RGB uint8 HxWx3 arrays; images larger than ``max_side``
are downscaled first so that the numbers are about the picture, not its pixel
count, and cost a few milliseconds.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from skimage.metrics import structural_similarity

#: images are measured at most this many pixels on their longer side
MAX_SIDE = 256
#: random projection directions of the sliced Wasserstein distance (fixed seed: the same images give the same number)
PROJECTIONS = 64
#: quantiles compared along each projection (the images need not have the same pixel count)
QUANTILES = 256
#: Gabor wavelengths in pixels (at MAX_SIDE) and orientations in degrees of the texture filter bank
GABOR_WAVELENGTHS = (4.0, 8.0, 16.0)
GABOR_ORIENTATIONS = (0.0, 45.0, 90.0, 135.0)


def _rgb(image: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"{name} must be an RGB uint8 array of shape HxWx3, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
    return np.ascontiguousarray(image[..., :3])


def fit_side(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """The image downscaled (area filter) so that its longer side is at most max_side."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _lab(image: np.ndarray) -> np.ndarray:
    """[N, 3] float32 CIELAB pixels (L 0..100, a and b about -128..127)."""
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return lab.reshape(-1, 3)


@functools.cache
def _directions(count: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    d = rng.normal(size=(count, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def colour_distance(image: np.ndarray, reference: np.ndarray, max_side: int = MAX_SIDE) -> float:
    """Sliced Wasserstein-1 distance between the Lab colour distributions of two images.

    Both pixel clouds are projected onto PROJECTIONS fixed random directions;
    along each, the distance between two 1-D distributions is the mean gap
    between their quantiles. A uniform shift of every pixel by a Lab vector v
    gives the mean of |v . d| over the directions (about 0.5 |v|)."""
    a = _lab(fit_side(_rgb(image, "image"), max_side))
    b = _lab(fit_side(_rgb(reference, "reference"), max_side))
    dirs = _directions(PROJECTIONS)
    levels = (np.arange(QUANTILES) + 0.5) / QUANTILES
    qa = np.quantile(a @ dirs.T, levels, axis=0)
    qb = np.quantile(b @ dirs.T, levels, axis=0)
    return float(np.abs(qa - qb).mean())


@functools.cache
def _gabor_bank() -> tuple[np.ndarray, ...]:
    """Zero-mean, unit-energy Gabor kernels: every wavelength x orientation, even and odd phase."""
    kernels = []
    for wavelength in GABOR_WAVELENGTHS:
        sigma = 0.56 * wavelength  # about one octave of bandwidth
        size = int(2 * round(3 * sigma) + 1)
        for theta in GABOR_ORIENTATIONS:
            for psi in (0.0, np.pi / 2):
                k = cv2.getGaborKernel((size, size), sigma, np.deg2rad(theta), wavelength, 1.0, psi, cv2.CV_32F)
                k = k - k.mean()  # no response to flat regions: brightness is colour_distance's business
                kernels.append(k / np.linalg.norm(k))
    return tuple(kernels)


def _luminance(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def gabor_gram(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """[K, K] Gram matrix of the half-wave rectified Gabor responses of the image's luminance.

    Each kernel's response is split into its positive and negative parts (as a
    ReLU would), so the Gram sees where strokes are light or dark, not only
    how strong the band is; a border of half the largest kernel is dropped."""
    gray = _luminance(fit_side(_rgb(image, "image"), max_side))
    bank = _gabor_bank()
    margin = bank[-1].shape[0] // 2
    h, w = gray.shape
    if h <= 2 * margin or w <= 2 * margin:
        raise ValueError(f"image of {w}x{h} is too small for the texture filter bank; "
                         f"it needs more than {2 * margin} pixels on each side")
    responses = []
    for kernel in bank:
        r = cv2.filter2D(gray, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT)[margin:h - margin, margin:w - margin]
        responses += [np.maximum(r, 0), np.maximum(-r, 0)]
    feats = np.stack(responses).reshape(len(responses), -1).astype(np.float64)
    return feats @ feats.T / feats.shape[1]


def gram_distance(gram: np.ndarray, reference_gram: np.ndarray) -> float:
    """||G - G_ref||_F / ||G_ref||_F: 0 for the same texture statistics; 1 for none of the reference's."""
    return float(np.linalg.norm(gram - reference_gram)) / max(float(np.linalg.norm(reference_gram)), 1e-12)


def texture_distance(image: np.ndarray, reference: np.ndarray, max_side: int = MAX_SIDE) -> float:
    """Relative Gram distance of the Gabor filter bank between an image and a reference texture."""
    return gram_distance(gabor_gram(image, max_side), gabor_gram(reference, max_side))


def edge_map(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """Sobel gradient magnitude of the luminance, scaled so that its 99th percentile is 1 (then clipped):
    the comparison is about where the edges are, not how much contrast the style gave them."""
    gray = cv2.GaussianBlur(_luminance(fit_side(_rgb(image, "image"), max_side)), (0, 0), 1.0)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.sqrt(gx * gx + gy * gy)
    top = float(np.percentile(magnitude, 99))
    return np.clip(magnitude / top, 0, 1) if top > 0 else magnitude


def edge_ssim(image: np.ndarray, content: np.ndarray, max_side: int = MAX_SIDE) -> float:
    """SSIM of the edge maps of a stylized image and its content photo (resized to the content's size)."""
    image, content = _rgb(image, "image"), _rgb(content, "content")
    content = fit_side(content, max_side)
    if image.shape[:2] != content.shape[:2]:
        image = cv2.resize(image, (content.shape[1], content.shape[0]), interpolation=cv2.INTER_AREA)
    a, b = edge_map(image, max_side), edge_map(content, max_side)
    return float(structural_similarity(a, b, data_range=1.0))


@dataclass(frozen=True)
class StyleScores:
    """The three measures for one stylized image (or their mean over several)."""

    colour: float  # sliced Wasserstein in Lab to the style image; lower is closer
    texture: float  # Gabor Gram distance to the style image; lower is closer
    edges: float  # edge-map SSIM to the content photo; higher keeps more of it

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


class StyleReference:
    """A style image measured once, for scoring many stylized photos against it."""

    def __init__(self, style: np.ndarray, max_side: int = MAX_SIDE):
        self.max_side = max_side
        self.style = fit_side(_rgb(style, "style"), max_side)
        self.gram = gabor_gram(self.style, max_side)

    def score(self, stylized: np.ndarray, content: np.ndarray) -> StyleScores:
        return StyleScores(colour=colour_distance(stylized, self.style, self.max_side),
                           texture=gram_distance(gabor_gram(stylized, self.max_side), self.gram),
                           edges=edge_ssim(stylized, content, self.max_side))


def mean_scores(scores: Iterable[StyleScores]) -> StyleScores:
    items = list(scores)
    if not items:
        raise ValueError("no scores to average")
    return StyleScores(*(float(np.mean([getattr(s, f) for s in items])) for f in ("colour", "texture", "edges")))
