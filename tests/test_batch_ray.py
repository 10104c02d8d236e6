"""`artforge stylize --engine ray`: the batch driver over Ray actors, on one local Ray cluster (2 CPUs).

The same messy tree through the local and the Ray engine gives the same
pixels, failures and counts; a stopped run, and a driver killed with SIGKILL,
resume without recomputing what they finished. The local executor's own behaviour: tests/test_batch_stylize.py.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from batch_support import BOOKKEEPING, ZOO_REPO, photo, run

from artforge.cli import main

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'artforge[ray]'")

ROOT = Path(__file__).resolve().parents[1]
# One backend for both engines, so that outputs can be compared pixel for pixel.
COMMON = ("--repo", str(ZOO_REPO), "--backend", "onnxruntime", "--format", "png", "--quiet")

pytestmark = pytest.mark.skipif(not (ZOO_REPO / "mosaic").is_dir(), reason="the shipped zoo is not built")


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    """One local Ray cluster for the module: the executor joins the cluster this process is connected to."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()




def visible_files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.name not in BOOKKEEPING)


def report(out: Path) -> dict:
    return json.loads((out / "stylize-report.json").read_text())


def test_messy_tree_two_models_same_pixels_failures_and_counts_as_the_local_engine(tmp_path, capsys):
    src = tmp_path / "in"
    (src / "nested" / "deeper").mkdir(parents=True)
    cv2.imwrite(str(src / "a.jpg"), photo(97, 61))
    cv2.imwrite(str(src / "nested" / "deeper" / "b.png"), photo(50, 40, 1))
    cv2.imwrite(str(src / "nested" / "gray.png"), cv2.cvtColor(photo(64, 48, 2), cv2.COLOR_BGR2GRAY))
    rgba = cv2.cvtColor(photo(72, 56, 3), cv2.COLOR_BGR2BGRA)
    rgba[:, :, 3] = np.linspace(0, 255, 72, dtype=np.uint8)[np.newaxis, :]
    cv2.imwrite(str(src / "alpha.png"), rgba)
    cv2.imwrite(str(src / "big.jpg"), photo(300, 200, 4))  # tiled: --tile 128 below
    (src / "same").mkdir()
    for i in range(5):  # same-size images share model calls
        cv2.imwrite(str(src / "same" / f"{i}.jpg"), photo(48, 32, 5 + i))
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (src / "truncated.png").write_bytes(cv2.imencode(".png", photo(40, 30, 6))[1].tobytes()[:100])
    (src / "notes.txt").write_text("not an image")
    options = ("--model", "mosaic,swirl", "--tile", "128", *COMMON)

    code, local_out, err = run(capsys, "stylize", str(src), str(tmp_path / "local"), *options)
    assert code == 1, err
    code, ray_out, err = run(capsys, "stylize", str(src), str(tmp_path / "ray"), *options, "--engine", "ray")
    assert code == 1, err  # a corrupt file is one failure, its neighbours are done
    assert "Traceback" not in err
    assert ray_out.splitlines()[0] == local_out.splitlines()[0].replace("/local", "/ray")
    assert ray_out.startswith("stylized 20, failed 4, skipped 1 non-images -> "), ray_out

    names = visible_files(tmp_path / "local")
    assert len(names) == 20 and visible_files(tmp_path / "ray") == names
    for name in names:
        local = cv2.imread(str(tmp_path / "local" / name), cv2.IMREAD_UNCHANGED)
        remote = cv2.imread(str(tmp_path / "ray" / name), cv2.IMREAD_UNCHANGED)
        assert local.shape == remote.shape and np.array_equal(local, remote), name
    assert not list((tmp_path / "ray").rglob("*.tmp"))

    local, data = report(tmp_path / "local"), report(tmp_path / "ray")
    assert data["counts"] == local["counts"] == {"planned": 24, "done": 20, "already_done": 0, "failed": 4,
                                                 "not_done": 0, "skipped_non_images": 1}
    reasons = {(Path(f["input"]).name, f["model"]): f["reason"] for f in data["failures"]}
    assert reasons == {(Path(f["input"]).name, f["model"]): f["reason"] for f in local["failures"]}
    assert set(reasons) == {(n, m) for n in ("broken.jpg", "truncated.png") for m in ("mosaic", "swirl")}
    for model in ("mosaic", "swirl"):
        entry = data["models"][model]
        assert entry["identity"] == local["models"][model]["identity"]  # a folder resumes across engines
        assert entry["backend"] == "onnxruntime:cpu in Ray actors" and entry["done"] == 10
        assert entry["model_seconds"] > 0
    assert data["options"]["engine"] == "ray" and data["options"]["ray_actor_cpus"] == 2
    assert data["timings"]["images_per_second"] > 0

    # Begun locally, finished on Ray: nothing left to do.
    code, out, err = run(capsys, "stylize", str(src), str(tmp_path / "local"), *options, "--engine", "ray")
    assert code == 1 and report(tmp_path / "local")["counts"]["already_done"] == 20, err


def test_a_stopped_run_resumes_without_recomputing_finished_outputs(tmp_path):
    from artforge.batch.cluster import RayExecutor
    from artforge.batch.driver import BatchInterrupted, run_stylize
    from artforge.batch.options import BatchOptions

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(16):
        cv2.imwrite(str(src / f"{i:02d}.jpg"), photo(96, 64, i))
    executor = RayExecutor(ZOO_REPO, ["mosaic"], backend="onnxruntime")
    options = BatchOptions(fmt="png", batch_size=2)
    stop = threading.Event()

    def stop_at_the_first_output() -> None:
        while not stop.is_set():
            if any(out.glob("*.png")):
                stop.set()
            time.sleep(0.02)

    watcher = threading.Thread(target=stop_at_the_first_output, daemon=True)
    watcher.start()
    with pytest.raises(BatchInterrupted) as caught:
        run_stylize(executor, src, out, options, progress=False, stop=stop)
    watcher.join()
    first = caught.value.report
    assert first.interrupted and 1 <= first.done < 16 and first.failed == 0
    finished = {path: path.stat().st_mtime_ns for path in first.outputs}
    assert len(finished) == first.done

    resumed = run_stylize(executor, src, out, options, progress=False)
    # Outputs the killed actors wrote but never reported are claimed by the run, so they are redone, not refused.
    assert (resumed.already_done, resumed.done, resumed.failed) == (first.done, 16 - first.done, 0)
    assert {path: path.stat().st_mtime_ns for path in finished} == finished  # not recomputed
    assert len(visible_files(out)) == 16 and not list(out.rglob("*.tmp"))


def test_a_driver_killed_with_sigkill_resumes_without_recomputing_recorded_outputs(tmp_path, monkeypatch):
    from artforge.batch.manifest import JOURNAL_NAME, Manifest

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(24):
        cv2.imwrite(str(src / f"{i:02d}.jpg"), photo(256, 192, i))
    # The driver joins this module's cluster, as a driver on a cluster's head node would.
    address = ray.get_runtime_context().gcs_address
    paths = os.pathsep.join([str(ROOT), str(Path(ray.__file__).resolve().parents[1])])
    driver = subprocess.Popen([sys.executable, "-m", "artforge", "stylize", str(src), str(out), "--model", "mosaic",
                               *COMMON, "--batch-size", "1", "--engine", "ray", "--ray-address", address],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": paths})
    journal, deadline = out / JOURNAL_NAME, time.monotonic() + 120
    while not (journal.exists() and journal.read_text().count("\n") >= 2):
        assert driver.poll() is None, driver.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the driver recorded no output"
        time.sleep(0.01)
    driver.kill()
    driver.communicate()
    recorded = {out / key for key in Manifest.load(out).models["mosaic"]["outputs"]}
    assert 2 <= len(recorded) < 24
    stamps = {path: path.stat().st_mtime_ns for path in recorded}

    # The same command again (in this process, which is connected to the cluster), with relative paths: the
    # actors' working folder is not this one.
    monkeypatch.chdir(tmp_path)
    assert main(["stylize", "in", "out", "--model", "mosaic", *COMMON, "--engine", "ray"]) == 0
    counts = report(out)["counts"]
    assert counts["already_done"] >= len(recorded) and counts["failed"] == 0
    assert counts["already_done"] + counts["done"] == 24
    assert {path: path.stat().st_mtime_ns for path in recorded} == stamps  # not recomputed
    assert len(visible_files(out)) == 24


def test_engine_errors_are_one_sentence(tmp_path, capsys):
    code, _, err = run(capsys, "stylize", str(tmp_path), str(tmp_path / "o"), "--engine", "ray", "--server", "h:1")
    assert code == 2 and "--engine ray and --server exclude each other" in err
    code, _, err = run(capsys, "stylize", str(tmp_path), str(tmp_path / "o"), "--ray-address", "auto")
    assert code == 2 and "--ray-address needs --engine ray" in err
    # Without Ray installed: how to install it, no traceback.
    blocked = "import sys; sys.modules['ray'] = None; from artforge.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", blocked, "stylize", str(tmp_path), str(tmp_path / "o"),
                           "--repo", str(ZOO_REPO), "--model", "mosaic", "--engine", "ray"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=120)
    assert done.returncode == 2 and "pip install 'artforge[ray]'" in done.stderr and "Traceback" not in done.stderr
