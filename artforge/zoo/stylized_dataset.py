"""The art-style classifier's data: photos passed through the zoo's own stylizers.

The classifier answers the demo's question, "which of the shipped styles made
this image, if any?", so its classes are "photo" plus one per stylizer in the
repository, and its images are crops of the source photos rendered by those
stylizers through the runtime, exactly as users' images are. Crops are
stylized at random sizes (1-3x the dataset size) because a style's brush
strokes have a fixed size in pixels: a photo stylized at 1024 px and shrunk
for viewing shows finer texture than one stylized at 256 px.

Written as ImageFolder (out/<split>/<class>/<photo>_<i>.jpg). The test split
holds crops of whole photos that training never sees, and so does the
validation split (early stopping, calibration). Validation images are also
damaged the way images in use are (training.damage: resample, JPEG), so that
calibration is fitted on images like those the classifier will be asked
about (docs/decisions.md: after fine-tuning the zoo's validation split is
still 100 % right, and T then sits at its bound). Grey source photos are
toned (sepia, cyanotype) half the time, as old prints are, so that "no
colour" does not mean "photo". Deterministic for a
seed and resumable; the stylizers' sha256 are part of the recorded settings,
so a rebuilt stylizer needs a fresh folder (the zoo build names the folder by
them).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from artforge.files import file_sha256, write_json_atomic
from artforge.runtime import Repository, write_image
from artforge.training.damage import damage
from artforge.zoo.datasets import DEFAULT_HOLDOUT, MANIFEST, _claim_folder, _jitter_photo, _progress, _random_crop
from artforge.zoo.photos import CLASSIFIER_PHOTOS, GREY_PHOTOS, SOURCE_PHOTOS, classifier_photos
from artforge.zoo.seeds import item_rng

#: the class of images no stylizer touched
PHOTO = "photo"
#: photos whose crops form the validation split (never trained on, never tested on)
DEFAULT_VALIDATION: tuple[str, ...] = ("coffee", "clock")
SPLITS = ("train", "val", "test")
#: stylized crops are rendered at a side drawn log-uniformly from this range, times the dataset size
RENDER_SCALE = (1.0, 3.0)
#: the chance that a crop of a grey photo is toned
TONE_CHANCE = 0.5


def _tone(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A grey RGB crop printed in one faint hue (sepia, cyanotype, selenium...)."""
    hsv = np.empty_like(grey)
    hsv[..., 0] = int(rng.integers(0, 180))
    hsv[..., 1] = int(rng.uniform(0.1, 0.35) * 255)
    hsv[..., 2] = grey[..., 0]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def stylizer_fingerprint(repo: Path, stylizers: Sequence[str]) -> str:
    """A short digest of the stylizers' graphs: a dataset made from other weights is another dataset."""
    artifacts = {entry["name"]: entry.get("path") for entry in Repository(repo).describe()}
    digest = hashlib.sha256()
    for name in sorted(stylizers):
        if not artifacts.get(name):
            raise ValueError(f"no readable stylizer {name!r} in {repo}")
        digest.update(f"{name}:{file_sha256(Path(str(artifacts[name])))}\n".encode())
    return digest.hexdigest()[:12]


def dataset_folder_name(repo: Path, stylizers: Sequence[str]) -> str:
    """A folder name for the default dataset of these stylizers: other weights or another choice of
    photos make another dataset (a folder refuses to resume with other settings)."""
    photos = f"{CLASSIFIER_PHOTOS}|{DEFAULT_HOLDOUT}|{DEFAULT_VALIDATION}"
    digest = hashlib.sha256(f"{stylizer_fingerprint(repo, stylizers)}|{photos}".encode()).hexdigest()[:12]
    return f"stylized-{digest}"


def render_stylized_dataset(
    out: Path,
    repo: Path,
    stylizers: Sequence[str],
    seed: int,
    crops_per_photo: int = 32,
    size: int = 256,
    holdout: Sequence[str] | None = None,
    validation: Sequence[str] | None = None,
    backend: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Render the dataset into `out`; returns its summary (also kept in out/synthetic.json)."""
    out = Path(out)
    holdout = list(DEFAULT_HOLDOUT if holdout is None else holdout)
    validation = list(DEFAULT_VALIDATION if validation is None else validation)
    unknown = [h for h in holdout + validation if h not in CLASSIFIER_PHOTOS]
    if unknown:
        raise ValueError(f"holdout/validation photo(s) {unknown} unknown; choose from {', '.join(CLASSIFIER_PHOTOS)}")
    if set(holdout) & set(validation):
        raise ValueError(f"photo(s) {sorted(set(holdout) & set(validation))} are both held out and for validation")
    train_photos = [p for p in CLASSIFIER_PHOTOS if p not in holdout and p not in validation]
    if not holdout or not validation or not train_photos:
        raise ValueError("holdout and validation must each name at least one photo and leave some to train on")
    if not stylizers:
        raise ValueError("no stylizers to render the dataset with")
    if PHOTO in stylizers:
        raise ValueError(f"a stylizer may not be called {PHOTO!r}: that is the class of unstylized photos")
    if crops_per_photo < 1 or size < 32:
        raise ValueError(f"crops_per_photo must be >= 1 and size >= 32 (got {crops_per_photo}, {size})")
    classes = [PHOTO, *stylizers]
    params = {"seed": seed, "crops_per_photo": crops_per_photo, "size": size, "holdout": holdout,
              "validation": validation,
              "stylizers": sorted(stylizers), "fingerprint": stylizer_fingerprint(repo, stylizers)}
    _claim_folder(out, "stylized_dataset", params)

    models = {name: Repository(repo).stylizer(name, backend=backend) for name in stylizers}
    photos = classifier_photos()
    jobs = [(split, name, i) for split, names in zip(SPLITS, (train_photos, validation, holdout), strict=True)
            for name in names for i in range(crops_per_photo)]
    low, high = (math.log(s * size) for s in RENDER_SCALE)
    for split, name, i in _progress(jobs, len(jobs), "stylized dataset", progress):
        paths = {c: out / split / c / f"{name}_{i:03d}.jpg" for c in classes}
        if all(p.is_file() for p in paths.values()):
            continue
        rng = item_rng(seed, "stylized crop", name, i)
        side = round(math.exp(rng.uniform(low, high)))
        crop = _random_crop(photos[name], rng, side)
        if name in GREY_PHOTOS and rng.random() < TONE_CHANCE:
            crop = _tone(crop, rng)
        crop = _jitter_photo(crop, rng)
        images = {PHOTO: crop} | {style: model.stylize(crop) for style, model in models.items()}
        for c, image in images.items():
            if split == "val":
                image = damage(image, item_rng(seed, "validation damage", name, i, c))
            write_image(paths[c], image, quality=92)

    counts = {split: {c: len(list((out / split / c).glob("*.jpg"))) for c in classes} for split in SPLITS}
    described = {**SOURCE_PHOTOS, **GREY_PHOTOS}
    summary = {
        "classes": classes, "size": size, "render_sides": [round(s * size) for s in RENDER_SCALE],
        "seed": seed, "crops_per_photo": crops_per_photo, "train_photos": train_photos,
        "validation_photos": validation, "held_out_photos": holdout, "counts": counts,
        "sources": {n: described[n] for n in CLASSIFIER_PHOTOS},
    }
    write_json_atomic(out / MANIFEST, {"kind": "stylized_dataset", **params, "summary": summary})
    return summary
