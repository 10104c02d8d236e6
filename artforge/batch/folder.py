"""The output folder of a run: a lock so that two runs never write it at once, and the clean-up of the
temporaries a killed run left there.

Plain Python (no OpenCV, no ONNX Runtime), so remote runs stay light.
"""

from __future__ import annotations

import os
from pathlib import Path

from artforge.errors import ArtforgeError
from artforge.files import is_temporary


def clean_stale_temporaries(folder: Path) -> int:
    """Delete the hidden temporaries that atomic writes leave when a process is killed mid-write
    (anywhere under folder); returns how many. Only names of that exact pattern are touched."""
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for root, _, names in os.walk(folder):
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
