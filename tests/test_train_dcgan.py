"""DCGAN training: real networks, real image files, a few steps at tiny widths."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from training_support import interrupt_training

from artforge.cli import build_parser
from artforge.cli.train import train_config
from artforge.models import build
from artforge.training import common
from artforge.training.configs import DCGANConfig
from artforge.training.dcgan import image_grid, train


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 small images (some not square, some in a sub-folder) and one corrupt file."""
    root = tmp_path_factory.mktemp("tiles")
    (root / "nested").mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        h, w = [(64, 64), (48, 90), (100, 70)][i % 3]
        image = np.zeros((h, w, 3), np.uint8)
        image[:] = rng.integers(0, 256, 3)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(image, (w // 2, h // 2), int(rng.integers(8, 24)), colour, -1)
        folder = root / "nested" if i % 2 else root
        cv2.imwrite(str(folder / f"tile{i}.png"), image)
    (root / "broken.jpg").write_bytes(b"this is not a JPEG")
    return root


def tiny(data: Path, out: Path, **kw) -> DCGANConfig:
    settings = dict(nz=8, ngf=4, ndf=4, batch_size=4, epochs=2, checkpoint_every=2, log_every=1, sample_count=4,
                    progress=False)
    settings.update(kw)
    return DCGANConfig(data=str(data), out=str(out), **settings)


def test_smoke_run_writes_artifact_metrics_and_samples(tiles: Path, tmp_path: Path) -> None:
    run = train(tiny(tiles, tmp_path / "run"))

    artifact = common.load_artifact(run)
    assert artifact["kind"] == "generator"
    assert artifact["arch"] == {"name": "dcgan", "nz": 8, "ngf": 4}
    assert artifact["latent_size"] == 8 and artifact["output_size"] == 64
    assert artifact["provenance"]["skipped_files"] == 1
    generator = build(artifact["kind"], artifact["arch"])
    generator.load_state_dict(artifact["state_dict"])
    with torch.no_grad():
        images = generator.eval()(torch.randn(2, 8))
    assert images.shape == (2, 3, 64, 64)
    assert images.abs().max() <= 1

    metrics = json.loads((run / common.METRICS).read_text())
    assert metrics["step"] == 6  # 12 readable images / batch 4 = 3 steps per epoch, 2 epochs
    assert metrics["images"] == 12 and metrics["skipped_files"] == 1
    assert [e["epoch"] for e in metrics["epochs"]] == [0, 1]
    for key in ("loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2"):
        assert np.isfinite(metrics["final"][key])
    assert metrics["steps_per_second"] > 0

    for epoch in (0, 1):
        grid = cv2.imread(str(run / "samples" / f"epoch_{epoch:03d}.png"))
        assert grid.shape == (2 * 66 + 2, 2 * 66 + 2, 3)  # 4 samples -> a 2x2 grid with 2 px gaps
    assert not list(run.rglob("*.tmp"))
    config = json.loads((run / common.CONFIG).read_text())
    assert config["ngf"] == 4 and config["data"] == str(tiles)


def test_resumed_run_matches_an_uninterrupted_one(tiles: Path, tmp_path: Path) -> None:
    straight = train(tiny(tiles, tmp_path / "straight"))

    stopped = tiny(tiles, tmp_path / "resumed", max_steps=4)
    train(stopped)
    assert torch.load(tmp_path / "resumed" / common.STATE, weights_only=False)["step"] == 4
    resumed = train(replace(stopped, max_steps=None))

    metrics = json.loads((resumed / common.METRICS).read_text())
    assert [h["step"] for h in metrics["history"]] == [1, 2, 3, 4, 5, 6]
    a, b = common.load_artifact(straight)["state_dict"], common.load_artifact(resumed)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_no_resume_starts_over_and_changed_settings_are_refused(tiles: Path, tmp_path: Path) -> None:
    cfg = tiny(tiles, tmp_path / "run", max_steps=2)
    train(cfg)
    with pytest.raises(ValueError, match=r"different settings \(ndf, ngf\)"):
        train(replace(cfg, ngf=8, ndf=8))
    train(replace(cfg, ngf=8, ndf=8, resume=False, max_steps=1))
    metrics = json.loads((tmp_path / "run" / common.METRICS).read_text())
    assert metrics["step"] == 1 and [h["step"] for h in metrics["history"]] == [1]


def test_ctrl_c_saves_state_and_the_same_command_resumes(tiles: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = tiny(tiles, out, epochs=1000, checkpoint_every=1)
    returncode, stderr = interrupt_training("dcgan", "DCGANConfig", cfg, out)
    assert returncode != 0
    assert "interrupted at step" in stderr
    saved = torch.load(out / common.STATE, weights_only=False)["step"]
    assert saved >= 1

    train(replace(cfg, max_steps=saved + 2))
    metrics = json.loads((out / common.METRICS).read_text())
    assert metrics["step"] == saved + 2
    assert [h["step"] for h in metrics["history"]] == list(range(1, saved + 3))


def test_user_mistakes_give_one_clear_sentence(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images found in"):
        train(tiny(empty, tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        train(tiny(tmp_path / "missing", tmp_path / "run"))
    (empty / "junk.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="could be decoded"):
        train(tiny(empty, tmp_path / "run"))
    with pytest.raises(ValueError, match="--ngf must be a positive integer"):
        train(tiny(empty, tmp_path / "run", ngf=0))


def test_image_grid_layout() -> None:
    grid = image_grid(torch.ones(5, 3, 8, 8) * -1, pad=1)
    assert grid.shape == (2 * 9 + 1, 3 * 9 + 1, 3)
    assert grid[1, 1].tolist() == [0, 0, 0] and grid[0, 0].tolist() == [255, 255, 255]


def test_command_line_options_fill_the_config() -> None:
    cfg = train_config(build_parser().parse_args(
        ["train", "dcgan", "--data", "d", "--out", "r", "--ngf", "32", "--ndf", "24", "--epochs", "3",
         "--batch-size", "16", "--seed", "5", "--device", "cpu", "--max-steps", "9", "--no-resume", "--no-progress"]))
    assert cfg == DCGANConfig(data="d", out="r", ngf=32, ndf=24, epochs=3, batch_size=16, seed=5, device="cpu",
                              max_steps=9, resume=False, progress=False)
