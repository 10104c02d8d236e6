"""The input -> output plan of `artforge stylize IN OUT`: walk IN, name every output, before looking at what exists.

Plain Python (no OpenCV, no ONNX Runtime), so remote runs stay light.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from artforge.batch.manifest import MANIFEST_NAME
from artforge.batch.names import output_names
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
    """Whether `stylize source output` writes one named file (no manifest, no default report); an existing
    folder stays a folder, whatever its name."""
    output = Path(output)
    return Path(source).is_file() and output.suffix.lower() in OUTPUT_SUFFIXES and not output.is_dir()


def walk_images(source: Path, exclude: Path | None = None) -> tuple[list[Path], int]:
    """Image files under source (sorted, recursively) and the count of other files.

    Hidden files and folders (a leading dot: .git, .DS_Store, temporaries)
    are neither listed nor counted. So that a run never stylizes outputs,
    the output folder is left out when it lies inside the input folder, and
    so is any other folder holding a stylize manifest (an earlier run's OUT).
    `artforge classify FOLDER` walks folders the same way.
    """
    images, others = [], 0
    for root, folders, names in os.walk(source):
        here = Path(root)
        folders[:] = sorted(d for d in folders if not d.startswith(".")
                            and (exclude is None or (here / d).resolve() != exclude)
                            and not (here / d / MANIFEST_NAME).is_file())
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
                 per_model: bool = False, also_writes: Sequence[Path] = ()) -> StylizePlan:
    """The input -> output mapping of `artforge stylize`: a file, or a folder tree mirrored into `output`
    (into `output/<model>/` with several models or per_model). also_writes: other files the run writes (the
    report), refused over an input too.

    Output names are unique and depend only on the set of inputs (batch/names.py).
    Refused (InvalidInputError) before anything is written: an output over
    an input, an output where a later run would walk it as an input, OUT an
    existing file when it must be a folder. A folder without a single image
    is the user's mistake, not an empty success.
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
        plan = StylizePlan(source, output, source.parent, True, list(models), output.suffix.lower(),
                           [(source, {models[0]: output})])
        _refuse_outputs_on_inputs(plan, also_writes)
        return plan
    suffix = FORMATS.get((fmt or "jpg").lower())
    if suffix is None:
        raise InvalidInputError(f"output format {fmt!r} is not one of {', '.join(sorted(FORMATS))}")
    if source.is_file():
        files, skipped, root = [source], 0, source.parent
    else:
        files, skipped = walk_images(source, output.resolve())
        root = source
        if not files:
            raise InvalidInputError(f"no images to stylize in {source} ({skipped} non-image files skipped); "
                                    f"images are files named {', '.join(sorted(IMAGE_SUFFIXES))}")
    relative = output_names([path.relative_to(root) for path in files], suffix)
    plan = StylizePlan(source, output, root, False, list(models), suffix, skipped=skipped, per_model=per_model)
    plan.jobs = [(path, {model: plan.model_folder(model) / relative[path.relative_to(root)] for model in models})
                 for path in files]
    _refuse_outputs_on_inputs(plan, also_writes)
    return plan


def _refuse_outputs_on_inputs(plan: StylizePlan, also_writes: Sequence[Path]) -> None:
    """Raise InvalidInputError when an output would be written over an input, or where a later run would take
    it for an input (inside IN but not in the OUT it leaves out of the walk), or when a folder to write into
    is a file. Paths are compared resolved (symlinks, `..`); case-insensitive file systems are not accounted
    for (docs/batch.md)."""
    folders = [] if plan.single_file else [plan.output, *(plan.model_folder(m) for m in plan.models)]
    for folder in folders:
        if folder.exists() and not folder.is_dir():
            raise InvalidInputError(f"the output {folder} is an existing file, but the outputs of a folder or "
                                    f"of several models need a folder there; choose another output folder")
    resolve = _Resolver()
    inputs = {resolve(path): path for path, _ in plan.jobs}
    source, output = plan.source.resolve(), plan.output.resolve()
    walked = plan.source.is_dir() and not output.is_relative_to(source)
    if plan.source.is_dir() and output == source:
        raise InvalidInputError(f"the output folder {plan.output} is the input folder: the outputs would land "
                                f"among the inputs; choose another output folder (a new folder inside it is fine)")
    for path, targets in plan.jobs:
        for target in targets.values():
            resolved = resolve(target)
            if resolved in inputs:
                raise InvalidInputError(f"the output {target} of {path} would be written over the input "
                                        f"{inputs[resolved]}; choose another output folder")
            if walked and resolved.is_relative_to(source):
                raise InvalidInputError(f"the output {target} of {path} would be written inside the input folder "
                                        f"{plan.source}, where a later run would stylize it again; choose an "
                                        f"output folder outside it, or a new folder inside it")
    for path in also_writes:
        resolved = resolve(Path(path))
        if resolved in inputs:
            raise InvalidInputError(f"{path} would be written over the input {inputs[resolved]}; name another file")


class _Resolver:
    """Path.resolve of many files in few folders: each folder is resolved once."""

    def __init__(self) -> None:
        self._folders: dict[Path, Path] = {}

    def __call__(self, path: Path) -> Path:
        folder = self._folders.get(path.parent)
        if folder is None:
            folder = self._folders[path.parent] = path.parent.resolve()
        resolved = folder / path.name
        return resolved.resolve() if resolved.is_symlink() else resolved
