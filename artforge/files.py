"""Project-wide file helpers: atomic writes and file hashes.

Every artforge write goes through atomic_file: a hidden temporary in the
target's folder, fsynced, then renamed over the target, so a reader (or a
run resumed after kill -9) never sees half a file. Files get the usual
umask-based mode (0o666 & ~umask), as open() would give them; mkstemp's
0o600 would hide models and outputs from a server running as another user.

Plain Python (no OpenCV, no ONNX Runtime), so remote commands stay light.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

#: atomic_file's temporary names: hidden, the target's name, 8 hex digits, .tmp
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes, read in blocks."""
    with Path(path).open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_temporary(name: str) -> bool:
    """Whether a file name is one of atomic_file's temporaries (left behind only when a process is killed)."""
    return _TEMPORARY.match(name) is not None


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write `path`'s new content into; it replaces `path` when the block ends without an
    exception (else it is deleted). For writers that take a file object (torch.save, onnx.save)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 honours the umask (mkstemp would make the result 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write bytes atomically (see atomic_file): readers never see half a file."""
    with atomic_file(path) as f:
        f.write(data)
    return Path(path)


def write_json_atomic(path: Path, data: Any) -> Path:
    """JSON (indented, keys in insertion order) written atomically."""
    return write_bytes_atomic(path, (json.dumps(data, indent=1, default=str) + "\n").encode())
