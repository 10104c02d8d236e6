"""File plumbing shared by the local runtime and the remote client: atomic
writes and the input -> output plan of `artforge stylize`.

Plain Python (no OpenCV, no ONNX Runtime), so remote commands stay light.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from artforge.errors import InvalidInputError, NotFoundError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
#: output format name -> file suffix
FORMATS = {"jpg": ".jpg", "jpeg": ".jpg", "png": ".png", "webp": ".webp"}
OUTPUT_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


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


def plan_outputs(source: Path, output: Path, fmt: str | None, models: list[str],
                 per_model: bool = False) -> tuple[list[tuple[Path, str, Path]], int]:
    """(input, model name, output path) triples for stylizing `source` (a file or
    a folder tree, mirrored into `output`), and the count of non-image files skipped."""
    source, output = Path(source), Path(output)
    if not source.exists():
        raise NotFoundError(f"input not found: {source}")
    if source.is_file():
        if output.suffix.lower() in OUTPUT_SUFFIXES:
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
        base = output / model if (per_model or len(models) > 1) else output
        plan += [(path, model, (base / path.relative_to(root)).with_suffix(suffix)) for path in files]
    return plan, skipped
