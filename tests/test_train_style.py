"""Style-network training: the real EfficientNet-Lite0 loss network (and a VGG
built from a torchvision-format file), real image files, a few tiny steps."""

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
from artforge.models.style_net import TransformerNet
from artforge.training import common
from artforge.training.configs import LossOptions, LossWeights, StyleConfig
from artforge.training.losses import (
    VGG_CFGS,
    PerceptualLoss,
    VGGLossNetwork,
    _vgg_layer_names,
    build_loss_network,
    gram_matrix,
    quantiles,
    softmax_smoothing,
    total_variation,
)
from artforge.training.style import ContentSampler, _start_at_style_colour, train


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(content folder with 5 images in nested folders plus a corrupt file, style image)."""
    root = tmp_path_factory.mktemp("style")
    data = root / "content"
    (data / "a" / "b").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        h, w = [(40, 56), (64, 48), (36, 36)][i % 3]
        image = cv2.resize(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
        cv2.rectangle(image, (4, 4), (w // 2, h // 2), (255, 255, 255), 2)
        cv2.imwrite(str((data / "a" / "b" if i % 2 else data) / f"c{i}.jpg"), image)
    (data / "a" / "broken.png").write_bytes(b"not a PNG")
    style = root / "style.png"
    stripes = np.zeros((50, 70, 3), np.uint8)
    stripes[:, ::6] = (255, 200, 0)
    stripes[::5, :] = (0, 60, 255)
    cv2.imwrite(str(style), stripes)
    return data, style


def tiny(data: Path, style: Path, out: Path, **kw) -> StyleConfig:
    settings = dict(width=0.125, image_size=32, style_size=32, batch_size=2, steps=4, sample_every=2,
                    checkpoint_every=2, log_every=1, progress=False)
    settings.update(kw)
    return StyleConfig(style=str(style), data=str(data), out=str(out), **settings)


def test_smoke_run_writes_artifact_metrics_and_samples(images: tuple[Path, Path], tmp_path: Path) -> None:
    data, style = images
    run = train(tiny(data, style, tmp_path / "run"))

    artifact = common.load_artifact(run)
    assert artifact["kind"] == "stylizer"
    assert artifact["arch"] == {"name": "transformer_net", "width": 0.125, "residual_blocks": 5}
    assert artifact["size_multiple"] == 4
    provenance = artifact["provenance"]
    assert provenance["style_image"] == str(style) and provenance["loss_network"] == "efficientnet_lite0"
    assert provenance["steps"] == 4 and provenance["seed"] == 0
    assert set(provenance["weights"]) == {"content", "style", "tv"}
    assert provenance["loss_options"] == {"smoothing": "none", "temperature": 1.0, "style_match": "gram",
                                          "style_sizes": [32]}
    assert {"content", "style", "tv", "total"} <= set(provenance["final_losses"])
    net = build(artifact["kind"], artifact["arch"])
    net.load_state_dict(artifact["state_dict"])
    with torch.no_grad():
        assert net(torch.rand(1, 3, 24, 40) * 255).shape == (1, 3, 24, 40)

    metrics = json.loads((run / common.METRICS).read_text())
    assert metrics["step"] == 4 and metrics["images"] == 6
    assert metrics["skipped_files"] in (0, 1)  # the corrupt file counts once it has been drawn
    assert [h["step"] for h in metrics["history"]] == [1, 2, 3, 4]
    assert all(np.isfinite(metrics["final"][k]) for k in ("content", "style", "tv", "total"))
    assert metrics["steps_per_second"] > 0

    for step in (2, 4):
        strip = cv2.imread(str(run / "samples" / f"step_{step:06d}.png"))
        assert strip.shape == (32, 32 + 4 + 32, 3)  # content | gap | stylized
    assert not list(run.rglob("*.tmp"))


def test_resumed_run_matches_an_uninterrupted_one(images: tuple[Path, Path], tmp_path: Path) -> None:
    data, style = images
    straight = train(tiny(data, style, tmp_path / "straight"))
    stopped = tiny(data, style, tmp_path / "resumed", max_steps=2)
    train(stopped)
    assert torch.load(tmp_path / "resumed" / common.STATE, weights_only=False)["step"] == 2
    resumed = train(replace(stopped, max_steps=None))

    metrics = json.loads((resumed / common.METRICS).read_text())
    assert [h["step"] for h in metrics["history"]] == [1, 2, 3, 4]
    a, b = common.load_artifact(straight)["state_dict"], common.load_artifact(resumed)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ctrl_c_saves_state_and_the_same_command_resumes(images: tuple[Path, Path], tmp_path: Path) -> None:
    data, style = images
    out = tmp_path / "run"
    cfg = tiny(data, style, out, steps=100000, checkpoint_every=1, sample_every=1000)
    returncode, stderr = interrupt_training("style", "StyleConfig", cfg, out)
    assert returncode != 0
    assert "interrupted at step" in stderr
    saved = torch.load(out / common.STATE, weights_only=False)["step"]
    assert saved >= 1

    train(replace(cfg, max_steps=saved + 1))
    metrics = json.loads((out / common.METRICS).read_text())
    assert metrics["step"] == saved + 1
    assert [h["step"] for h in metrics["history"]] == list(range(1, saved + 2))
    assert common.load_artifact(out)["provenance"]["steps"] == saved + 1


def _torchvision_vgg16_state_dict() -> dict[str, torch.Tensor]:
    """Random weights in torchvision's vgg16 key layout, classifier included."""
    state, index, cin = {}, 0, 3
    for v in VGG_CFGS["vgg16"]:
        if v == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(int(v), cin, 3, 3) * (2 / (9 * cin)) ** 0.5
        state[f"features.{index}.bias"] = torch.zeros(int(v))
        index, cin = index + 2, int(v)
    # torchvision's classifier is 4096-wide; a small stand-in shows the keys are ignored.
    state["classifier.0.weight"] = torch.randn(8, 25088)
    state["classifier.0.bias"] = torch.zeros(8)
    return state


def test_vgg16_loss_network_from_a_torchvision_file_trains(images: tuple[Path, Path], tmp_path: Path) -> None:
    data, style = images
    weights = tmp_path / "vgg16.pth"
    torch.save(_torchvision_vgg16_state_dict(), weights)

    network = VGGLossNetwork("vgg16", weights)
    assert len(network.features) == 23  # through relu4_3, the last layer the loss uses
    assert not any(p.requires_grad for p in network.parameters())
    network.train()
    assert not network.training  # a parent's train() must not unfreeze it

    run = train(tiny(data, style, tmp_path / "run", loss_network="vgg16", loss_weights=str(weights), steps=1))
    artifact = common.load_artifact(run)
    assert artifact["provenance"]["loss_network"] == "vgg16"
    assert artifact["provenance"]["loss_layers"]["style"] == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]

    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, wrong)
    with pytest.raises(ValueError, match="not a torchvision-format vgg16 state_dict"):
        VGGLossNetwork("vgg16", wrong)
    with pytest.raises(ValueError, match="needs --loss-weights"):
        train(tiny(data, style, tmp_path / "run2", loss_network="vgg19"))


def test_user_mistakes_give_one_clear_sentence(images: tuple[Path, Path], tmp_path: Path) -> None:
    data, style = images
    with pytest.raises(FileNotFoundError, match="style image not found"):
        train(tiny(data, tmp_path / "missing.jpg", tmp_path / "run"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images found in"):
        train(tiny(empty, style, tmp_path / "run"))
    with pytest.raises(ValueError, match="--width must be greater than 0"):
        train(tiny(data, style, tmp_path / "run", width=0))
    with pytest.raises(ValueError, match="--image-size must be a multiple of 4"):
        train(tiny(data, style, tmp_path / "run", image_size=30))
    bad_style = tmp_path / "bad.png"
    bad_style.write_bytes(b"nope")
    with pytest.raises(ValueError, match="cannot decode the style image"):
        train(tiny(data, bad_style, tmp_path / "run"))


def test_loss_options_train_and_are_recorded(images: tuple[Path, Path], tmp_path: Path) -> None:
    data, style = images
    options = dict(smoothing="softmax", style_scales=(0.5, 1.0, 2.0), style_layers=("block0", "block4"),
                   content_layer="block4", temperature=0.5)
    run = train(tiny(data, style, tmp_path / "run", steps=3, max_steps=2, **options))
    provenance = common.load_artifact(run)["provenance"]
    assert provenance["loss_options"] == {"smoothing": "softmax", "temperature": 0.5, "style_match": "gram",
                                          "style_sizes": [16, 32, 64]}
    assert provenance["loss_layers"] == {"style": ["block0", "block4"], "content": "block4"}
    saved = json.loads((run / common.CONFIG).read_text())
    assert saved["style_scales"] == [0.5, 1.0, 2.0] and saved["style_layers"] == ["block0", "block4"]
    # The same options resume (the saved config holds lists, the dataclass tuples).
    resumed = train(tiny(data, style, tmp_path / "run", steps=3, **options))
    assert common.load_artifact(resumed)["provenance"]["steps"] == 3
    with pytest.raises(ValueError, match=r"different settings \(smoothing\)"):
        train(tiny(data, style, tmp_path / "run", steps=3, **{**options, "smoothing": "none"}))
    with pytest.raises(ValueError, match=r"different settings \(style_match\)"):
        train(tiny(data, style, tmp_path / "run", steps=3, **{**options, "style_match": "sliced"}))
    # The sliced style loss trains and is recorded.
    sliced = train(tiny(data, style, tmp_path / "sliced", steps=2, style_match="sliced"))
    assert common.load_artifact(sliced)["provenance"]["loss_options"]["style_match"] == "sliced"


def test_loss_option_mistakes_give_one_clear_sentence(images: tuple[Path, Path], tmp_path: Path) -> None:
    data, style = images
    with pytest.raises(ValueError, match="--smoothing must be one of none, softmax"):
        train(tiny(data, style, tmp_path / "run", smoothing="gauss"))
    with pytest.raises(ValueError, match=r"--style-match must be one of gram, sliced, gram\+sliced"):
        train(tiny(data, style, tmp_path / "run", style_match="moments"))
    with pytest.raises(ValueError, match="--temperature must be greater than 0"):
        train(tiny(data, style, tmp_path / "run", temperature=0))
    with pytest.raises(ValueError, match="--style-scales must be one or more numbers"):
        train(tiny(data, style, tmp_path / "run", style_scales=()))
    with pytest.raises(ValueError, match="at least 16 pixels"):
        train(tiny(data, style, tmp_path / "run", style_scales=(0.25, 1.0)))
    with pytest.raises(ValueError, match="efficientnet_lite0 has no layer 'block16'"):
        train(tiny(data, style, tmp_path / "run", style_layers=("block2", "block16")))
    with pytest.raises(ValueError, match=r"vgg16 has no layer\(s\) relu9_9"):
        weights = tmp_path / "vgg16.pth"
        torch.save(_torchvision_vgg16_state_dict(), weights)
        build_loss_network("vgg16", weights, content_layer="relu9_9")


def test_softmax_smoothing_and_the_smoothed_loss() -> None:
    torch.manual_seed(0)
    flat = torch.full((2, 3, 4, 5), 7.0)
    assert torch.allclose(softmax_smoothing(flat, 1.0), torch.ones_like(flat))  # a flat map stays 1
    peaky = torch.randn(2, 3, 4, 5) * 10
    smooth = softmax_smoothing(peaky, 10.0)
    assert torch.allclose(smooth.sum(dim=(1, 2, 3)), torch.full((2,), 60.0))  # mean 1 per image
    assert torch.allclose(softmax_smoothing(peaky + 5, 10.0), smooth, atol=1e-5)  # a shift changes nothing
    # A higher temperature is flatter: less of the mass sits in the largest activation.
    assert softmax_smoothing(peaky, 20.0).amax() < smooth.amax() < softmax_smoothing(peaky, 5.0).amax()

    network = build_loss_network("efficientnet_lite0")
    style = torch.rand(1, 3, 48, 48) * 255
    content = torch.rand(2, 3, 32, 32) * 255
    weights = LossWeights(content=1.0, style=1.0, tv=0.0)
    for options in (None, LossOptions(smoothing="softmax"), LossOptions(smoothing="softmax", temperature=2.0)):
        loss = PerceptualLoss(network, style, weights, options)
        same = loss(content, loss.content_target(content))
        assert same["content"] < 1e-6  # the content's own features match exactly
        other = loss(content.flip(0), loss.content_target(content))
        assert other["content"] > 1e-3 and torch.isfinite(other["total"])
    # Several style sizes: the Gram target is their mean; one size is the single-image loss.
    small = torch.nn.functional.interpolate(style, size=(24, 24), mode="area")
    softmax = LossOptions(smoothing="softmax")
    one = PerceptualLoss(network, [style], weights, softmax)
    assert torch.equal(one.style_targets()[0], PerceptualLoss(network, style, weights, softmax).style_targets()[0])
    both = PerceptualLoss(network, [small, style], weights, softmax)
    small_only = PerceptualLoss(network, [small], weights, softmax)
    assert not torch.allclose(both.style_targets()[0], one.style_targets()[0])
    assert both.style_targets()[0].shape == small_only.style_targets()[0].shape
    with pytest.raises(ValueError, match="unknown smoothing"):
        PerceptualLoss(network, style, weights, LossOptions(smoothing="gauss"))


def test_sliced_style_loss_matches_the_style_distribution() -> None:
    torch.manual_seed(0)
    network = build_loss_network("efficientnet_lite0")
    style = torch.rand(1, 3, 48, 48) * 255
    weights = LossWeights(content=0.0, style=1.0, tv=0.0)
    loss = PerceptualLoss(network, style, weights, LossOptions(style_match="sliced"))

    def style_loss(image: torch.Tensor) -> float:
        return float(loss(image, loss.content_target(image))["style"])

    # The style image itself is 0; the same pixels shifted (the same distribution, other borders) are near;
    # less of one colour, or no colour, is far.
    assert style_loss(style) < 1e-6
    near = style_loss(style.roll(16, 3))
    assert near < 0.2
    assert style_loss(style * torch.tensor([1.0, 1.0, 0.3]).view(1, 3, 1, 1)) > 3 * near
    assert style_loss(style.mean(1, keepdim=True).expand(1, 3, 48, 48)) > 3 * near
    # Another image size is compared through its quantiles, and the loss has a gradient.
    image = (torch.rand(2, 3, 32, 32) * 255).requires_grad_()
    value = loss(image, loss.content_target(image.detach()))["style"]
    value.backward()
    assert torch.isfinite(value) and image.grad is not None and image.grad.abs().sum() > 0
    # Quantile resampling keeps a sorted row's ends and order.
    row = torch.sort(torch.rand(3, 10), dim=1).values
    resampled = quantiles(row, 25)
    assert resampled.shape == (3, 25) and torch.equal(resampled[:, [0, -1]], row[:, [0, -1]])
    assert (resampled.diff(dim=1) >= 0).all()
    # gram+sliced is the sum of the two terms.
    gram = PerceptualLoss(network, style, weights)
    both = PerceptualLoss(network, style, weights, LossOptions(style_match="gram+sliced"))
    shifted = style.roll(16, 3)
    total = both(shifted, both.content_target(shifted))["style"]
    torch.testing.assert_close(total, gram(shifted, gram.content_target(shifted))["style"] + style_loss(shifted))
    with pytest.raises(ValueError, match="unknown style match"):
        PerceptualLoss(network, style, weights, LossOptions(style_match="moments"))


def test_a_fresh_network_starts_at_the_style_colour() -> None:
    torch.manual_seed(0)
    net = TransformerNet(width=0.125)
    photo = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        assert net(photo).mean().abs() < 10  # black, before
    style = np.zeros((8, 8, 3), np.uint8)
    style[...] = (30, 90, 200)
    _start_at_style_colour(net, style)
    with torch.no_grad():
        means = net(photo).mean(dim=(0, 2, 3))
    assert torch.allclose(means, torch.tensor([30.0, 90.0, 200.0]), atol=10)


def test_unreadable_content_files_are_skipped_and_counted(images: tuple[Path, Path]) -> None:
    data, _ = images
    good, broken = data / "c0.jpg", data / "a" / "broken.png"
    sampler = ContentSampler([broken, good], size=16, seed=0)
    batch = sampler.batch(0, 6)
    assert batch.shape == (6, 16, 16, 3) and batch.dtype == np.uint8
    assert sampler.skipped == {str(broken)}
    assert np.array_equal(sampler.batch(5, 6), ContentSampler([broken, good], 16, 0).batch(5, 6))
    with pytest.raises(ValueError, match="none of the 1 image file"):
        ContentSampler([broken], size=16, seed=0).batch(0, 1)


def test_loss_helpers() -> None:
    # Gram normalised by C*H*W: all-ones features give 1/C everywhere, at any size.
    for h in (4, 9):
        assert torch.allclose(gram_matrix(torch.ones(2, 5, h, h)), torch.full((2, 5, 5), 1 / 5))
    assert total_variation(torch.full((1, 3, 8, 8), 77.0)) == 0
    names16, names19 = _vgg_layer_names(VGG_CFGS["vgg16"]), _vgg_layer_names(VGG_CFGS["vgg19"])
    assert [names16.index(n) for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")] == [3, 8, 15, 22]
    assert [names19.index(n) for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")] == [3, 8, 15, 24]


def test_command_line_options_fill_the_config() -> None:
    cfg = train_config(build_parser().parse_args(
        ["train", "style", "--style", "s.jpg", "--data", "d", "--out", "r", "--width", "0.5", "--image-size", "160",
         "--style-weight", "2", "--max-steps", "7", "--no-resume", "--loss-network", "vgg19", "--loss-weights", "w"]))
    assert cfg == StyleConfig(style="s.jpg", data="d", out="r", width=0.5, image_size=160, style_weight=2.0,
                              max_steps=7, resume=False, loss_network="vgg19", loss_weights="w")
    options = train_config(build_parser().parse_args(
        ["train", "style", "--style", "s.jpg", "--data", "d", "--out", "r", "--smoothing", "none", "--temperature",
         "0.5", "--style-scales", "0.5,1,2", "--style-layers", "block0,block2", "--content-layer", "block4"]))
    assert options == StyleConfig(style="s.jpg", data="d", out="r", smoothing="none", temperature=0.5,
                                  style_scales=(0.5, 1.0, 2.0), style_layers=("block0", "block2"),
                                  content_layer="block4")
    assert options.loss_options() == LossOptions(smoothing="none", temperature=0.5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "style", "--style", "s", "--data", "d", "--out", "r",
                                   "--style-scales", "1,big"])
    assert cfg.loss_weight_values().style == 2.0 and cfg.loss_weight_values().content > 0
