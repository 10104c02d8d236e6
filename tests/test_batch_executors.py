"""`artforge stylize --server` against a real server on 127.0.0.1, and what both executors share.

The local executor's own behaviour (tiling, batching, kill -9, Ctrl-C) is
covered on the shipped zoo by tests/test_batch_stylize.py; here the small
test repository's `invert` stylizer runs in-process and on a server alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
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


# ------------------------------------------------------------------ no data loss

def tree(folder: Path) -> dict[str, bytes]:
    """Every file under folder, hidden ones included, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(capsys: pytest.CaptureFixture, says: str, *argv: str) -> None:
    code, stdout, err = run(capsys, *argv)
    assert code == 2 and stdout == "" and says in err, err
    assert err.startswith("artforge: error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_outputs_over_the_inputs_are_refused_before_anything_is_written(
        where: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "a.png").write_bytes(encode(noise(8, 8)))
    (src / "sub" / "b.png").write_bytes(encode(noise(8, 8, seed=1)))
    (tmp_path / "link").symlink_to(src)
    before = tree(src)
    args = ("--model", "invert", "--format", "png", "--quiet", *where)
    for out in (src, src / "sub" / "..", tmp_path / "link"):
        refused(capsys, "is the input folder", "stylize", str(src), str(out), *args)
    refused(capsys, "would be written over the input", "stylize", str(src / "a.png"), str(src / "a.png"), *args)
    refused(capsys, "would be written over the input", "stylize", str(src / "a.png"), str(src), *args)
    refused(capsys, "would be written over the input", "stylize", str(src), str(tmp_path / "out"), *args,
            "--report", str(src / "sub" / "b.png"))
    assert tree(src) == before and not (tmp_path / "out").exists()

    # IN inside OUT: the mirrored tree must not reach into IN (over an input, or where a re-run would walk it).
    outer = tmp_path / "outer"
    photos = outer / "photos"
    (photos / "photos").mkdir(parents=True)
    (photos / "photos" / "c.png").write_bytes(encode(noise(8, 8, seed=2)))  # -> outer/photos/c.png
    refused(capsys, "inside the input folder", "stylize", str(photos), str(outer), *args)
    (photos / "c.png").write_bytes(encode(noise(8, 8, seed=3)))
    refused(capsys, "would be written over the input", "stylize", str(photos), str(outer), *args)
    assert sorted(tree(outer)) == ["photos/c.png", "photos/photos/c.png"]

    # The exit code of the command itself.
    command = [sys.executable, "-c", "import sys; from artforge.cli import main; sys.exit(main())",
               "stylize", str(src), str(src), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "is the input folder" in done.stderr and "Traceback" not in done.stderr
    assert tree(src) == before


def test_output_folders_inside_the_input_are_never_walked(where: tuple[str, ...], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(encode(noise(8, 8)))
    args = ("--model", "invert", "--format", "png", "--quiet", *where)
    for _ in range(2):
        code, stdout, _ = run(capsys, "stylize", str(src), str(src / "styled"), *args)
        assert code == 0
    assert "1 already done" in stdout
    # Another run's output folder (it holds a manifest) is not walked either.
    code, stdout, _ = run(capsys, "stylize", str(src), str(src / "again"), *args)
    assert code == 0 and stdout.startswith("stylized 1, failed 0, skipped 0 non-images -> ")
    assert [p.relative_to(src).as_posix() for p in visible_files(src)] == ["a.png", "again/a.png", "styled/a.png"]


def test_input_inside_the_output_folder_is_left_alone(where: tuple[str, ...], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    outer = tmp_path / "outer"
    photos = outer / "photos"
    photos.mkdir(parents=True)
    picture = noise(8, 8)
    (photos / "x.png").write_bytes(encode(picture))
    (photos / ".x.png.0123abcd.tmp").write_bytes(b"someone else's write in progress")
    before = tree(photos)
    args = ("stylize", str(photos), str(outer), "--model", "invert", "--format", "png", "--quiet", *where)
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and stdout.startswith("stylized 1,")
    assert np.array_equal(decode((outer / "x.png").read_bytes()), 255 - picture)
    assert tree(photos) == before and report(outer)["cleaned_temporaries"] == 0
    assert run(capsys, *args)[1].startswith("stylized 0, failed 0, skipped 0 non-images, 1 already done")


def test_inputs_that_want_one_output_name_get_three(where: tuple[str, ...], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    """a.jpg, a.png and a.jpg.jpg: the old renaming gave two of them one output and flipped it run to run."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    inputs = {"a.jpg": ".jpg", "a.png": ".png", "a.jpg.jpg": ".jpg"}
    for i, (name, ext) in enumerate(inputs.items()):
        (src / name).write_bytes(encode(noise(16, 12, seed=i), ext))
    args = ("stylize", str(src), str(out), "--model", "invert", "--format", "png", "--quiet", *where)
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and stdout.startswith("stylized 3, failed 0")
    expected = {"a.jpg": "a.jpg~2.png", "a.png": "a.png.png", "a.jpg.jpg": "a.jpg.png"}
    assert [p.name for p in visible_files(out)] == sorted(expected.values())
    for name, output in expected.items():  # each output is its own input's, inverted
        assert np.array_equal(decode((out / output).read_bytes()), 255 - decode((src / name).read_bytes()))
    data = report(out)
    assert data["counts"]["done"] == len(visible_files(out)) == 3
    stamps = {p: p.stat().st_mtime_ns for p in visible_files(out)}
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and stdout.startswith("stylized 0, failed 0, skipped 0 non-images, 3 already done")
    assert {p: p.stat().st_mtime_ns for p in visible_files(out)} == stamps


def test_files_the_tool_did_not_write_are_never_replaced_unless_asked(
        where: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    pictures = {name: noise(8, 8, seed=i) for i, name in enumerate(("a.png", "b.png"))}
    for name, rgb in pictures.items():
        (src / name).write_bytes(encode(rgb))
    (out / "a.png").write_bytes(b"mine")
    args = ("stylize", str(src), str(out), "--model", "invert", "--format", "png", "--quiet", *where)
    for extra in ((), ("--force",)):  # b.png is made (then redone by --force); a.png is refused both times
        code, stdout, err = run(capsys, *args, *extra)
        assert code == 1 and stdout.startswith("stylized 1, failed 1, skipped 0 non-images -> ")
        assert "already exists and artforge stylize did not write it" in err and "--overwrite" in err
        assert (out / "a.png").read_bytes() == b"mine"
    data = report(out)
    assert data["failures"][0]["output"] == str(out / "a.png")
    assert data["counts"] == {"planned": 2, "done": 1, "already_done": 0, "failed": 1, "not_done": 0,
                              "skipped_non_images": 0}

    code, stdout, _ = run(capsys, *args, "--overwrite")
    assert code == 0 and stdout.startswith("stylized 1, failed 0, skipped 0 non-images, 1 already done")
    assert np.array_equal(decode((out / "a.png").read_bytes()), 255 - pictures["a.png"])
    assert report(out)["options"]["overwrite"] is True
    # Now it is the tool's own: redone when its input changes, without --overwrite.
    (src / "a.png").write_bytes(encode(noise(8, 8, seed=9)))
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and stdout.startswith("stylized 1, failed 0, skipped 0 non-images, 1 already done")
    # An output the user replaced with their own content was still the tool's file: redone, as before.
    (out / "b.png").write_bytes(b"edited")
    assert run(capsys, *args)[0] == 0 and np.array_equal(decode((out / "b.png").read_bytes()), 255 - pictures["b.png"])

    single = tmp_path / "single.png"
    one = ("stylize", str(src / "b.png"), str(single), "--model", "invert", "--quiet", *where)
    assert run(capsys, *one)[0] == 0
    made = single.read_bytes()
    code, _, err = run(capsys, *one)  # one file has no manifest to vouch for it
    assert code == 1 and "--overwrite" in err and single.read_bytes() == made
    assert run(capsys, *one, "--overwrite")[0] == 0


def test_a_file_written_but_not_yet_recorded_is_still_the_tools_own(repo_path: Path, tmp_path: Path) -> None:
    """Outputs are claimed in the manifest before they are written: a file a killed run wrote, but did not get
    to record, is redone by the next run, not refused as someone else's."""
    from artforge.batch.driver import BatchInterrupted, run_stylize
    from artforge.batch.executor import Outcome, Work
    from artforge.batch.local import LocalExecutor
    from artforge.runtime import Repository

    class ForgetsItsOutcomes(LocalExecutor):
        """Writes every output, then dies before the driver hears of any."""

        def run(self, work: Sequence[Work], options: BatchOptions, stop: threading.Event,
                emit: Callable[[Outcome], None]) -> None:
            super().run(work, options, stop, lambda outcome: None)
            raise KeyboardInterrupt

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(3):
        (src / f"p{i}.png").write_bytes(encode(noise(8, 8, seed=i)))
    model = Repository(repo_path).stylizer("invert", backend="onnxruntime")
    with pytest.raises(BatchInterrupted):
        run_stylize(ForgetsItsOutcomes([model]), src, out, BatchOptions(fmt="png"), progress=False)
    assert len(visible_files(out)) == 3
    again = run_stylize(LocalExecutor([model]), src, out, BatchOptions(fmt="png"), progress=False)
    assert (again.done, again.failed, again.already_done) == (3, 0, 0)


def test_an_unwritable_output_is_one_sentence(where: tuple[str, ...], tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(encode(noise(8, 8)))
    notes = tmp_path / "notes.txt"
    notes.write_text("a file, not a folder")
    args = ("--model", "invert", "--format", "png", "--quiet", *where)
    refused(capsys, f"cannot write to the output folder {notes / 'out'}: {notes} is a file, not a folder",
            "stylize", str(src), str(notes / "out"), *args)
    refused(capsys, f"the output {notes} is an existing file", "stylize", str(src), str(notes), *args)
    refused(capsys, f"cannot write the output {notes / 'x.png'}: {notes} is a file, not a folder",
            "stylize", str(src / "a.png"), str(notes / "x.png"), *args)
    refused(capsys, f"cannot write the report {notes / 'r.json'}: {notes} is a file, not a folder",
            "stylize", str(src), str(tmp_path / "out"), *args, "--report", str(notes / "r.json"))
    assert not visible_files(tmp_path / "out")  # refused before the work
    assert notes.read_text() == "a file, not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions; see the test above")
def test_a_read_only_output_is_one_sentence(where: tuple[str, ...], tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    src, locked, out = tmp_path / "in", tmp_path / "locked", tmp_path / "out"
    src.mkdir()
    (src / "a.png").write_bytes(encode(noise(8, 8)))
    locked.mkdir(mode=0o555)
    out.mkdir()
    (out / ".artforge.lock").touch(mode=0o444)
    args = ("--model", "invert", "--format", "png", "--quiet", *where)
    try:
        refused(capsys, f"cannot write to the output folder {locked / 'out'}: Permission denied",
                "stylize", str(src), str(locked / "out"), *args)
        refused(capsys, f"cannot write to the output folder {out}: Permission denied ({out / '.artforge.lock'})",
                "stylize", str(src), str(out), *args)
    finally:
        locked.chmod(0o755)
