"""The output folder of a run: a lock so that two runs never write it at once, the clean-up of the
temporaries a killed run left there, and one sentence (UnwritableOutputError) when it cannot be written.

Plain Python (no OpenCV, no ONNX Runtime), so remote runs stay light.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from artforge.errors import ArtforgeError
from artforge.files import is_temporary


class UnwritableOutputError(ArtforgeError):
    """The output folder (or file) cannot be created or written: a read-only folder, a file in its path."""

    grpc_code = "FAILED_PRECONDITION"


@contextlib.contextmanager
def output_errors(what: str, path: Path) -> Iterator[None]:
    """Turn an OSError in the block into one sentence: `cannot write <what> <path>: <reason>`."""
    try:
        yield
    except OSError as exc:
        blocking = next((p for p in Path(path).parents if p.is_file()), None)
        if isinstance(exc, NotADirectoryError | FileExistsError) and blocking is not None:
            reason = f"{blocking} is a file, not a folder"
        else:
            reason = exc.strerror or str(exc)
            if exc.filename and Path(exc.filename) != Path(path):
                reason += f" ({exc.filename})"
        raise UnwritableOutputError(f"cannot write {what} {path}: {reason}") from None


def clean_stale_temporaries(folder: Path, skip: Path | None = None) -> int:
    """Delete the hidden temporaries that atomic writes leave when a process is killed mid-write
    (anywhere under folder but in `skip`, the input folder when it lies inside); returns how many.
    Only names of that exact pattern are touched."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    skip = None if skip is None else Path(skip).resolve()
    for root, folders, names in os.walk(folder):
        if skip is not None:
            folders[:] = [d for d in folders if Path(root, d).resolve() != skip]
        for name in names:
            if is_temporary(name):
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
