"""Stylize one image file or a whole folder tree (mirrored into the output).

A corrupt file never stops the run: it is counted and reported. Outputs are
written atomically, so an interrupted run leaves no partial file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from artforge.errors import ArtforgeError, InvalidInputError, NotFoundError
from artforge.runtime.imageio import read_image, write_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
FORMATS = {"jpg": ".jpg", "jpeg": ".jpg", "png": ".png", "webp": ".webp"}


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


def _plan(source: Path, output: Path, fmt: str | None, models: list, per_model: bool) -> tuple[list, int]:
    """(input, model, output path) triples, and the count of non-image files skipped."""
    if not source.exists():
        raise NotFoundError(f"input not found: {source}")
    if source.is_file():
        if output.suffix.lower() in FORMATS.values() or output.suffix.lower() == ".jpeg":
            if len(models) > 1 or per_model:
                raise InvalidInputError(
                    f"output {output} is a file, but several models need a folder; pass a folder as output")
            return [(source, models[0], output)], 0
        files, skipped, root = [source], 0, source.parent
    else:
        everything = sorted(p for p in source.rglob("*") if p.is_file())
        files = [p for p in everything if p.suffix.lower() in IMAGE_SUFFIXES]
        skipped, root = len(everything) - len(files), source
    suffix = FORMATS.get((fmt or "jpg").lower())
    if suffix is None:
        raise InvalidInputError(f"output format {fmt!r} is not one of {', '.join(sorted(FORMATS))}")
    plan = []
    for model in models:
        base = output / model.name if (per_model or len(models) > 1) else output
        plan += [(path, model, (base / path.relative_to(root)).with_suffix(suffix)) for path in files]
    return plan, skipped


def stylize_paths(models: list, source: Path, output: Path, fmt: str | None = None, quality: int | None = None,
                  max_side: int | None = None, progress: bool = True, per_model: bool = False) -> Summary:
    """Stylize `source` (file or folder) with each model into `output`."""
    source, output = Path(source), Path(output)
    plan, skipped = _plan(source, output, fmt, models, per_model)
    summary = Summary(skipped=skipped)
    for path, model, target in tqdm(plan, desc="stylize", unit="img", disable=not progress):
        try:
            image = read_image(path)
            result = model.stylize(image, max_side=max_side)
            if target.suffix == ".jpg" and result.ndim == 3 and result.shape[2] == 4:
                result = result[..., :3]  # JPEG has no alpha channel
            write_image(target, result, quality=quality)
        except ArtforgeError as exc:
            summary.failed += 1
            summary.failures.append((str(path), str(exc)))
            continue
        summary.done += 1
        summary.outputs.append(target)
    return summary
