"""The seam between the batch driver and whatever makes the pixels.

The driver (batch/driver.py) plans the run, holds the folder lock, keeps the
manifest, the report and the progress bar; an Executor only turns work items
into written outputs:

    driver ── [Work(source, {model: output path}), ...] ──► executor.run ── Outcome per (work, model) ──► driver
                                                            decode, run the models, encode,
                                                            write_output() each output atomically

Executors: LocalExecutor (batch/local.py, the models in this process),
RemoteExecutor (batch/remote.py, an artforge server's StylizeStream),
RayExecutor (batch/cluster.py, Ray Data: the models in actors, `map_batches`
over rows of (source path, targets)); see docs/batch.md.

Plain Python (no OpenCV, no ONNX Runtime), so remote runs stay light.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from artforge.batch.options import BatchOptions
from artforge.errors import ArtforgeError
from artforge.files import write_bytes_atomic


@dataclass(frozen=True)
class BatchModel:
    """One model of the run, as the manifest and the report see it."""

    name: str
    #: what makes the model's pixels (artifact hash, or what a server reports); a change redoes its outputs
    identity: dict[str, Any]
    #: where it runs, for the report ("onnxruntime:cpu", "server HOST:PORT (...)")
    backend: str


@dataclass(eq=False)
class Work:
    """One input file and the outputs still to make from it (decode it once for all of them)."""

    source: Path
    #: model name -> output path; only the models whose output is not already done
    targets: dict[str, Path]
    #: the input's (size, mtime) before it was read: the driver's, for the manifest; executors ignore it
    input_stamp: list[int] | None = None


@dataclass
class Outcome:
    """One output finished (written atomically) or failed."""

    work: Work
    model: str
    #: why it failed, one sentence (failure_reason); None when the output is written
    error: str | None = None


@dataclass
class Timings:
    """Where an executor's time went, for the report (unknown parts stay empty or zero)."""

    #: model name -> seconds inside the model's own inference calls
    model_seconds: dict[str, float] = field(default_factory=dict)
    #: summed busy time of decode and encode workers
    decode_seconds: float = 0.0
    encode_seconds: float = 0.0


class Executor(Protocol):
    """What the driver needs from a way of running the models (see the module docstring)."""

    @property
    def models(self) -> Sequence[BatchModel]:
        """The models, in the order the user named them."""

    @property
    def server(self) -> str | None:
        """HOST:PORT when a server does the work (then the model time is not known here), else None."""

    def check(self, options: BatchOptions) -> None:
        """Raise an ArtforgeError (one sentence) for options this executor cannot honour."""

    def pixel_options(self, options: BatchOptions) -> dict[str, Any]:
        """The options that change this executor's pixels: a resumed run redoes outputs when they change."""

    def tuning_options(self, options: BatchOptions) -> dict[str, Any]:
        """Other options worth recording in the report (batch size, workers, ...)."""

    def run(self, work: Sequence[Work], options: BatchOptions, stop: threading.Event,
            emit: Callable[[Outcome], None]) -> None:
        """Make every (work, model) output; emit one Outcome each, on the calling thread.

        options.fmt is resolved (the output suffix without its dot). A failure
        that belongs to one input or output is its Outcome; anything else is
        raised. When `stop` is set, take no new work, emit what finishes
        and return. On KeyboardInterrupt do the same, then raise it again.
        """

    def timings(self) -> Timings:
        """The time spent so far (read after run, also when it raised)."""


def failure_reason(exc: BaseException) -> str:
    """One sentence for a failure: artforge errors say it themselves; anything else gets its type named."""
    if isinstance(exc, ArtforgeError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}{f': {exc.filename}' if exc.filename else ''}"
    return f"{type(exc).__name__}: {exc}"


def write_output(target: Path, data: bytes) -> None:
    """Write one encoded output atomically; a failure (a full disk) names the output, not the temporary."""
    try:
        write_bytes_atomic(target, data)
    except OSError as exc:
        raise ArtforgeError(f"cannot write {target} ({exc.strerror or exc})") from None
