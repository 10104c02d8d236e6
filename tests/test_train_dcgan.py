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
from artforge.models.dcgan import Discriminator
from artforge.training import common
from artforge.training.configs import DCGANConfig
from artforge.training.dcgan import image_grid, train
from artforge.training.diffaugment import diff_augment, parse_policy


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
    with pytest.raises(ValueError, match="--loss must be one of bce, hinge"):
        train(tiny(empty, tmp_path / "run", loss="wasserstein"))
    with pytest.raises(ValueError, match=r"--ema must be in \[0, 1\)"):
        train(tiny(empty, tmp_path / "run", ema=1.0))
    with pytest.raises(ValueError, match="unknown transform\\(s\\) rotate"):
        train(tiny(empty, tmp_path / "run", augment="color,rotate"))
    with pytest.raises(FileNotFoundError, match="--eval-data folder not found"):
        train(tiny(empty, tmp_path / "run", eval_data=str(tmp_path / "nowhere")))


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
    cfg = train_config(build_parser().parse_args(
        ["train", "dcgan", "--data", "d", "--out", "r", "--loss", "hinge", "--spectral-norm", "--lr-d", "4e-4",
         "--ema", "0.99", "--augment", "color,cutout", "--eval-data", "held", "--eval-every", "2",
         "--eval-samples", "64"]))
    assert (cfg.loss, cfg.spectral_norm, cfg.lr_d, cfg.ema, cfg.augment) == ("hinge", True, 4e-4, 0.99, "color,cutout")
    assert (cfg.eval_data, cfg.eval_every, cfg.eval_samples) == ("held", 2, 64)
    cfg = train_config(build_parser().parse_args(
        ["train", "dcgan", "--data", "d", "--out", "r", "--no-spectral-norm", "--ema", "0", "--augment", "none"]))
    assert (cfg.spectral_norm, cfg.ema, cfg.augment) == (False, 0.0, "none")


PRACTICE = dict(loss="hinge", spectral_norm=True, lr_d=4e-4, ema=0.9, augment="color,translation,cutout")


def test_training_practice_options_and_quality_log(tiles: Path, tmp_path: Path) -> None:
    run = train(tiny(tiles, tmp_path / "run", eval_every=1, eval_data=str(tiles), eval_samples=8, **PRACTICE))

    metrics = json.loads((run / common.METRICS).read_text())
    assert [q["epoch"] for q in metrics["quality"]] == [1, 2]  # every epoch (the last one once)
    for q in metrics["quality"]:
        assert q["fd"] > 0 and 0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1 and 0 <= q["duplicates"] <= 1
        assert q["real"] == 8 and q["generated"] == 8
    assert metrics["reference"] == f"8 images of {tiles}"
    artifact = common.load_artifact(run)
    provenance = artifact["provenance"]
    assert provenance["quality"]["fd"] == metrics["quality"][-1]["fd"]
    assert (provenance["loss"], provenance["spectral_norm"], provenance["ema"]) == ("hinge", True, 0.9)
    assert provenance["augment"] == "color,translation,cutout" and provenance["lr_d"] == 4e-4
    # The export is the moving average, not the last step's weights.
    state = torch.load(run / common.STATE, weights_only=False)
    exported, live, ema = artifact["state_dict"], state["generator"], state["ema"]
    assert torch.equal(exported["net.0.weight"], ema["net.0.weight"])
    assert not torch.equal(exported["net.0.weight"], live["net.0.weight"])
    generator = build(artifact["kind"], artifact["arch"])
    generator.load_state_dict(exported)
    with torch.no_grad():
        images = generator.eval()(torch.randn(3, 8))
    assert torch.isfinite(images).all() and images.abs().max() <= 1


def test_resume_with_every_option_matches_an_uninterrupted_run(tiles: Path, tmp_path: Path) -> None:
    straight = train(tiny(tiles, tmp_path / "straight", **PRACTICE))
    stopped = tiny(tiles, tmp_path / "resumed", max_steps=4, **PRACTICE)
    train(stopped)
    resumed = train(replace(stopped, max_steps=None))
    a, b = common.load_artifact(straight)["state_dict"], common.load_artifact(resumed)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_spectral_norm_discriminator_has_unit_norm_layers_and_no_batch_norm() -> None:
    torch.manual_seed(0)
    d = Discriminator(ndf=8, spectral_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    for _ in range(20):  # power iterations run in training mode
        d(torch.randn(4, 3, 64, 64))
    d.eval()
    for m in d.modules():
        if isinstance(m, torch.nn.Conv2d):
            sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item()
            assert sigma == pytest.approx(1.0, rel=0.05)
    assert d(torch.randn(2, 3, 64, 64)).shape == (2,)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in Discriminator(ndf=8).modules())


def test_diff_augment_keeps_shapes_and_gradients() -> None:
    torch.manual_seed(0)
    x = (torch.rand(6, 3, 64, 64) * 2 - 1).requires_grad_(True)
    assert parse_policy("") == parse_policy("none") == ()
    assert parse_policy(" color , cutout ") == ("color", "cutout")
    assert diff_augment(x, ()) is x
    cut = diff_augment(x, ("cutout",))
    zeroed = (cut == 0).float().mean().item()
    assert 0.1 < zeroed < 0.3  # a half-side square, sometimes clipped at the border
    moved = diff_augment(x, ("translation",))
    assert moved.shape == x.shape and not torch.equal(moved, x)
    out = diff_augment(x, parse_policy("color,translation,cutout"))
    out.sum().backward()
    assert out.shape == x.shape and x.grad is not None and x.grad.abs().sum() > 0
