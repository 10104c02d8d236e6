"""Reading ordinary image folders for training (OpenCV, RGB uint8 HWC)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(folder: Path) -> list[Path]:
    """All image files under folder, recursively, sorted for reproducibility."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def training_images(folder: Path | str) -> list[Path]:
    """list_images, refusing a folder that holds none (every trainer's first check of its data)."""
    paths = list_images(Path(folder))
    if not paths:
        raise ValueError(
            f"no images found in {folder} (searched recursively for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return paths


def image_folder(root: Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """ImageFolder layout: root/<class>/<image>. Returns (samples, class names)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise ValueError(f"{root} needs one sub-folder per class (at least two); found {len(classes)}")
    samples = [(p, i) for i, c in enumerate(classes) for p in list_images(root / c)]
    empty = [c for i, c in enumerate(classes) if not any(label == i for _, label in samples)]
    if empty:
        raise ValueError(f"{root}: class folder(s) with no images: {', '.join(empty)}")
    return samples, classes


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image file to RGB uint8 HWC (EXIF orientation applied)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f"cannot decode image file {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
