"""Backend registry: which backends exist, which work here, and "auto".

A backend name is "name" or "name:option", e.g. "onnxruntime:cuda" or
"openvino:bf16". "auto" asks every registered backend for a Probe and keeps
those whose artifact file is present; auto.py then picks one by a short
measured trial on CPU-only machines (cached per model and machine), or by
probe score (the preference rules: GPU backends 20+, OpenVINO 15, ONNX
Runtime on CPU 10). Backends must import their libraries lazily (inside
probe/__init__) so that registering them costs nothing where they are absent.
"""

from __future__ import annotations

from pathlib import Path

from artforge.errors import InvalidInputError, ModelLoadError, NotFoundError
from artforge.runtime.backends import auto
from artforge.runtime.backends.base import Backend, Probe, TensorSpec
from artforge.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from artforge.runtime.backends.openvino_backend import OpenVinoBackend
from artforge.runtime.backends.tensorrt_backend import TensorRTBackend

__all__ = ["Backend", "Probe", "TensorSpec", "OnnxRuntimeBackend", "OpenVinoBackend", "TensorRTBackend",
           "register_backend", "registered_backends", "registered_artifacts", "available_backends", "create_backend",
           "inspect_backend"]

_REGISTRY: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Make a Backend subclass selectable by name and by "auto"; usable as a decorator."""
    _REGISTRY[cls.name] = cls
    return cls


# Registration order is inspect_backend's order: ONNX Runtime first, since
# its unoptimised session is the cheapest way to read specs and metadata.
register_backend(OnnxRuntimeBackend)
register_backend(OpenVinoBackend)
# Native engines (model.plan); its probe is None without tensorrt, cuda-python and a CUDA device.
register_backend(TensorRTBackend)


def registered_backends() -> list[str]:
    return list(_REGISTRY)


def registered_artifacts() -> list[str]:
    """File names a version folder may hold (model.onnx, ...), in registration order."""
    return list(dict.fromkeys(cls.artifact for cls in _REGISTRY.values()))


def available_backends() -> dict[str, Probe]:
    """Backends usable on this machine, best first, with the option auto would use and why."""
    probes = [(cls.name, probe) for cls in _REGISTRY.values() if (probe := cls.probe()) is not None]
    return dict(sorted(probes, key=lambda item: -item[1].score))


def _artifact(cls: type[Backend], path: Path) -> Path | None:
    if path.is_dir():
        candidate = path / cls.artifact
        return candidate if candidate.is_file() else None
    return path if path.suffix == Path(cls.artifact).suffix else None


#: reduced precisions "auto:<precision>" lets the trial consider (opt-in: they change the pixels slightly)
AUTO_PRECISIONS = ("bf16",)


def _parse(name: str) -> tuple[type[Backend] | None, str | None]:
    base, _, option = name.partition(":")
    if base == "auto":
        if option and option not in AUTO_PRECISIONS:
            raise InvalidInputError(f"unknown option {option!r} for auto; use auto or "
                                    f"{', '.join('auto:' + p for p in AUTO_PRECISIONS)}")
        return None, option or None
    cls = _REGISTRY.get(base)
    if cls is None:
        raise InvalidInputError(f"unknown backend {name!r}; use auto or one of {', '.join(_REGISTRY)} "
                                "(optionally name:option, e.g. onnxruntime:cpu)")
    if option and option not in cls.options():
        raise InvalidInputError(f"unknown option {option!r} for backend {base}; use one of {', '.join(cls.options())}")
    return cls, option or None


def create_backend(path: str | Path, name: str = "auto", threads: int | None = None) -> Backend:
    """Load the artifact at path (a file, or a version folder holding one) with the named backend.

    name is "auto" (see auto.py; ARTFORGE_AUTO=rules skips the measured trial), "auto:bf16"
    (the trial may also pick a bf16 option), "name" or "name:option". The returned backend's
    `display_name` and `reason` say what was chosen and why.
    """
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"model artifact {path} does not exist")
    cls, option = _parse(name)
    if cls is not None:
        artifact = _artifact(cls, path)
        if artifact is None:
            raise NotFoundError(f"{path}: no {cls.artifact} for backend {cls.name}")
        if option is None and cls.probe() is None:
            raise ModelLoadError(f"backend {cls.name} is not available on this machine; "
                                 f"available: {', '.join(available_backends()) or 'none'}")
        return cls(artifact, option=option, threads=threads, reason=f"backend {name!r} was asked for")
    candidates = [auto.Candidate(_REGISTRY[backend_name], probe, artifact)
                  for backend_name, probe in available_backends().items()
                  if (artifact := _artifact(_REGISTRY[backend_name], path)) is not None]
    if option is not None:
        # "auto:bf16": the same trial, with each backend's reduced-precision
        # option as one more contender (a CPU without bf16 drops out of the trial).
        candidates += [auto.Candidate(c.cls, Probe(c.probe.score, option, f"{option} was allowed"), c.artifact)
                       for c in candidates if option in c.cls.options() and c.probe.option != option]
    if not candidates:
        expected = " or ".join(registered_artifacts())
        raise NotFoundError(f"{path}: no model artifact that an available backend can load (looked for {expected})")
    return auto.choose(candidates, threads)


def inspect_backend(path: str | Path) -> Backend:
    """A cheap backend for reading an artifact's specs and metadata (no GPU, no optimisation)."""
    path = Path(path)
    for cls in _REGISTRY.values():
        artifact = _artifact(cls, path)
        if artifact is not None and cls.probe() is not None:
            return cls.inspect(artifact)
    expected = " or ".join(registered_artifacts())
    raise NotFoundError(f"{path}: no model artifact (looked for {expected})")
