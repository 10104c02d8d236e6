"""Fine-tuning the EfficientNet-Lite0 classifier: real weights, real image files, tiny data."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from artforge.cli import build_parser
from artforge.cli.train import train_config
from artforge.models import build
from artforge.models.efficientnet_lite import EfficientNetLite0, load_imagenet
from artforge.training.classifier import (
    _stratified_split,
    eval_transform,
    staged_forward,
    train,
    train_transform,
)
from artforge.training.common import STATE, load_artifact
from artforge.training.configs import ClassifierConfig

CLASSES = ("checks", "red", "stripes")


@pytest.fixture(autouse=True)
def one_thread():
    # These tensors are tiny: a second intra-op thread buys nothing, and on shared cores each op's
    # thread barrier can wait milliseconds for a descheduled peer.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pattern(kind: int, rng: np.random.Generator, h: int = 72, w: int = 90) -> np.ndarray:
    """BGR images whose classes differ plainly in colour and texture."""
    y, x = np.mgrid[0:h, 0:w]
    if kind == 0:  # green / black checkerboard
        cell = int(rng.integers(6, 12))
        mask = ((y // cell + x // cell) % 2).astype(bool)
        image = np.where(mask[..., None], np.array([40, 200, 40]), np.array([10, 10, 10]))
    elif kind == 1:  # flat red
        image = np.broadcast_to(np.array([30, 30, 210]), (h, w, 3))
    else:  # blue / white horizontal stripes
        period = int(rng.integers(6, 14))
        mask = ((y // period) % 2).astype(bool)
        image = np.where(mask[..., None], np.array([220, 60, 20]), np.array([250, 250, 250]))
    noise = rng.normal(0, 12, (h, w, 3))
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def make_dataset(root: Path, classes: tuple[str, ...] = CLASSES, per_class: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            assert cv2.imwrite(str(folder / f"{i:02d}.png"), _pattern(CLASSES.index(name), rng))
    return root


def tiny_config(data: Path, out: Path, **overrides) -> ClassifierConfig:
    settings = dict(data=str(data), out=str(out), size=64, batch_size=4, epochs_frozen=1, epochs_unfrozen=1,
                    lr_head=3e-3, lr_finetune=3e-4, unfreeze="2", val_fraction=0.34, workers=0, progress=False)
    settings.update(overrides)
    return ClassifierConfig(**settings)


def test_both_phases_write_artifact_and_metrics(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data")
    # One loader worker, so the multi-process path (tuple keys, worker init) is exercised too.
    run = train(tiny_config(data, tmp_path / "run", workers=1))

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    assert [(h["phase"], h["epoch"]) for h in metrics["history"]] == [(1, 1), (2, 1)]
    final = metrics["final"]
    assert set(final["per_class_accuracy"]) == set(CLASSES)
    confusion = np.array(final["confusion_matrix"])
    assert confusion.shape == (3, 3)
    assert confusion.sum() == metrics["images"]["val"] == 6
    assert metrics["images"]["train"] == 12
    # Phase 2 trains more than the head but not the whole network.
    assert 1280 * 3 + 3 < metrics["phases"]["2"]["trainable_parameters"] < 3_000_000

    artifact = load_artifact(run)
    assert artifact["kind"] == "classifier"
    assert artifact["labels"] == list(CLASSES)
    assert artifact["input_size"] == 64
    provenance = artifact["provenance"]
    assert provenance["images"] == {"train": 12, "val": 6}
    assert provenance["seed"] == 0
    assert provenance["phases"]["frozen"]["steps"] == 3 and provenance["phases"]["finetune"]["steps"] == 3
    calibration = provenance["calibration"]
    assert calibration["images"] == 6 and calibration["temperature"] > 0
    assert 0 <= calibration["ece_after"] <= 1 and 0 <= calibration["ece_before"] <= 1
    model = build(artifact["kind"], artifact["arch"])
    model.load_state_dict(artifact["state_dict"])
    image = cv2.cvtColor(_pattern(1, np.random.default_rng(5)), cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(eval_transform(image, 64)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        probabilities = model.eval()(EfficientNetLite0.normalize(x)).softmax(1)
    assert probabilities.shape == (1, 3)


def test_interrupted_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", classes=CLASSES[:2])
    # 8 train images, batch 4: 2 steps per epoch, 2 + 2 epochs = 8 steps.
    settings = dict(epochs_frozen=2, epochs_unfrozen=2, val_fraction=0.3)
    run = tmp_path / "run"

    # Pause mid-epoch by step budget: it exports what it has and keeps the state.
    train(tiny_config(data, run, max_steps=3, **settings))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "stopped at max_steps" and metrics["global_step"] == 3
    assert (run / "model.pt").is_file()

    # Then a real interruption: SIGINT mid-step, as Ctrl-C would send.
    seen: list[int] = []

    def interrupt_at_5(step: int) -> None:
        seen.append(step)
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(data, run, **settings), on_step=interrupt_at_5)
    assert seen == [4, 5]  # continued from step 3, did not restart
    assert torch.load(run / STATE, weights_only=False)["global_step"] == 5
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    seen.clear()
    train(tiny_config(data, run, **settings), on_step=seen.append)
    assert seen == [6, 7, 8]
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["status"] == "finished" and resumed["global_step"] == 8
    assert [(h["phase"], h["epoch"]) for h in resumed["history"]] == [(1, 1), (1, 2), (2, 1), (2, 2)]

    # Stopping twice changed nothing: an uninterrupted run ends with the same weights and history.
    straight = train(tiny_config(data, tmp_path / "straight", **settings))
    expected = json.loads((straight / "metrics.json").read_text())
    for a, b in zip(resumed["history"], expected["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    got, want = load_artifact(run)["state_dict"], load_artifact(straight)["state_dict"]
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)

    # A finished run rerun is a no-op that re-exports; --no-resume starts over.
    seen.clear()
    train(tiny_config(data, run, **settings), on_step=seen.append)
    assert seen == []
    train(tiny_config(data, run, max_steps=1, resume=False, **settings), on_step=seen.append)
    assert seen == [1]


def test_corrupt_image_is_skipped_and_counted(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", classes=CLASSES[:2])
    (data / CLASSES[0] / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.warns(UserWarning, match="skipping unreadable image .*broken.jpg"):
        run = train(tiny_config(data, tmp_path / "run", epochs_unfrozen=0))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["skipped_images"]["count"] == 1
    assert metrics["skipped_images"]["paths"][0].endswith("broken.jpg")
    assert metrics["status"] == "finished"


def test_user_mistakes_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--data folder not found"):
        train(tiny_config(tmp_path / "nowhere", tmp_path / "run"))

    data = make_dataset(tmp_path / "data", classes=CLASSES[:2], per_class=4)
    (data / "empty").mkdir()
    with pytest.raises(ValueError, match="no images: empty"):
        train(tiny_config(data, tmp_path / "run"))
    (data / "empty").rmdir()

    for bad in ("some", "0", "17"):
        with pytest.raises(ValueError, match="--unfreeze must be 'all' or a number of top blocks from 1 to 16"):
            train(tiny_config(data, tmp_path / "run", unfreeze=bad))

    run = tmp_path / "run"
    train(tiny_config(data, run, max_steps=1))
    with pytest.raises(ValueError, match=r"different settings \(lr_head\).*--no-resume"):
        train(tiny_config(data, run, max_steps=1, lr_head=0.5))

    (data / CLASSES[0] / "extra.png").write_bytes((data / CLASSES[0] / "00.png").read_bytes())
    with pytest.raises(ValueError, match="changed since the run"):
        train(tiny_config(data, run, max_steps=2))


def test_staged_forward_equals_model_and_augmentations_are_seeded() -> None:
    torch.manual_seed(0)
    model = EfficientNetLite0(num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        for frozen in (0, 5, 18):
            torch.testing.assert_close(staged_forward(model, x, frozen), want)

    image = cv2.cvtColor(_pattern(0, np.random.default_rng(1)), cv2.COLOR_BGR2RGB)
    a = train_transform(image, 48, np.random.default_rng(7))
    b = train_transform(image, 48, np.random.default_rng(7))
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert eval_transform(image, 48).shape == (48, 48, 3)

    samples = [(Path(f"{c}/{i}.png"), c) for c in range(3) for i in range(10)]
    train_split, val_split = _stratified_split(samples, 3, 0.2, seed=4)
    assert sorted(train_split + val_split) == sorted(samples)
    assert [sum(1 for _, c in val_split if c == k) for k in range(3)] == [2, 2, 2]
    assert _stratified_split(samples, 3, 0.2, seed=4) == (train_split, val_split)


def test_arguments_round_trip() -> None:
    parser = build_parser()
    cfg = train_config(parser.parse_args(["train", "classifier", "--data", "d", "--out", "o"]))
    assert cfg == ClassifierConfig(data="d", out="o")
    cfg = train_config(parser.parse_args(["train", "classifier", "--data", "d", "--out", "o", "--unfreeze", "all",
                                          "--no-resume", "--max-steps", "5", "--val", "v", "--size", "96"]))
    assert (cfg.unfreeze, cfg.resume, cfg.max_steps, cfg.val, cfg.size) == ("all", False, 5, "v", 96)


def test_backbone_is_the_imagenet_model() -> None:
    from skimage import data as skdata

    model = load_imagenet()
    images = np.stack([eval_transform(skdata.chelsea(), 224), eval_transform(skdata.coffee(), 224)])
    x = EfficientNetLite0.normalize(torch.from_numpy(images).permute(0, 3, 1, 2).float())
    with torch.no_grad():
        top1 = model(x).argmax(1).tolist()
    assert 281 <= top1[0] <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert top1[1] in (967, 968)  # espresso, cup
