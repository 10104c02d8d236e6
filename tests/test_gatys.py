"""`artforge gatys`: pixels optimised through the real EfficientNet-Lite0 loss network, tiny images, few steps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from artforge.cli import main
from artforge.runtime.imageio import read_image
from artforge.training.configs import GatysConfig
from artforge.training.gatys import gatys, run_gatys
from artforge.training.losses import VGG_CFGS


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gatys")
    rng = np.random.default_rng(0)
    content = cv2.resize(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8), (60, 48), interpolation=cv2.INTER_CUBIC)
    cv2.rectangle(content, (8, 8), (30, 30), (255, 255, 255), 3)
    style = np.zeros((40, 56, 3), np.uint8)
    style[:, ::5] = (255, 200, 0)
    style[::4, :] = (0, 60, 255)
    cv2.imwrite(str(root / "content.png"), content)
    cv2.imwrite(str(root / "style.png"), style)
    return root / "content.png", root / "style.png"


def tiny(content: Path, style: Path, **kw) -> GatysConfig:
    settings = dict(steps=6, size=40, style_size=32, progress=False, log_every=2)
    settings.update(kw)
    return GatysConfig(content=str(content), style=str(style), **settings)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_the_loss_goes_down(images: tuple[Path, Path], optimizer: str) -> None:
    result = run_gatys(tiny(*images, optimizer=optimizer))
    assert result.image.shape == (32, 40, 3) and result.image.dtype == np.uint8  # longer side 40, aspect kept
    assert result.final["total"] < result.first["total"]
    assert [h["step"] for h in result.history] == [2, 4, 6]
    assert set(result.final) == {"total", "content", "style", "tv"}


def test_the_same_seed_gives_the_same_image(images: tuple[Path, Path]) -> None:
    first = gatys(*images, steps=3, size=40, style_size=32, init="noise", seed=4, progress=False)
    again = gatys(*images, steps=3, size=40, style_size=32, init="noise", seed=4, progress=False)
    other = gatys(*images, steps=3, size=40, style_size=32, init="noise", seed=5, progress=False)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_local_vgg19_weights_file_is_the_loss_network(images: tuple[Path, Path], tmp_path: Path) -> None:
    # Random weights in torchvision's vgg19 layout: what counts is that the file is read and used.
    state, index, cin = {}, 0, 3
    for v in VGG_CFGS["vgg19"]:
        if v == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(int(v), cin, 3, 3) * (2 / (9 * cin)) ** 0.5
        state[f"features.{index}.bias"] = torch.zeros(int(v))
        index, cin = index + 2, int(v)
    weights = tmp_path / "vgg19.pth"
    torch.save(state, weights)
    result = run_gatys(tiny(*images, steps=3, loss_network="vgg19", loss_weights=str(weights)))
    assert result.final["total"] < result.first["total"]
    with pytest.raises(ValueError, match="needs --loss-weights"):
        run_gatys(tiny(*images, loss_network="vgg19"))


def test_command_writes_the_image_and_says_what_it_did(images: tuple[Path, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "styled.png"
    code = main(["gatys", str(images[0]), str(images[1]), str(out), "--steps", "2", "--size", "40",
                 "--style-size", "32", "--optimizer", "adam", "--no-progress"])
    assert code == 0
    assert read_image(out).shape == (32, 40, 3)
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out}: loss ") and "in 2 steps" in printed


def test_user_mistakes_give_one_sentence_and_exit_2(images: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    content, style = images
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a JPEG")
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((20, 50, 3), np.uint8))
    out = str(tmp_path / "out.png")
    cases = [
        ([str(tmp_path / "missing.jpg"), str(style), out], "content image not found: "),
        ([str(content), str(corrupt), out], f"cannot decode the style image {corrupt}; use a JPEG/PNG"),
        ([str(content), str(small), out], f"the style image {small} is 50x20 pixels; gatys needs at least 32"),
        ([str(content), str(style), out, "--steps", "0"], "--steps must be at least 1, got 0"),
        ([str(content), str(style), str(tmp_path / "no" / "such" / "out.png")], "the folder "),
        ([str(content), str(style), str(tmp_path)], "it is a folder; name an image file"),
        ([str(content), str(style), str(tmp_path / "out.gif")], "the extension must be one of .png"),
    ]
    for argv, message in cases:
        assert main(["gatys", *argv, "--size", "40", "--no-progress"]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("artforge: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out.png").exists()
