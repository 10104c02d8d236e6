"""Backend registry: which backends exist, which work here, "auto" and "exact".

A backend name is "name" or "name:option", e.g. "onnxruntime:cuda" or
"openvino:bf16", optionally "@int8" / "@fp16" for the repository's variant of
the model. "auto" asks every registered backend for a Probe and keeps those
whose artifact file is present, adds the reduced-precision candidates (each
backend's reduced options here, the model's <name>_int8 / <name>_fp16
variants), and auto.py picks the fastest one within the model's accuracy
budget by a short measured trial on CPU-only machines (cached per model,
budget and machine), or by probe score (the preference rules: GPU backends
20+, OpenVINO 15, ONNX Runtime on CPU 10). "exact" (= "auto:fp32") keeps
to the fp32 candidates. Backends must import their libraries lazily (inside
probe/__init__) so that registering them costs nothing where they are absent.
"""

from __future__ import annotations

from pathlib import Path

from artforge import accuracy, contract
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


#: what "auto:<precision>" adds to the fp32 candidates ("auto:fp32", like "exact", adds none)
AUTO_PRECISIONS = ("fp32", *auto.REDUCED_PRECISIONS)
#: the name of the exact choice: the fastest fp32 backend, measured (what "auto" was before budgets)
EXACT = "exact"


def _parse(name: str) -> tuple[type[Backend] | None, str | None, str | None]:
    """(backend class or None for auto, option, variant precision) of "name[:option][@variant]"."""
    name, _, variant = name.partition("@")
    base, _, option = name.partition(":")
    if base in ("auto", EXACT):
        if variant:
            raise InvalidInputError(f"{base} picks variants itself; name a backend to force one, e.g. "
                                    f"openvino:fp32@{variant}")
        if base == EXACT:
            if option:
                raise InvalidInputError(f"{EXACT} takes no option; use {EXACT} or auto:fp32")
            return None, "fp32", None
        if option and option not in AUTO_PRECISIONS:
            raise InvalidInputError(f"unknown option {option!r} for auto; use auto, {EXACT} or "
                                    f"{', '.join('auto:' + p for p in AUTO_PRECISIONS)}")
        return None, option or None, None
    cls = _REGISTRY.get(base)
    if cls is None:
        raise InvalidInputError(f"unknown backend {name!r}; use auto, {EXACT} or one of {', '.join(_REGISTRY)} "
                                "(optionally name:option, e.g. onnxruntime:cpu)")
    if option and option not in cls.options():
        raise InvalidInputError(f"unknown option {option!r} for backend {base}; use one of {', '.join(cls.options())}")
    if variant and variant not in contract.VARIANT_PRECISIONS:
        raise InvalidInputError(f"unknown variant {variant!r}; use @{' or @'.join(contract.VARIANT_PRECISIONS)} "
                                "(the repository's <name>_<precision> model)")
    return cls, option or None, variant or None


def model_folder(path: Path) -> Path | None:
    """<repo>/<name> of an artifact path (a version folder or a file in one), None outside a repository."""
    folder = path if path.is_dir() else path.parent
    return folder.parent if folder.name.isascii() and folder.name.isdigit() else None


def variant_folder(model_dir: Path, precision: str) -> Path | None:
    """The latest version folder of the repository's <name>_<precision> model, if there is one."""
    root = model_dir.parent / f"{model_dir.name}_{precision}"
    if not root.is_dir():
        return None
    versions = [p for p in root.iterdir() if p.name.isascii() and p.name.isdigit() and p.is_dir()
                and any((p / a).is_file() for a in registered_artifacts())]
    return max(versions, key=lambda p: int(p.name)) if versions else None


def _forced(cls: type[Backend], path: Path, name: str, option: str | None, variant: str | None,
            threads: int | None) -> Backend:
    source = _artifact(cls, path)
    if source is None:
        raise NotFoundError(f"{path}: no {cls.artifact} for backend {cls.name}")
    artifact = source
    if variant is not None:
        model_dir = model_folder(path)
        folder = variant_folder(model_dir, variant) if model_dir else None
        found = _artifact(cls, folder) if folder else None
        if found is None:
            where = f"{model_dir.parent / (model_dir.name + '_' + variant)}" if model_dir else "a repository"
            raise NotFoundError(f"{path}: no {variant} variant for backend {cls.name} (looked in {where}; "
                                f"make one with `artforge quantize --precision {variant}`)")
        artifact = found
    if option is None and cls.probe() is None:
        raise ModelLoadError(f"backend {cls.name} is not available on this machine; "
                             f"available: {', '.join(available_backends()) or 'none'}")
    backend = cls(artifact, option=option, threads=threads, reason=f"backend {name!r} was asked for")
    if variant is not None:
        backend.variant = variant
        auto.check_variant(backend, source)
    return backend


def create_backend(path: str | Path, name: str = "auto", threads: int | None = None) -> Backend:
    """Load the artifact at path (a file, or a version folder holding one) with the named backend.

    name is "auto": the fastest candidate whose measured deviation from fp32 is within the model's
    accuracy budget (<repo>/<name>/budget.json, else its kind's defaults; see auto.py); "exact" or
    "auto:fp32": the fastest fp32 backend; "auto:bf16|fp16|int8": auto with only that reduced
    precision; "name" or "name:option" forces a backend, "name:option@int8" (or @fp16) on the
    repository's <name>_int8 variant. ARTFORGE_AUTO=rules skips the measured trial (and reduced
    precision). The returned backend's `display_name` and `reason` say what was chosen and why; a
    variant answers with the asked model's inputs and outputs.
    """
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"model artifact {path} does not exist")
    cls, option, variant = _parse(name)
    if cls is not None:
        return _forced(cls, path, name, option, variant, threads)
    probes = available_backends()
    candidates = [auto.Candidate(_REGISTRY[backend_name], probe, artifact)
                  for backend_name, probe in probes.items()
                  if (artifact := _artifact(_REGISTRY[backend_name], path)) is not None]
    if not candidates:
        expected = " or ".join(registered_artifacts())
        raise NotFoundError(f"{path}: no model artifact that an available backend can load (looked for {expected})")
    budgeted = None
    reference = _artifact(OnnxRuntimeBackend, path)
    if option != "fp32" and reference is not None:  # the reference is ONNX Runtime on the ONNX file
        precisions = auto.REDUCED_PRECISIONS if option is None else (option,)
        model_dir = model_folder(path)
        reduced = [auto.Candidate(c.cls, Probe(c.probe.score, p, f"{p} within the accuracy budget"), c.artifact)
                   for c in candidates for p in c.cls.reduced_precisions() if p in precisions]
        for precision in contract.VARIANT_PRECISIONS:
            folder = variant_folder(model_dir, precision) if model_dir and precision in precisions else None
            if folder is not None:
                reduced += [auto.Candidate(c.cls, c.probe, artifact, variant=precision) for c in candidates
                            if c.probe.score < auto.GPU_SCORE and (artifact := _artifact(c.cls, folder)) is not None]
        budget = accuracy.read_budget(model_dir) if model_dir else accuracy.Budget()
        budgeted = auto.Budgeted(budget, auto.Candidate(OnnxRuntimeBackend, Probe(10, "cpu", "the fp32 reference"),
                                                        reference), model_dir)
        candidates += reduced
    return auto.choose(candidates, threads, budgeted)


def inspect_backend(path: str | Path) -> Backend:
    """A cheap backend for reading an artifact's specs and metadata (no GPU, no optimisation)."""
    path = Path(path)
    for cls in _REGISTRY.values():
        artifact = _artifact(cls, path)
        if artifact is not None and cls.probe() is not None:
            return cls.inspect(artifact)
    expected = " or ".join(registered_artifacts())
    raise NotFoundError(f"{path}: no model artifact (looked for {expected})")
