"""The Backend interface: load one artifact, describe its tensors, run a batch.

A backend knows nothing about model kinds or images; models.py layers the
artifact contract on top. New backends (OpenVINO, TensorRT) subclass Backend
and register themselves with backends.register_backend.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np


def batch_pixels(shape: tuple[int, ...]) -> int:
    """Batch x height x width of an NHWC image batch's shape; the element count of any other tensor's.

    What the backends' memory bounds are stated in: a run's activations grow with it.
    """
    dims = shape[:3] if len(shape) == 4 else shape
    count = 1
    for dim in dims:
        count *= int(dim)
    return count


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: dims are ints, or None where dynamic."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype.name}[{dims}]"

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "dtype": self.dtype.name, "shape": list(self.shape)}


@dataclass(frozen=True)
class Probe:
    """What a backend can do on this machine: a score (higher is preferred by
    "auto"), the backend-specific option it would use, and why."""

    score: int
    option: str
    reason: str


class Backend(abc.ABC):
    """One loaded artifact, ready to run. Instances must be safe to call from
    several threads at once (the gRPC server shares one per model)."""

    #: registry key, e.g. "onnxruntime"
    name: ClassVar[str]
    #: the file this backend loads from a version folder
    artifact: ClassVar[str] = "model.onnx"

    path: Path
    #: backend-specific choice in effect, e.g. the ONNX Runtime execution provider
    option: str
    #: one sentence: why this backend and option were chosen
    reason: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    #: the artifact's string metadata (ONNX metadata_props)
    metadata_props: dict[str, str]
    #: set when the artifact is the asked model's reduced-precision variant in the repository (e.g. "int8"
    #: for <name>_int8), which then answers under the asked name; see backends/__init__.py
    variant: str | None = None

    @classmethod
    @abc.abstractmethod
    def probe(cls) -> Probe | None:
        """The best configuration this machine offers, or None if unusable here."""

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """Options a user may force with "name:option" (available or not)."""
        return ()

    @classmethod
    def reduced_precisions(cls) -> tuple[str, ...]:
        """Options that run a float graph at reduced precision on this machine (e.g. OpenVINO's bf16 on a CPU
        with bfloat16 instructions); "auto" measures them against fp32 and keeps them only within budget."""
        return ()

    @classmethod
    def inspect(cls, path: Path) -> Backend:
        """A cheap instance for reading specs and metadata only (listings)."""
        return cls(path, threads=1)

    @abc.abstractmethod
    def __init__(self, path: Path, option: str | None = None, threads: int | None = None,
                 reason: str = "") -> None:
        """Load the artifact at path; raise ModelLoadError when it is malformed."""

    @abc.abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; arrays must already match the input specs."""

    @property
    def display_name(self) -> str:
        shown = f"{self.name}:{self.option}" if self.option else self.name
        return f"{shown}@{self.variant}" if self.variant else shown

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display_name} {self.path}>"
