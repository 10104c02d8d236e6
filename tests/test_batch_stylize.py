"""`artforge stylize IN OUT` as a batch tool: real files, the shipped zoo stylizers, real subprocesses.

Covers the mirrored tree and odd inputs, the JSON report and exit codes,
resume (changed options and inputs, --force), kill -9 and Ctrl-C in the
middle of a run. `--server` runs and what both executors share: tests/test_batch_executors.py.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from batch_support import BOOKKEEPING, SAMPLES, ZOO_REPO, photo, run
from PIL import Image

from artforge.cli import main

ROOT = Path(__file__).resolve().parents[1]
# One backend for every run, so that outputs can be compared pixel for pixel.
LOCAL = ("--backend", "onnxruntime", "--quiet")

pytestmark = pytest.mark.skipif(not (ZOO_REPO / "mosaic").is_dir(), reason="the shipped zoo is not built")




def visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.name not in BOOKKEEPING)


def temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.tmp"))


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares a huge size and holds no pixels: it must be refused before decoding."""
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))


def report(out: Path) -> dict:
    return json.loads((out / "stylize-report.json").read_text())


# ------------------------------------------------------------------ the tree

def test_tree_with_odd_inputs_two_models_and_report(tmp_path, capsys):
    src = tmp_path / "in"
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / ".git").mkdir()
    cv2.imwrite(str(src / "a.jpg"), photo(97, 61))
    cv2.imwrite(str(src / "nested" / "deeper" / "b.png"), photo(50, 40, 1))
    cv2.imwrite(str(src / "nested" / "gray.png"), cv2.cvtColor(photo(64, 48, 2), cv2.COLOR_BGR2GRAY))
    rgba = cv2.cvtColor(photo(72, 56, 3), cv2.COLOR_BGR2BGRA)
    rgba[:, :, 3] = np.linspace(0, 255, 72, dtype=np.uint8)[np.newaxis, :]
    cv2.imwrite(str(src / "alpha.png"), rgba)
    cv2.imwrite(str(src / "deep16.png"), photo(60, 44, 4).astype(np.uint16) * 257)
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    Image.fromarray(cv2.cvtColor(photo(80, 52, 5), cv2.COLOR_BGR2RGB)).save(rotated, "JPEG", exif=exif.tobytes())
    (src / "rotated.jpg").write_bytes(rotated.getvalue())
    cmyk = io.BytesIO()
    Image.fromarray(cv2.cvtColor(photo(48, 40, 6), cv2.COLOR_BGR2RGB)).convert("CMYK").save(cmyk, "JPEG")
    (src / "cmyk.jpg").write_bytes(cmyk.getvalue())
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (src / "huge.png").write_bytes(png_header(20_000, 20_000))  # 400 MP, over the tool's 100 MP
    (src / "notes.txt").write_text("not an image")
    cv2.imwrite(str(src / ".hidden.png"), photo(20, 20))
    cv2.imwrite(str(src / ".git" / "x.png"), photo(20, 20))
    out = tmp_path / "out"

    code, stdout, err = run(capsys, "stylize", str(src), str(out), "--model", "mosaic,swirl", "--format", "png",
                            *LOCAL)
    assert code == 1, err  # two inputs fail, for each model
    assert stdout.startswith("stylized 14, failed 4, skipped 1 non-images -> "), stdout
    assert "broken.jpg" in err and "huge.png" in err and "Traceback" not in err
    for model in ("mosaic", "swirl"):
        folder = out / model
        names = [str(p.relative_to(folder)) for p in visible_files(folder)]
        assert names == ["a.png", "alpha.png", "cmyk.png", "deep16.png", "nested/deeper/b.png", "nested/gray.png",
                         "rotated.png"]
        read = {name: cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED) for name in names}
        assert read["a.png"].shape == (61, 97, 3)
        assert read["nested/gray.png"].shape == (48, 64, 3)  # grayscale in, colour out
        assert read["deep16.png"].shape == (44, 60, 3) and read["deep16.png"].dtype == np.uint8
        assert read["rotated.png"].shape == (80, 52, 3)  # EXIF orientation applied
        assert read["cmyk.png"].shape[:2] == (40, 48) and read["cmyk.png"][..., :3].std() > 5
        assert read["alpha.png"].shape == (56, 72, 4)
        assert np.array_equal(read["alpha.png"][:, :, 3], rgba[:, :, 3])  # alpha kept as it was
    assert not (out / "mosaic" / ".hidden.png").exists() and not temporaries(out)

    data = report(out)
    assert data["counts"] == {"planned": 18, "done": 14, "already_done": 0, "failed": 4, "not_done": 0,
                              "skipped_non_images": 1}
    assert data["interrupted"] is False
    reasons = {(Path(f["input"]).name, f["model"]): f["reason"] for f in data["failures"]}
    assert set(reasons) == {(n, m) for n in ("broken.jpg", "huge.png") for m in ("mosaic", "swirl")}
    assert "megapixels" in reasons["huge.png", "mosaic"] and "decoded" in reasons["broken.jpg", "mosaic"]
    for model in ("mosaic", "swirl"):
        entry = data["models"][model]
        assert entry["backend"] == "onnxruntime:cpu" and entry["done"] == 7 and entry["failed"] == 2
        assert entry["identity"]["name"] == model and len(entry["identity"]["sha256"]) == 64
        assert entry["model_seconds"] > 0
    timings = data["timings"]
    assert 0 < timings["model_seconds"] <= timings["wall_seconds"] and timings["images_per_second"] > 0
    # The benchmarks read these two top-level keys.
    assert data["model_seconds"] == timings["model_seconds"] and data["run_seconds"] == timings["wall_seconds"]
    assert data["options"]["format"] == "png"


def test_single_file_and_bad_options(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "p.jpg"), photo(120, 90))
    code, stdout, _ = run(capsys, "stylize", str(tmp_path / "p.jpg"), str(tmp_path / "styled.webp"),
                          "--model", "swirl", *LOCAL)
    assert code == 0 and stdout.startswith("stylized 1, failed 0")
    assert cv2.imread(str(tmp_path / "styled.webp")).shape == (90, 120, 3)
    assert not (tmp_path / "stylize-report.json").exists()  # one file: no report unless asked
    for bad, says in ((("--tile-overlap", "100", "--tile", "64"), "overlap"), (("--batch-size", "0"), "batch size"),
                      (("--quality", "0"), "quality")):
        code, _, err = run(capsys, "stylize", str(tmp_path), str(tmp_path / "o"), *bad, *LOCAL)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1


def test_stylize_folder_mirrors_tree_and_reports_bad_files(tmp_path, capsys):
    src = tmp_path / "in"
    (src / "nested").mkdir(parents=True)
    small = cv2.resize(cv2.imread(str(SAMPLES[0])), (97, 61))
    cv2.imwrite(str(src / "a.jpg"), small)
    cv2.imwrite(str(src / "nested" / "b.png"), small[:40, :50])
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (src / "notes.txt").write_text("not an image")
    code, out, err = run(capsys, "stylize", str(src), str(tmp_path / "out"), "--model", "mosaic,swirl", "--quiet")
    assert code == 1  # one input failed
    assert "stylized 4, failed 2, skipped 1" in out
    assert "broken.jpg" in err
    for model in ("mosaic", "swirl"):
        assert cv2.imread(str(tmp_path / "out" / model / "a.jpg")).shape == (61, 97, 3)
        assert cv2.imread(str(tmp_path / "out" / model / "nested" / "b.jpg")).shape == (40, 50, 3)


def test_stylize_single_file_to_named_output(tmp_path, capsys):
    target = tmp_path / "styled.png"
    code, _, _ = run(capsys, "stylize", str(SAMPLES[0]), str(target), "--model", "swirl",
                     "--max-side", "128", "--quiet")
    assert code == 0
    assert max(cv2.imread(str(target)).shape[:2]) == 128


def test_output_folder_inside_input_is_not_walked(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "p.png"), photo(40, 32))
    for _ in range(2):
        code, stdout, _ = run(capsys, "stylize", str(tmp_path), str(tmp_path / "styled"), "--model", "mosaic",
                              *LOCAL)
        assert code == 0
    assert "1 already done" in stdout and visible_files(tmp_path / "styled") == [tmp_path / "styled" / "p.jpg"]


def test_another_model_does_not_replace_a_models_outputs_unless_asked(tmp_path, capsys):
    """The manifest says which model wrote each file: a second model into the same folder refuses to write
    over the first one's outputs (they are not its own) until --overwrite, and then they are its own."""
    cv2.imwrite(str(tmp_path / "p.png"), photo(40, 32))
    src, out = tmp_path / "p.png", tmp_path / "styled"
    assert run(capsys, "stylize", str(src), str(out), "--model", "mosaic", *LOCAL)[0] == 0
    mosaic = (out / "p.jpg").read_bytes()
    code, stdout, err = run(capsys, "stylize", str(src), str(out), "--model", "swirl", *LOCAL)
    assert code == 1 and stdout.startswith("stylized 0, failed 1")
    assert "did not write it with swirl" in err and (out / "p.jpg").read_bytes() == mosaic
    code, stdout, _ = run(capsys, "stylize", str(src), str(out), "--model", "swirl", "--overwrite", *LOCAL)
    assert code == 0 and stdout.startswith("stylized 1, failed 0") and (out / "p.jpg").read_bytes() != mosaic
    assert run(capsys, "stylize", str(src), str(out), "--model", "swirl", *LOCAL)[1].startswith("stylized 0, failed 0")
    code, _, err = run(capsys, "stylize", str(src), str(out), "--model", "mosaic", *LOCAL)
    assert code == 1 and "did not write it with mosaic" in err  # swirl's file now


# ------------------------------------------------------------------ resume

def test_resume_skips_finished_and_redoes_what_changed(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(4):
        cv2.imwrite(str(src / f"p{i}.png"), photo(64, 48, i))
    args = ("stylize", str(src), str(out), "--model", "mosaic", *LOCAL)
    assert run(capsys, *args)[0] == 0
    stamps = {p: p.stat().st_mtime_ns for p in visible_files(out)}
    assert len(stamps) == 4

    code, stdout, _ = run(capsys, *args)
    assert code == 0 and stdout.startswith("stylized 0, failed 0, skipped 0 non-images, 4 already done")
    assert {p: p.stat().st_mtime_ns for p in visible_files(out)} == stamps  # not rewritten

    cv2.imwrite(str(src / "p1.png"), photo(64, 48, 9))  # an edited input
    (out / "p2.jpg").unlink()  # a lost output
    (out / "p3.jpg").write_bytes(b"overwritten by something else")
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and stdout.startswith("stylized 3, failed 0, skipped 0 non-images, 1 already done")
    assert cv2.imread(str(out / "p3.jpg")) is not None
    assert report(out)["counts"]["already_done"] == 1

    code, stdout, err = run(capsys, *args, "--quality", "80")
    assert code == 0 and stdout.startswith("stylized 4,") and "options changed" in err and "quality" in err
    assert report(out)["models"]["mosaic"]["redone"].startswith("mosaic: options changed")
    assert run(capsys, *args, "--quality", "80")[1].startswith("stylized 0,")

    code, stdout, err = run(capsys, *args, "--quality", "80", "--force")
    assert code == 0 and stdout.startswith("stylized 4,") and "--force" in err

    # The manifest notices a different model artifact under the same name.
    manifest = json.loads((out / "stylize-manifest.json").read_text())
    manifest["models"]["mosaic"]["identity"]["sha256"] = "0" * 64
    (out / "stylize-manifest.json").write_text(json.dumps(manifest))
    code, stdout, err = run(capsys, *args, "--quality", "80")
    assert stdout.startswith("stylized 4,") and "model changed" in err and "sha256" in err


def test_tiled_run_through_the_cli(tmp_path, capsys):
    """--tile and the automatic threshold reach the pipeline, and count as pixel options for resume."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "wide.png"), photo(240, 160))
    whole, tiled, auto = tmp_path / "whole", tmp_path / "tiled", tmp_path / "auto"
    assert run(capsys, "stylize", str(src), str(whole), "--model", "mosaic", "--format", "png", *LOCAL)[0] == 0
    assert run(capsys, "stylize", str(src), str(tiled), "--model", "mosaic", "--format", "png", "--tile", "96",
               *LOCAL)[0] == 0
    assert run(capsys, "stylize", str(src), str(auto), "--model", "mosaic", "--format", "png", "--tile-above",
               "0.01", *LOCAL)[0] == 0  # 0.038 MP is over the threshold: one 1024 tile covers it
    a, b = (cv2.imread(str(f / "wide.png")).astype(np.float32) for f in (whole, tiled))
    assert a.shape == b.shape == (160, 240, 3) and not np.array_equal(a, b)
    blur = (cv2.GaussianBlur(x, (0, 0), 4) for x in (a, b))
    assert np.abs(next(blur) - next(blur)).mean() < 20  # see test_tiling for the measured agreement
    assert np.array_equal(cv2.imread(str(auto / "wide.png")), cv2.imread(str(whole / "wide.png")))
    assert report(tiled)["options"]["tile"] == 96
    code, _, err = run(capsys, "stylize", str(src), str(tiled), "--model", "mosaic", "--format", "png", *LOCAL)
    assert code == 0 and "tile 96 -> unset" in err


def test_exact_tile_statistics_through_the_cli(tmp_path, capsys):
    """--tile-stats exact reaches the tiling: tiles match the whole-image run, and the mode is a pixel option."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "wide.png"), photo(240, 160))
    whole, exact = tmp_path / "whole", tmp_path / "exact"
    assert run(capsys, "stylize", str(src), str(whole), "--model", "mosaic", "--format", "png", *LOCAL)[0] == 0
    assert run(capsys, "stylize", str(src), str(exact), "--model", "mosaic", "--format", "png", "--tile", "96",
               "--tile-stats", "exact", *LOCAL)[0] == 0
    a, b = (cv2.imread(str(f / "wide.png")).astype(np.float32) for f in (whole, exact))
    assert np.abs(a - b).mean() <= 3.0  # the bound; per-tile statistics are far off at 96 px tiles
    assert report(exact)["options"]["tile_stats"] == "exact"
    code, _, err = run(capsys, "stylize", str(src), str(exact), "--model", "mosaic", "--format", "png", "--tile",
                       "96", *LOCAL)
    assert code == 0 and "tile_stats exact -> estimate" in err
    with pytest.raises(SystemExit) as stopped:
        run(capsys, "stylize", str(src), str(exact), "--tile-stats", "precise", *LOCAL)
    assert stopped.value.code == 2 and "--tile-stats" in capsys.readouterr().err


# ------------------------------------------------------------------ interruption

@pytest.fixture(scope="module")
def many(tmp_path_factory) -> tuple[Path, Path]:
    """60 photos (a few seconds of work) and their outputs from one uninterrupted run."""
    root = tmp_path_factory.mktemp("many")
    src = root / "in"
    for i in range(60):
        folder = src / f"part{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"p{i:02d}.jpg"), photo(192, 144, i))
    reference = root / "reference"
    assert main(["stylize", str(src), str(reference), "--model", "mosaic", "--format", "png", *LOCAL]) == 0
    return src, reference


def start(src: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "artforge", "stylize", str(src), str(out), "--model", "mosaic",
                             "--format", "png", "--batch-size", "1", *LOCAL], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def wait_for_outputs(process: subprocess.Popen, out: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(list(out.rglob("*.png"))) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run made no outputs"
        time.sleep(0.02)


def assert_same_outputs(out: Path, reference: Path) -> None:
    names = [p.relative_to(reference) for p in visible_files(reference)]
    assert [p.relative_to(out) for p in visible_files(out)] == names
    for name in names:
        assert np.array_equal(cv2.imread(str(out / name)), cv2.imread(str(reference / name))), name


def test_kill_9_leaves_no_partial_file_and_the_rerun_completes_exactly(many, tmp_path, capsys):
    src, reference = many
    out = tmp_path / "out"
    process = start(src, out)
    wait_for_outputs(process, out, 8)
    process.kill()
    process.communicate()
    done = visible_files(out)
    assert 8 <= len(done) < 60
    for path in done:  # whatever is visible is whole (atomic renames); temporaries are hidden dot-files
        image = cv2.imread(str(path))
        assert image is not None and image.shape == (144, 192, 3), path
    assert all(p.name.startswith(".") for p in temporaries(out))

    code, stdout, _ = run(capsys, "stylize", str(src), str(out), "--model", "mosaic", "--format", "png", *LOCAL)
    assert code == 0
    data = report(out)
    assert data["counts"]["done"] + data["counts"]["already_done"] == 60 and data["counts"]["already_done"] > 0
    assert not temporaries(out)
    assert_same_outputs(out, reference)


def test_ctrl_c_stops_cleanly_with_summary_and_exit_130(many, tmp_path, capsys):
    src, reference = many
    out = tmp_path / "out"
    process = start(src, out)
    wait_for_outputs(process, out, 4)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted" in stdout and "Traceback" not in stderr
    assert not temporaries(out)
    data = report(out)
    made = len(visible_files(out))
    assert data["interrupted"] is True and data["counts"]["done"] == made and data["counts"]["not_done"] == 60 - made
    # Everything the stopped run finished is in its manifest: the re-run only does the rest.
    code, stdout, _ = run(capsys, "stylize", str(src), str(out), "--model", "mosaic", "--format", "png", *LOCAL)
    assert code == 0 and f"{made} already done" in stdout
    assert_same_outputs(out, reference)
