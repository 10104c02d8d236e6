"""File plumbing shared by the local runtime and the remote client: atomic
writes, the input -> output plan of `artforge stylize`, the clean-up of
temporaries a killed run left behind, and a lock so that two runs never
write one output folder at once.

Plain Python (no OpenCV, no ONNX Runtime), so remote commands stay light.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artforge.errors import ArtforgeError, InvalidInputError, NotFoundError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
#: output format name -> file suffix
FORMATS = {"jpg": ".jpg", "jpeg": ".jpg", "png": ".png", "webp": ".webp"}
OUTPUT_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
#: write_bytes_atomic's temporary names: hidden, the target's name, 8 hex digits, .tmp
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes, read in blocks."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 honours the umask (mkstemp would make the result 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, data: Any) -> Path:
    """JSON (indented, keys in insertion order) written atomically."""
    return write_bytes_atomic(path, (json.dumps(data, indent=1, default=str) + "\n").encode())


def clean_stale_temporaries(folder: Path) -> int:
    """Delete the hidden temporaries that write_bytes_atomic leaves when a process is killed mid-write
    (anywhere under folder); returns how many. Only names of that exact pattern are touched."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for root, _, names in os.walk(folder):
        for name in names:
            if _TEMPORARY.match(name):
                Path(root, name).unlink(missing_ok=True)
                removed += 1
    return removed


class FolderLock:
    """An exclusive advisory lock on a hidden file in a folder, held while a run writes there.

    Two runs writing one output folder would delete each other's temporaries
    and overwrite each other's manifest; the second one is refused instead.
    The lock file stays (deleting it would race with a third run); the
    kernel drops the lock itself when the process dies, even by kill -9.
    """

    NAME = ".artforge.lock"

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / self.NAME
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: run unlocked rather than not at all
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ArtforgeError(f"another artforge run is writing to {self.path.parent}; wait for it to finish "
                                f"or choose another output folder") from None
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


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
    jobs: list[tuple[Path, dict[str, Path]]] = field(default_factory=list)
    #: files under IN that are not images (by suffix)
    skipped: int = 0
    #: outputs go to OUT/<model>/ even for one model
    per_model: bool = False

    @property
    def targets(self) -> int:
        return sum(len(targets) for _, targets in self.jobs)

    def model_folder(self, model: str) -> Path:
        return self.output / model if len(self.models) > 1 or self.per_model else self.output


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
    """
    source, output = Path(source), Path(output)
    if not source.exists():
        raise NotFoundError(f"input not found: {source}")
    if not models:
        raise InvalidInputError("no model to stylize with; name at least one")
    if source.is_file() and output.suffix.lower() in OUTPUT_SUFFIXES:
        if len(models) > 1 or per_model:
            raise InvalidInputError(
                f"output {output} is a file, but several models need a folder; pass a folder as output")
        return StylizePlan(source, output, source.parent, True, list(models), [(source, {models[0]: output})])
    suffix = FORMATS.get((fmt or "jpg").lower())
    if suffix is None:
        raise InvalidInputError(f"output format {fmt!r} is not one of {', '.join(sorted(FORMATS))}")
    if source.is_file():
        files, skipped, root = [source], 0, source.parent
    else:
        files, skipped = _walk(source, output.resolve())
        root = source
    names: dict[Path, list[Path]] = {}
    for path in files:
        names.setdefault(path.relative_to(root).with_suffix(suffix), []).append(path)
    relative: dict[Path, Path] = {}
    for name, paths in names.items():
        for path in paths:
            rel = path.relative_to(root)
            relative[path] = name if len(paths) == 1 else rel.with_name(rel.name + suffix)
    plan = StylizePlan(source, output, root, False, list(models), skipped=skipped, per_model=per_model)
    plan.jobs = [(path, {model: plan.model_folder(model) / relative[path] for model in models}) for path in files]
    return plan


def plan_outputs(source: Path, output: Path, fmt: str | None, models: list[str],
                 per_model: bool = False) -> tuple[list[tuple[Path, str, Path]], int]:
    """(input, model name, output path) triples of plan_stylize, model by model, and the non-image count."""
    plan = plan_stylize(source, output, fmt, models, per_model)
    triples = [(path, model, targets[model]) for model in models for path, targets in plan.jobs]
    return triples, plan.skipped
