"""Pre- and post-processing around a graph, driven by the model's metadata: the one home of each step.

Every caller (the in-process models, the batch tool's executors, every
server front end) calls these functions, so the same input gives the same
pixels on every path:

- classifier: classifier_batch (decode, centre square) -> graph -> top_k
- generator:  contract.latents -> graph
- stylizer:   stylize_input (decode, split alpha, max-side fit) -> StylizeInput.padded (to the size multiple)
              -> graph -> stylize_output (crop back, re-attach alpha)

Everything here works on RGB(A) uint8 HxWxC arrays; normalisation is inside
the graphs (artifact contract), so the only work left is geometry.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from artforge.errors import InvalidInputError
from artforge.runtime.imageio import DEFAULT_MAX_PIXELS, ImageLike, flatten_alpha, load_image


def check_positive(value: int | None, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInputError(f"{what} must be a positive integer, got {value!r}")


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB(A) -> (contiguous RGB, alpha plane or None)."""
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB), cv2.extractChannel(image, 3)
    return image, None


def fitted_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) after fit_max_side: downscaled (never upscaled) so the longer side is at most max_side."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale (never upscale) so that the longer side is at most max_side."""
    height, width = image.shape[:2]
    fitted = fitted_size(height, width, max_side)
    if fitted == (height, width):
        return image
    return cv2.resize(image, (fitted[1], fitted[0]), interpolation=cv2.INTER_AREA)


def center_square(image: np.ndarray, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Resize the shorter side to size and centre-crop to size x size.

    Cropping the central square first and resizing it once gives the same
    pixels as resize-then-crop while resizing only what is kept. With `out`
    (a size x size x 3 uint8 array, e.g. one slot of a batch) the result is
    written there instead of a new array.
    """
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top:top + side, left:left + side]  # a view
    if square.shape[2] == 4:
        # Transparent pixels hold arbitrary colours; show the model what a
        # viewer shows on a white page rather than those colours.
        square = flatten_alpha(square)
    if side == size:
        if out is None:
            return np.ascontiguousarray(square)
        out[...] = square
        return out
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), dst=out, interpolation=interpolation)


def classifier_batch(images: Sequence[ImageLike], size: int, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                     source: str | None = None) -> np.ndarray:
    """Decode and centre-crop images straight into one [N,size,size,3] uint8 batch."""
    batch = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        rgb = load_image(image, max_pixels=max_pixels, short_side=size, source=source)
        center_square(rgb, size, out=batch[i])
    return batch


def top_k(probabilities: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest probabilities of one row, largest first; ties keep the label order."""
    return np.argsort(-probabilities, kind="stable")[:k]


@dataclass
class StylizeInput:
    """A decoded stylizer input before padding, and what its output needs back."""

    #: RGB uint8 HxWx3 after the optional max-side downscale: the size the output will have
    rgb: np.ndarray
    #: the alpha plane of an RGBA input (re-attached to the output), else None
    alpha: np.ndarray | None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def nbytes(self) -> int:
        return self.rgb.nbytes + (0 if self.alpha is None else self.alpha.nbytes)

    def padded(self, multiple: int, min_size: int = 1) -> np.ndarray:
        """The graph input for a model of this geometry (see pad_to_multiple)."""
        return pad_to_multiple(self.rgb, multiple, min_size)


def stylize_input(image: ImageLike, max_side: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                  source: str | None = None) -> StylizeInput:
    """Decode an image for a stylizer: RGB plus alpha, downscaled so its longer side is at most max_side."""
    check_positive(max_side, "max_side")
    rgb, alpha = split_alpha(load_image(image, max_pixels=max_pixels, long_side=max_side, source=source))
    if max_side:
        rgb = fit_max_side(rgb, max_side)
        alpha = None if alpha is None else fit_max_side(alpha, max_side)
    return StylizeInput(rgb, alpha)


def stylize_output(styled: np.ndarray, prepared: StylizeInput) -> np.ndarray:
    """A graph output row (padded, or tiled back to full size) cropped to the input's size, alpha re-attached."""
    styled = np.ascontiguousarray(styled[:prepared.height, :prepared.width])
    return styled if prepared.alpha is None else np.dstack((styled, prepared.alpha))


def pad_to_multiple(image: np.ndarray, multiple: int, min_size: int = 1) -> np.ndarray:
    """Pad bottom and right up to a multiple of `multiple` (and at least
    `min_size`) by mirroring the edge (like the ReflectionPad2d style networks
    use), so the network sees plausible content instead of a black border that
    bleeds into the result."""
    height, width = image.shape[:2]
    bottom = max(min_size - height, 0) + -max(height, min_size) % multiple
    right = max(min_size - width, 0) + -max(width, min_size) % multiple
    if not bottom and not right:
        return image
    # Mirroring needs a pad smaller than the image; tiny images repeat their edge instead.
    border = cv2.BORDER_REFLECT_101 if bottom < height and right < width else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(image, 0, bottom, 0, right, border)


def stack(images: Sequence[np.ndarray]) -> np.ndarray:
    """[N,...] batch of same-shape arrays; a single image becomes a view, not a copy."""
    if len(images) == 1:
        return images[0][np.newaxis]
    return np.stack(images)


def group_by_shape(images: Sequence[np.ndarray]) -> dict[tuple[int, ...], list[int]]:
    """Indices of same-shape images, so each group can run as one batch."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape, []).append(i)
    return groups


def pad_batch(batch: np.ndarray, rows: int) -> np.ndarray:
    """A batch grown to `rows` rows with zeros (for a graph exported with a fixed batch size)."""
    if len(batch) >= rows:
        return batch
    return np.concatenate([batch, np.zeros((rows - len(batch), *batch.shape[1:]), dtype=batch.dtype)])


def chunks(count: int, limit: int | None) -> Iterator[slice]:
    """Slices of at most `limit` items covering range(count) (one slice when limit is None)."""
    step = count if not limit else limit
    for start in range(0, count, max(step, 1)):
        yield slice(start, min(start + step, count))
