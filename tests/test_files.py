"""artforge/files.py: the one atomic write of the project, and the file hash."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from artforge.files import atomic_file, file_sha256, is_temporary, write_bytes_atomic, write_json_atomic


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_writes_replace_whole_files_with_the_umask_mode(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "out.bin"
    assert write_bytes_atomic(target, b"first") == target  # folders are made
    write_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    write_json_atomic(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"b": 1, "a": [1, 2]}
    with atomic_file(tmp_path / "c.bin") as f:  # for writers that take a file object
        f.write(b"c")
    for path in (target, tmp_path / "a.json", tmp_path / "c.bin"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask(), path  # readable by a server of another user
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.json", "c.bin", "out.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as f:
        f.write(b"half of the new")
        raise RuntimeError("the writer failed")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.bin"]


def test_temporary_names_and_hash(tmp_path: Path) -> None:
    assert is_temporary(".a.png.0123abcd.tmp") and is_temporary(".a b.c.ffffffff.tmp")
    assert not is_temporary("a.png.0123abcd.tmp") and not is_temporary(".notes.tmp")
    assert not is_temporary(".a.png.0123ABCD.tmp") and not is_temporary(".a.png.0123abc.tmp")
    path = write_bytes_atomic(tmp_path / "x", b"artforge")
    assert file_sha256(path) == hashlib.sha256(b"artforge").hexdigest()
