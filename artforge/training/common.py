"""What every training script shares: run folders, seeds, devices, atomic
checkpoints that resume, and the final artifact that export/ reads.

A run folder RUN holds
  config.json   the full configuration (written at start; a resume must match)
  state.pt      resume state: model, optimiser, scheduler, counters, RNG states
  metrics.json  metrics so far (history and final)
  model.pt      the trained network for export: kind, arch, state_dict, labels, provenance
  samples/      images saved as training goes
"""

from __future__ import annotations

import contextlib
import json
import platform
import random
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artforge.files import atomic_file, write_bytes_atomic

ARTIFACT = "model.pt"
STATE = "state.pt"
CONFIG = "config.json"
METRICS = "metrics.json"


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but no CUDA device is available; use cpu or auto")
    return torch.device(name)


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold Ctrl-C until the block ends: a KeyboardInterrupt raised inside
    torch.save's zip writer leaves it in a broken state (a RuntimeError instead
    of a clean stop), so a checkpoint write always completes first."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)
    elif received and previous == signal.SIG_DFL:
        raise KeyboardInterrupt


def atomic_torch_save(obj: Any, path: Path) -> None:
    with _interrupts_deferred(), atomic_file(path) as f:
        torch.save(obj, f)


def atomic_write_bytes(data: bytes, path: Path) -> None:
    with _interrupts_deferred():
        write_bytes_atomic(path, data)


def atomic_write_json(obj: Any, path: Path) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_bytes(text.encode(), path)


def prepare_run(run: Path, config: dict[str, Any], resume: bool = True) -> dict[str, Any] | None:
    """Create RUN (or reopen it) and return the saved resume state, if any.

    Resuming with a different configuration would silently mix two
    experiments, so the settings that shape training must match.
    """
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    saved_config = run / CONFIG
    state_file = run / STATE
    if resume and state_file.exists() and saved_config.exists():
        old = json.loads(saved_config.read_text())
        # Where and how fast a run goes, and what it prints, not what it learns: free to change on
        # resume. A preset is only a name for values that are compared one by one.
        ignore = {"out", "resume", "device", "progress", "workers", "max_steps", "log_every", "preset"}
        diff = sorted(k for k in set(old) | set(config) if k not in ignore and old.get(k) != config.get(k))
        if diff:
            raise ValueError(
                f"{run} holds a run with different settings ({', '.join(diff)}); "
                "use a new --out folder or pass --no-resume to start over")
        return torch.load(state_file, map_location="cpu", weights_only=False)
    atomic_write_json(config, saved_config)
    return None


def save_state(run: Path, state: dict[str, Any]) -> None:
    state = dict(state)
    state["rng"] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    atomic_torch_save(state, Path(run) / STATE)


def restore_rng(state: dict[str, Any]) -> None:
    rng = state.get("rng")
    if rng:
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])


def environment() -> dict[str, str]:
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}


def save_artifact(run: Path, kind: str, arch: dict[str, Any], model: torch.nn.Module,
                  provenance: dict[str, Any], **extra: Any) -> Path:
    """Write RUN/model.pt, the contract between training and export.

    extra: labels (classifier), input_size (classifier), latent_size (generator),
    size_multiple (stylizer). The architecture goes into the provenance too, so
    that the model card (which shows the provenance) names every dimension of
    the network.
    """
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    artifact = {"kind": kind, "arch": arch, "state_dict": state_dict,
                "provenance": {**provenance, "architecture": arch, "environment": environment()}, **extra}
    path = Path(run) / ARTIFACT
    atomic_torch_save(artifact, path)
    return path


def load_artifact(run: Path) -> dict[str, Any]:
    path = Path(run)
    if path.is_dir():
        path = path / ARTIFACT
    if not path.is_file():
        raise FileNotFoundError(f"no trained model at {path}: train first (artforge train …) or pass a run folder")
    artifact = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(artifact, dict) or not {"kind", "arch", "state_dict"} <= set(artifact):
        raise ValueError(f"{path} is not an artforge training artifact (needs kind, arch, state_dict)")
    return artifact
