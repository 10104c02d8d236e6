"""The `artforge` command on the shipped zoo, and the errors users meet first."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from artforge.cli import DEFAULT_ZOO, main

ZOO_REPO = DEFAULT_ZOO / "repository"
SAMPLES = DEFAULT_ZOO / "samples"

pytestmark = pytest.mark.skipif(not (ZOO_REPO / "art_style").is_dir(), reason="the shipped zoo is not built")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_the_zoo(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    for name, kind in (("art_style", "classifier"), ("abstract_dcgan", "generator"), ("mosaic", "stylizer"),
                       ("swirl", "stylizer")):
        assert any(line.startswith(name) and kind in line for line in out.splitlines()), out


def test_classify_sample_photos_as_photos(capsys):
    photos = sorted(str(p) for p in SAMPLES.glob("*.jpg"))
    code, out, _ = run(capsys, "classify", *photos, "--top-k", "2")
    assert code == 0
    assert len(out.splitlines()) == len(photos)
    # Untouched photos should mostly be recognised as the "photo" style.
    top1 = [line.split(": ", 1)[1].split()[0] for line in out.splitlines()]
    assert top1.count("photo") >= len(photos) // 2, out


def test_generate_writes_images(tmp_path, capsys):
    code, out, _ = run(capsys, "generate", "--count", "3", "--seed", "7", "--out", str(tmp_path))
    assert code == 0
    files = sorted(tmp_path.glob("*.png"))
    assert len(files) == 3
    assert cv2.imread(str(files[0])).shape == (64, 64, 3)


@pytest.mark.parametrize("content", [b"", b"GIF89a truncated", bytes(range(256))])
def test_classify_bad_image_gives_one_clear_error(tmp_path, capsys, content):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    code, _, err = run(capsys, "classify", str(bad))
    assert code == 1
    assert "bad.jpg" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_model_names_the_available_ones(capsys):
    code, _, err = run(capsys, "classify", str(sorted(SAMPLES.glob("*.jpg"))[0]), "--model", "nope")
    assert code == 2
    assert "nope" in err and "art_style" in err


def test_missing_repository_folder(tmp_path, capsys):
    code, _, err = run(capsys, "models", "--repo", str(tmp_path / "missing"))
    assert code == 2
    assert "missing" in err


def test_malformed_repository_reports_the_model(tmp_path, capsys):
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    code, out, _ = run(capsys, "models", "--repo", str(tmp_path))
    assert code == 0 and "broken" in out
    code, _, err = run(capsys, "classify", str(sorted(SAMPLES.glob("*.jpg"))[0]), "--repo", str(tmp_path),
                       "--model", "broken")
    assert code == 2 and "broken" in err and "Traceback" not in err


def test_demo_runs_every_kind_without_torch(tmp_path):
    code = (
        "import sys; from artforge.cli import main; "
        f"rc = main(['demo', '--out', {str(tmp_path)!r}]); "
        "assert 'torch' not in sys.modules, 'the runtime imported torch'; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "results in" in result.stdout
    assert len(list((tmp_path / "stylized").rglob("*.jpg"))) >= 2 * len(list(SAMPLES.glob("*.jpg")))
    assert (tmp_path / "generated" / "abstract_dcgan.png").is_file()
    assert (tmp_path / "classification.txt").read_text().strip()
    image = cv2.imread(str(tmp_path / "generated" / "abstract_dcgan.png"))
    assert image is not None and np.std(image) > 5
