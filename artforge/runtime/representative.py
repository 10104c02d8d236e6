"""Representative inputs of a model: what `auto` compares a candidate's outputs with fp32's on.

Derived from the model alone, the same on every machine:

- generator: COUNT_GENERATOR latents drawn with the contract's seeded draw (SEED);
- classifier and stylizer: the images in `<repo>/<name>/samples/` when the
  owner put some there (`artforge budget MODEL --samples DIR` copies them),
  else seeded procedural images: smooth colour fields with hard-edged shapes
  and a little grain, so both flat regions and edges (where reduced precision
  shows first) are present. Classifiers get their input size, stylizers a
  square of `side` pixels (auto's trial side, rounded up to the size multiple).

Few and small on purpose: they run once through every candidate when a model
loads (the trial's cost is load time for a server).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from artforge import contract
from artforge.contract import ModelMetadata

#: the folder of owner-chosen sample images, in a model's folder (<repo>/<name>/samples/)
SAMPLES_DIR = "samples"
SAMPLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SEED = 20261129
COUNT_CLASSIFIER = 8
COUNT_STYLIZER = 2
COUNT_GENERATOR = 16


def sample_files(model_dir: Path | None) -> list[Path]:
    """The sample images in <model_dir>/samples/, sorted ([] without the folder)."""
    if model_dir is None or not (Path(model_dir) / SAMPLES_DIR).is_dir():
        return []
    return sorted(p for p in (Path(model_dir) / SAMPLES_DIR).iterdir()
                  if p.suffix.lower() in SAMPLE_SUFFIXES and p.is_file())


def procedural_images(count: int, side: int, seed: int = SEED) -> np.ndarray:
    """uint8 [count, side, side, 3]: smooth colour fields, a few filled shapes, a little grain."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) / max(side - 1, 1)
    images = np.empty((count, side, side, 3), np.uint8)
    for i in range(count):
        image = np.zeros((side, side, 3), np.float32)
        for _ in range(3):  # low-frequency colour waves
            fy, fx, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
            wave = np.sin(2 * np.pi * (fy * ys + fx * xs) + phase)[..., None]
            image += wave * rng.uniform(20, 60, 3) + rng.uniform(40, 90, 3)
        image /= 3
        for _ in range(int(rng.integers(3, 7))):  # shapes with hard edges
            colour = rng.uniform(0, 255, 3)
            cy, cx, radius = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            if rng.random() < 0.5:
                mask = (ys - cy) ** 2 + (xs - cx) ** 2 < radius ** 2
            else:
                mask = (np.abs(ys - cy) < radius) & (np.abs(xs - cx) < radius * rng.uniform(0.3, 1.5))
            image[mask] = colour
        image += rng.normal(0, 4, image.shape)
        images[i] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return images


def representative_inputs(meta: ModelMetadata, side: int, model_dir: Path | None = None) -> np.ndarray:
    """The contract input of the model: sample images, procedural images or seeded latents (see above)."""
    if meta.kind == contract.GENERATOR:
        return contract.latents(COUNT_GENERATOR, meta.generator_latent_size, SEED)
    size = meta.classifier_size if meta.kind == contract.CLASSIFIER else side
    count = COUNT_CLASSIFIER if meta.kind == contract.CLASSIFIER else COUNT_STYLIZER
    files = sample_files(model_dir)
    if files:
        from artforge.runtime import pipeline

        return pipeline.classifier_batch([str(p) for p in files[:count]], size)  # decode, centre square
    return procedural_images(count, size)


#: sample images are stored as centre squares of this side (auto resizes them to what it measures at)
SAMPLE_SIDE = 512


def copy_samples(source: Path, model_dir: Path, count: int = COUNT_CLASSIFIER) -> list[Path]:
    """Copy up to `count` images from the folder `source` (spread over its sorted files) into
    <model_dir>/samples/ as PNG centre squares of SAMPLE_SIDE; the old samples are replaced."""
    from artforge.errors import InvalidInputError, NotFoundError
    from artforge.runtime.imageio import load_image, write_image
    from artforge.runtime.pipeline import center_square

    if not Path(source).is_dir():
        raise NotFoundError(f"samples folder {source} does not exist or is not a folder")
    files = sorted(p for p in Path(source).rglob("*") if p.suffix.lower() in SAMPLE_SUFFIXES and p.is_file())
    if not files:
        raise InvalidInputError(f"samples folder {source} holds no images ({', '.join(SAMPLE_SUFFIXES)})")
    # evenly over the sorted files, not the first ones: a folder sorted by class would give one class
    picked = files if len(files) <= count else [files[round(i * (len(files) - 1) / (count - 1))] for i in range(count)]
    target = Path(model_dir) / SAMPLES_DIR
    target.mkdir(exist_ok=True)
    for old in sample_files(model_dir):
        old.unlink()
    written = []
    for i, file in enumerate(picked):
        square = center_square(load_image(str(file), short_side=SAMPLE_SIDE), SAMPLE_SIDE)
        written.append(write_image(target / f"{i:02d}.png", square))
    return written
