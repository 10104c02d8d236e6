"""`artforge stylize --server` against a real server on 127.0.0.1, and what both executors share.

The local executor's own behaviour (tiling, batching, kill -9, Ctrl-C) is
covered on the shipped zoo by tests/test_batch_stylize.py; here the small
test repository's `invert` stylizer runs in-process and on a server alike.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from serving_support import decode, encode, noise

from artforge.batch.executor import Executor
from artforge.batch.options import BatchOptions
from artforge.cli import main

TOKEN = "t0ken"
BOOKKEEPING = {"stylize-manifest.json", "stylize-report.json", ".artforge.lock"}


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    # A token on the module's server (conftest.py): every run below proves the batch client sends it.
    return {"token": TOKEN}


@pytest.fixture(autouse=True)
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARTFORGE_TOKEN", TOKEN)


@pytest.fixture(params=["local", "remote"])
def where(request: pytest.FixtureRequest, repo_path: Path) -> tuple[str, ...]:
    """The arguments that pick an executor: the repository in-process, or the server."""
    if request.param == "local":
        return ("--repo", str(repo_path), "--backend", "onnxruntime")
    return ("--server", request.getfixturevalue("target"))


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.name not in BOOKKEEPING)


def report(out: Path) -> dict:
    return json.loads((out / "stylize-report.json").read_text())


# ------------------------------------------------------------------ --server

def test_server_run_resumes_and_reports(target: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    pictures = {f"sub/p{i}.png": noise(32, 40, seed=i) for i in range(3)}
    for name, rgb in pictures.items():
        (src / name).write_bytes(encode(rgb))
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    remote = ("stylize", str(src), str(out), "--server", target, "--model", "invert", "--format", "png", "--quiet")
    code, stdout, _ = run(capsys, *remote)
    assert code == 1 and stdout.startswith("stylized 3, failed 1, skipped 0 non-images -> ")
    for name, rgb in pictures.items():  # the test stylizer inverts colours
        assert np.array_equal(decode((out / name).read_bytes()), 255 - rgb)
    data = report(out)
    assert data["server"] == target and data["timings"]["model_seconds"] is None
    assert data["model_seconds"] is None and data["run_seconds"] > 0
    assert data["models"]["invert"]["identity"] == {"name": "invert", "version": "1", "via": "server"}
    assert [Path(f["input"]).name for f in data["failures"]] == ["bad.png"]

    stamps = {p: p.stat().st_mtime_ns for p in visible_files(out)}
    code, stdout, _ = run(capsys, *remote)
    assert code == 1 and stdout.startswith("stylized 0, failed 1, skipped 0 non-images, 3 already done")
    assert {p: p.stat().st_mtime_ns for p in visible_files(out)} == stamps

    code, stdout, err = run(capsys, *remote, "--max-side", "16")
    assert stdout.startswith("stylized 3,") and "max_side" in err
    assert cv2.imread(str(out / "sub" / "p0.png")).shape == (13, 16, 3)

    code, _, err = run(capsys, *remote, "--tile", "64")
    assert code == 2 and "--tile" in err


def test_server_run_folder_and_file(target: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    (src / "nested").mkdir(parents=True)
    picture = noise(24, 20)
    (src / "a.png").write_bytes(encode(picture))
    (src / "nested" / "b.jpg").write_bytes(encode(picture, ".jpg"))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (src / "notes.txt").write_text("not an image")
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "stylize", str(src), str(out_dir), "--format", "png", "--quiet", "--server", target)
    assert code == 1
    assert out.strip() == f"stylized 2, failed 1, skipped 1 non-images -> {out_dir}"
    assert "broken.png" in err and "decoded" in err
    # The run's own bookkeeping (resume manifest, report, lock) lives in OUT too; see docs/batch.md.
    written = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.name not in BOOKKEEPING)
    assert written == ["a.png", "nested", "nested/b.png"]  # mirrored tree, no temporary files left
    assert np.array_equal(decode((out_dir / "a.png").read_bytes()), 255 - picture)

    single = tmp_path / "single.png"
    code, out, _ = run(capsys, "stylize", str(src / "a.png"), str(single), "--quiet", "--max-side", "12",
                       "--server", target)
    assert code == 0 and out.startswith("stylized 1, failed 0")
    assert decode(single.read_bytes()).shape == (12, 10, 3)

    code, _, err = run(capsys, "stylize", str(src), str(out_dir), "--model", "colours", "--server", target)
    assert code == 2 and "not a stylizer" in err


def test_remote_batch_imports_neither_torch_opencv_nor_onnxruntime() -> None:
    code = ("import sys, artforge.batch.driver, artforge.batch.remote; "
            "bad = [m for m in ('torch', 'cv2', 'onnxruntime') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ both executors, one driver

def test_both_executors_report_the_temporaries_they_cleaned(where: tuple[str, ...], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    picture = noise(16, 24)
    (src / "a.png").write_bytes(encode(picture))
    (out / "sub").mkdir(parents=True)
    stale = [out / ".a.png.0123abcd.tmp", out / "sub" / ".b.png.deadbeef.tmp"]  # left by a run killed mid-write
    for path in stale:
        path.write_bytes(b"half an image")
    unrelated = out / ".notes.tmp"  # not a name atomic writes make: left alone
    unrelated.write_text("mine")
    code, stdout, err = run(capsys, "stylize", str(src), str(out), "--model", "invert", "--format", "png",
                            "--quiet", *where)
    assert code == 0 and stdout.startswith("stylized 1, failed 0")
    assert "deleted 2 temporary files left by an interrupted run" in err
    assert report(out)["cleaned_temporaries"] == 2
    assert not any(path.exists() for path in stale) and unrelated.read_text() == "mine"
    assert np.array_equal(decode((out / "a.png").read_bytes()), 255 - picture)


def test_a_folder_without_images_is_one_clear_error(where: tuple[str, ...], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "notes.txt").write_text("not an image")
    (src / "sub" / "data.csv").write_text("1,2")
    (src / ".hidden.png").write_bytes(encode(noise(8, 8)))  # hidden files are neither inputs nor counted
    code, stdout, err = run(capsys, "stylize", str(src), str(tmp_path / "out"), "--model", "invert", *where)
    assert code == 2 and stdout == ""
    assert err.startswith(f"artforge: error: no images to stylize in {src} (2 non-image files skipped)")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_model_of_another_kind_is_one_clear_error(where: tuple[str, ...], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(encode(noise(8, 8)))
    code, _, err = run(capsys, "stylize", str(tmp_path / "in"), str(tmp_path / "out"), "--model", "colours", *where)
    assert code == 2 and "colours is a classifier, not a stylizer" in err and "invert" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_stop_ends_a_library_run_as_ctrl_c_would(where: tuple[str, ...], repo_path: Path, tmp_path: Path) -> None:
    from artforge.batch.driver import BatchInterrupted, run_stylize
    from artforge.batch.local import LocalExecutor
    from artforge.batch.remote import RemoteExecutor
    from artforge.client import ImageClient
    from artforge.runtime import Repository

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(3):
        (src / f"p{i}.png").write_bytes(encode(noise(8, 8, seed=i)))
    with contextlib.ExitStack() as stack:
        if where[0] == "--server":
            client = stack.enter_context(ImageClient(where[1], token=TOKEN))
            executor: Executor = RemoteExecutor(client, "invert")
        else:
            executor = LocalExecutor([Repository(repo_path).stylizer("invert", backend="onnxruntime")])
        stop = threading.Event()
        stop.set()  # before it starts: nothing new is taken
        with pytest.raises(BatchInterrupted) as interrupted:
            run_stylize(executor, src, out, BatchOptions(fmt="png"), progress=False, stop=stop,
                        report_path=out / "stylize-report.json")
        stopped = interrupted.value.report
        assert stopped.interrupted and stopped.done + stopped.not_done == 3 and not stopped.failed
        assert json.loads((out / "stylize-report.json").read_text())["interrupted"] is True
        again = run_stylize(executor, src, out, BatchOptions(fmt="png"), progress=False)
        assert (again.done, again.already_done, again.not_done) == (3 - stopped.done, stopped.done, 0)
        assert len(again.outputs) == 3 and not again.interrupted
