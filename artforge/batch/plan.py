"""The input -> output plan of `artforge stylize IN OUT`: walk IN, name every output, before looking at what exists.

Plain Python (no OpenCV, no ONNX Runtime), so remote runs stay light.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from artforge.errors import InvalidInputError, NotFoundError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
#: output format name -> file suffix
FORMATS = {"jpg": ".jpg", "jpeg": ".jpg", "png": ".png", "webp": ".webp"}
OUTPUT_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@dataclass
class StylizePlan:
    """What `artforge stylize IN OUT` has to make, before looking at what already exists.

    jobs: (input file, {model name: output path}) in walk order; every input
    is decoded once however many models it goes through.
    """

    source: Path
    output: Path
    #: the folder input paths are relative to (IN, or the folder of a single input file)
    root: Path
    #: True when OUT is a file name (one input file, one model): no manifest, no report by default
    single_file: bool
    models: list[str]
    #: the suffix of every output, lower case (".jpg", ".png", ...): it says the format to encode
    suffix: str
    jobs: list[tuple[Path, dict[str, Path]]] = field(default_factory=list)
    #: files under IN that are not images (by suffix)
    skipped: int = 0
    #: outputs go to OUT/<model>/ even for one model
    per_model: bool = False

    def model_folder(self, model: str) -> Path:
        return self.output / model if len(self.models) > 1 or self.per_model else self.output


def is_single_file(source: Path, output: Path) -> bool:
    """Whether `stylize source output` writes one named file (no manifest, no default report)."""
    return Path(source).is_file() and Path(output).suffix.lower() in OUTPUT_SUFFIXES


def _walk(source: Path, exclude: Path | None) -> tuple[list[Path], int]:
    """Image files under source (sorted, recursively) and the count of other files.

    Hidden files and folders (a leading dot: .git, .DS_Store, temporaries)
    are neither stylized nor counted; the output folder is left out when it
    lies inside the input folder, so a re-run never stylizes its own outputs.
    """
    images, others = [], 0
    for root, folders, names in os.walk(source):
        here = Path(root)
        folders[:] = sorted(d for d in folders if not d.startswith(".")
                            and (exclude is None or (here / d).resolve() != exclude))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = here / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            elif path.is_file():
                others += 1
    return images, others


def plan_stylize(source: Path, output: Path, fmt: str | None, models: list[str],
                 per_model: bool = False) -> StylizePlan:
    """The input -> output mapping of `artforge stylize`: a file, or a folder tree mirrored into `output`
    (into `output/<model>/` with several models or per_model).

    Two inputs that would share an output name (a.jpg and a.png, both to
    a.jpg) keep their input suffix in the name instead: a.jpg.jpg, a.png.jpg.
    A folder without a single image is the user's mistake, not an empty success.
    """
    source, output = Path(source), Path(output)
    if not source.exists():
        raise NotFoundError(f"input not found: {source}")
    if not models:
        raise InvalidInputError("no model to stylize with; name at least one")
    if is_single_file(source, output):
        if len(models) > 1 or per_model:
            raise InvalidInputError(
                f"output {output} is a file, but several models need a folder; pass a folder as output")
        return StylizePlan(source, output, source.parent, True, list(models), output.suffix.lower(),
                           [(source, {models[0]: output})])
    suffix = FORMATS.get((fmt or "jpg").lower())
    if suffix is None:
        raise InvalidInputError(f"output format {fmt!r} is not one of {', '.join(sorted(FORMATS))}")
    if source.is_file():
        files, skipped, root = [source], 0, source.parent
    else:
        files, skipped = _walk(source, output.resolve())
        root = source
        if not files:
            raise InvalidInputError(f"no images to stylize in {source} ({skipped} non-image files skipped); "
                                    f"images are files named {', '.join(sorted(IMAGE_SUFFIXES))}")
    names: dict[Path, list[Path]] = {}
    for path in files:
        names.setdefault(path.relative_to(root).with_suffix(suffix), []).append(path)
    relative: dict[Path, Path] = {}
    for name, paths in names.items():
        for path in paths:
            rel = path.relative_to(root)
            relative[path] = name if len(paths) == 1 else rel.with_name(rel.name + suffix)
    plan = StylizePlan(source, output, root, False, list(models), suffix, skipped=skipped, per_model=per_model)
    plan.jobs = [(path, {model: plan.model_folder(model) / relative[path] for model in models}) for path in files]
    return plan
