"""The "auto" backend choice: a short measured trial per model and machine, cached.

Which CPU backend is faster depends on the model and the machine (on the dev
VM OpenVINO ran the zoo's stylizers 25% faster, ONNX Runtime the classifier
and the generator), so rules alone guess wrong. For each model, auto loads every
candidate available, runs a representative input through each, alternating
them so that a burst of load from another process hits all, and keeps the
candidate with the lowest median time.

Candidates are the fp32 backends on the asked artifact and, unless the choice
is exact ("exact", "auto:fp32"), reduced-precision ones: a backend's reduced
option (OpenVINO bf16 on a CPU with bfloat16) and the repository's variants
of the model (<name>_int8, <name>_fp16) on each backend. A reduced candidate
is only timed after its outputs on the model's representative inputs
(representative.py) were compared with the fp32 reference's (ONNX Runtime on
CPU, what the exporter's parity check used) and found within the model's
accuracy budget (artforge/accuracy.py); the reason names the choice, its time
and its measured deviation. Without reduced candidates (a CPU without bf16, no
variants) the trial is the fp32 one, as before budgets existed.

The decision is cached as JSON under $ARTFORGE_CACHE_DIR/auto/ (default
~/.cache/artforge), keyed by the artifacts' sha256, the budget, the sample
images and a fingerprint of the machine and libraries, so the trial runs once
per model, budget and machine.

Preference rules (probe scores: GPU backends, then OpenVINO, then ONNX
Runtime on CPU) decide instead when ARTFORGE_AUTO=rules, when a GPU backend
is present (a GPU is preferred for serving however a single small request
times, since it leaves the CPU to the image pipeline), or when the trial
cannot run. Rules take a reduced-precision candidate (a TensorRT fp16 engine)
only after measuring it within budget, and never in ARTFORGE_AUTO=rules.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from artforge import accuracy, contract
from artforge.accuracy import Budget
from artforge.errors import ArtforgeError, InvalidInputError, ModelLoadError
from artforge.files import file_sha256, write_bytes_atomic
from artforge.runtime import representative
from artforge.runtime.backends.base import Backend, Probe

log = logging.getLogger(__name__)

#: environment variable: "measure" (the default) or "rules"
ENV_MODE = "ARTFORGE_AUTO"
MODES = ("measure", "rules")
#: probes scoring this or more run on a GPU; rules, not a CPU trial, order them
GPU_SCORE = 20
#: seconds of timed runs per candidate, in two blocks
TRIAL_SECONDS = 0.25
#: fewest and most timed runs in one block
BLOCK_RUNS = (2, 25)
#: side of the square image a stylizer (or any image model without a fixed size) is timed on
TRIAL_SIDE = 256
#: latents per trial batch for a generator
GENERATOR_TRIAL_BATCH = 8
CACHE_FORMAT = 2
_LIBRARIES = ("onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt")


#: precisions that change a model's outputs: backend options and repository variants
REDUCED_PRECISIONS = ("bf16", "fp16", "int8")


@dataclass(frozen=True)
class Candidate:
    """One backend auto may pick: its class, the probe that offered it and the artifact it would load.

    `variant` is the precision of the repository variant the artifact is (<name>_int8: "int8"), None for
    the asked model's own artifact.
    """

    cls: type[Backend]
    probe: Probe
    artifact: Path
    variant: str | None = None

    @property
    def display_name(self) -> str:
        shown = f"{self.cls.name}:{self.probe.option}" if self.probe.option else self.cls.name
        return f"{shown}@{self.variant}" if self.variant else shown

    @property
    def reduced(self) -> bool:
        """Known before loading: a reduced option or a variant (a TensorRT engine tells its precision once loaded)."""
        return self.variant is not None or self.probe.option in REDUCED_PRECISIONS


def is_reduced(backend: Backend) -> bool:
    """Whether a loaded backend runs below fp32: a variant artifact, or a reduced option or engine precision."""
    return backend.variant is not None or backend.option in REDUCED_PRECISIONS


@dataclass(frozen=True)
class Budgeted:
    """What a choice that may take reduced precision needs: the model's budget, the fp32 reference
    candidate (ONNX Runtime on CPU on the asked artifact) and the model's folder (sample images)."""

    budget: Budget
    reference: Candidate
    model_dir: Path | None = None


def cache_dir() -> Path:
    """Where artforge caches decisions and engines: $ARTFORGE_CACHE_DIR, default ~/.cache/artforge."""
    return Path(os.environ.get("ARTFORGE_CACHE_DIR") or Path.home() / ".cache" / "artforge")


def mode() -> str:
    value = os.environ.get(ENV_MODE, "").strip().lower() or "measure"
    if value not in MODES:
        raise InvalidInputError(f"{ENV_MODE} is {value!r}; use one of {', '.join(MODES)}")
    return value


_hashes: dict[tuple[str, int, int], str] = {}
_hashes_lock = threading.Lock()


def artifact_sha256(path: Path) -> str:
    """sha256 of the file's bytes, remembered per (path, size, mtime) for this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hashes_lock:
        if key in _hashes:
            return _hashes[key]
    digest = file_sha256(path)
    with _hashes_lock:
        _hashes[key] = digest
    return digest


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(candidates: list[Candidate], threads: int | None) -> dict[str, Any]:
    """What a measured decision depends on besides the model: CPU, cores, library versions, threads."""
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    return {"cpu": _cpu_model(), "machine": platform.machine(), "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "libraries": versions, "candidates": sorted(c.display_name for c in candidates), "threads": threads}


def _side(props: dict[str, str]) -> int:
    """The side of a square image input: a classifier's input size, else TRIAL_SIDE, rounded up to the
    size multiple."""
    side = TRIAL_SIDE
    if props.get(contract.KEY_KIND) == contract.CLASSIFIER and props.get(contract.KEY_INPUT_SIZE, "").isdigit():
        side = int(props[contract.KEY_INPUT_SIZE])
    multiple = props.get(contract.KEY_SIZE_MULTIPLE, "1")
    multiple_n = int(multiple) if multiple.isdigit() and int(multiple) > 0 else 1
    return -(-side // multiple_n) * multiple_n


def trial_input(backend: Backend) -> dict[str, np.ndarray]:
    """A representative batch of one for the model behind backend, from its specs and metadata.

    Classifier: its input size. Generator: GENERATOR_TRIAL_BATCH latents. Stylizer: TRIAL_SIDE
    square, rounded up to its size multiple.
    """
    props = backend.metadata_props
    side = _side(props)
    # Generators are asked for several images at once (the CLI's default is 8), and a single
    # latent takes well under a millisecond, too little to rank backends by.
    batch = GENERATOR_TRIAL_BATCH if props.get(contract.KEY_KIND) == contract.GENERATOR else 1
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in backend.inputs:
        image = len(spec.shape) == 4 and spec.shape[3] in (None, 3)
        shape = [d if d is not None else (batch if axis == 0 else 1 if not image else side)
                 for axis, d in enumerate(spec.shape)]
        if spec.dtype == np.uint8:
            feeds[spec.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif spec.dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return feeds


def _describe(feeds: dict[str, np.ndarray]) -> str:
    return ", ".join("x".join(map(str, a.shape)) for a in feeds.values())


def _load(candidate: Candidate, threads: int | None, option: str | None, reason: str) -> Backend:
    backend = candidate.cls(candidate.artifact, option=option, threads=threads, reason=reason)
    backend.variant = candidate.variant
    return backend


def check_variant(backend: Backend, source: Path) -> None:
    """ModelLoadError unless the variant backend's artifact was made from exactly the file at `source`
    (its metadata's source sha256): a variant of another version would answer with other pixels."""
    try:
        made_from = json.loads(backend.metadata_props.get(contract.KEY_SOURCE_MODEL, "{}")).get("sha256")
    except (ValueError, AttributeError):
        made_from = None
    if made_from != artifact_sha256(source):
        raise ModelLoadError(f"{backend.path} is not a variant of {source} (its {contract.KEY_SOURCE_MODEL} names "
                             "another file); make it again with `artforge quantize`")


# ------------------------------------------------------------------ accuracy against fp32
@dataclass
class _Reference:
    """The fp32 reference's outputs on the model's representative inputs."""

    kind: str
    feeds: dict[str, np.ndarray]
    output: str
    expected: np.ndarray


def _fit_batch(feeds: dict[str, np.ndarray], backend: Backend) -> dict[str, np.ndarray]:
    # A graph exported with a fixed batch takes exactly that many rows.
    fixed = {spec.name: spec.shape[0] for spec in backend.inputs if spec.shape and spec.shape[0] is not None}
    return {name: np.resize(array, (fixed[name], *array.shape[1:])) if name in fixed else array
            for name, array in feeds.items()}


def _reference(backend: Backend, model_dir: Path | None) -> _Reference:
    meta = contract.ModelMetadata.from_props(backend.metadata_props, source=str(backend.path))
    inputs = {spec.name: spec for spec in backend.inputs}
    if meta.input_name not in inputs or meta.output_name not in {spec.name for spec in backend.outputs}:
        # Loading the model reports this properly (models.check_contract); here it only means no reference.
        raise ModelLoadError(f"{backend.path}: the graph's inputs and outputs are not a {meta.kind}'s")
    image = inputs[meta.input_name]
    side = image.shape[1] if len(image.shape) == 4 and image.shape[1] is not None else _side(backend.metadata_props)
    feeds = _fit_batch({meta.input_name: representative.representative_inputs(meta, side, model_dir)}, backend)
    return _Reference(meta.kind, feeds, meta.output_name, backend.run(feeds)[meta.output_name])


def _deviation(backend: Backend, reference: _Reference) -> dict[str, Any]:
    return accuracy.deviation(reference.kind, reference.expected, backend.run(reference.feeds)[reference.output])


def _by_rules(candidates: list[Candidate], threads: int | None, why: str, budgeted: Budgeted | None) -> Backend:
    """The highest-scoring candidate that loads and is exact or measured within budget; the last error when none.

    ARTFORGE_AUTO=rules never takes reduced precision (nothing is measured there), so budgeted is None then.
    """
    error: ArtforgeError | None = None
    reference: _Reference | None = None
    for candidate in candidates:
        if candidate.reduced and budgeted is None:
            continue
        try:
            # option=None lets the backend apply its own fallbacks (a CUDA
            # build without a working GPU falls back to CPU and says so).
            backend = _load(candidate, threads, candidate.probe.option if candidate.reduced else None,
                            f"auto picked {candidate.cls.name} by preference rules ({why})")
            if not is_reduced(backend):
                return backend
            if budgeted is None:
                continue
            if candidate.variant:
                check_variant(backend, budgeted.reference.artifact)
            if reference is None:
                reference = _reference(_load(budgeted.reference, threads, budgeted.reference.probe.option, ""),
                                       budgeted.model_dir)
            metrics = _deviation(backend, reference)
        except ArtforgeError as failed:
            error = failed
            continue
        if not accuracy.judge(reference.kind, metrics, budgeted.budget):
            backend.reason += (f"; measured {accuracy.summary(reference.kind, metrics)} against fp32, within the "
                               f"budget ({accuracy.describe_budget(reference.kind, budgeted.budget)})")
            return backend
    if error is None:
        error = ModelLoadError("no backend could load this model at fp32 or within its accuracy budget")
    raise error


@dataclass
class _Trial:
    chosen: Backend | None
    timings_ms: dict[str, float]
    #: display name -> the error that kept that candidate out, in rule order
    failures: dict[str, ArtforgeError]
    loaded: list[Backend]
    shape: str
    #: display name -> deviation from the fp32 reference (budgeted trials only)
    deviations: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: display name -> the budget limits it missed
    over_budget: dict[str, list[str]] = field(default_factory=dict)
    kind: str = ""
    reference: str = ""


def _within_budget(trial: _Trial, loaded: list[Backend], threads: int | None, budgeted: Budgeted) -> list[Backend]:
    """The loaded backends whose outputs are within budget (recorded in trial); reduced ones are dropped
    when no reference can be measured (a file without artforge metadata has no kind to judge by)."""
    reference_backend = next((b for b in loaded if b.name == budgeted.reference.cls.name
                              and b.option == budgeted.reference.probe.option and b.variant is None), None)
    try:
        if reference_backend is None:
            reference_backend = _load(budgeted.reference, threads, budgeted.reference.probe.option, "")
        reference = _reference(reference_backend, budgeted.model_dir)
    except ArtforgeError as error:
        for backend in loaded:
            if is_reduced(backend):
                trial.failures[backend.display_name] = ArtforgeError(f"no fp32 reference to measure it by ({error})")
        return [b for b in loaded if not is_reduced(b)]
    trial.kind, trial.reference = reference.kind, reference_backend.display_name
    kept = []
    for backend in loaded:
        if backend is reference_backend:
            kept.append(backend)  # 0 by definition; no need to run it again
            continue
        try:
            if backend.variant:
                check_variant(backend, budgeted.reference.artifact)
            metrics = _deviation(backend, reference)
        except ArtforgeError as error:
            trial.failures[backend.display_name] = error
            continue
        trial.deviations[backend.display_name] = metrics
        missed = accuracy.judge(reference.kind, metrics, budgeted.budget)
        if missed:
            trial.over_budget[backend.display_name] = missed
        else:
            kept.append(backend)
    return kept


def _measure(candidates: list[Candidate], threads: int | None, budgeted: Budgeted | None = None) -> _Trial:
    trial = _Trial(None, {}, {}, [], "")
    for candidate in candidates:
        try:
            trial.loaded.append(_load(candidate, threads, candidate.probe.option, ""))
        except ArtforgeError as error:
            trial.failures[candidate.display_name] = error
    if not trial.loaded:
        return trial
    contenders = _within_budget(trial, trial.loaded, threads, budgeted) if budgeted else trial.loaded
    if not contenders:
        return trial
    feeds = trial_input(contenders[0])
    runners: list[Backend] = []
    for backend in contenders:
        try:
            backend.run(feeds)  # warm-up: first runs allocate and, for dynamic shapes, plan
            runners.append(backend)
        except ArtforgeError as error:
            trial.failures[backend.display_name] = error
    times: dict[str, list[float]] = {b.display_name: [] for b in runners}
    # Blocks in A B B A order spread background load over all candidates. The
    # untimed run opening each block absorbs the previous backend's tail:
    # ONNX Runtime's idle threads spin for a while after a run and measurably
    # slowed an OpenVINO run that followed at once (62 ms instead of 40 ms).
    for backend in [*runners, *reversed(runners)]:
        backend.run(feeds)
        start = time.perf_counter()
        for count in range(1, BLOCK_RUNS[1] + 1):
            t0 = time.perf_counter()
            backend.run(feeds)
            times[backend.display_name].append(time.perf_counter() - t0)
            if count >= BLOCK_RUNS[0] and time.perf_counter() - start >= TRIAL_SECONDS / 2:
                break
    trial.timings_ms = {name: statistics.median(values) * 1000 for name, values in times.items()}
    trial.chosen = min(runners, key=lambda b: trial.timings_ms[b.display_name]) if runners else None
    trial.shape = _describe(feeds)
    return trial


def _measured_reason(choice: str, decision: dict[str, Any], when: str) -> str:
    """The reason of a measured choice, from a decision (as cached)."""
    timings_ms: dict[str, float] = decision["timings_ms"]
    deviations: dict[str, dict[str, Any]] = decision.get("deviations") or {}
    kind, reference = str(decision.get("kind") or ""), decision.get("reference")

    def shown(name: str) -> str:
        if name == reference:
            note = " (the fp32 reference)"
        elif name in deviations and kind in accuracy.KIND_LIMITS:
            note = f" ({accuracy.summary(kind, deviations[name])})"
        else:
            note = ""
        return f"{name} {timings_ms[name]:.1f} ms{note}"

    others = " vs ".join(shown(name) for name, _ in sorted(timings_ms.items(), key=lambda kv: kv[1])
                         if name != choice)
    versus = f" vs {others}" if others else ""
    text = f"auto measured {shown(choice)}{versus} on {decision.get('input', '?')} ({when})"
    budget = decision.get("budget")
    if deviations and isinstance(budget, dict) and kind in accuracy.KIND_LIMITS:
        limits = accuracy.describe_budget(kind, Budget(**budget))
        text += f"; budget {limits}"
        over = [f"{name} ({accuracy.summary(kind, deviations[name])})" for name in decision.get("over_budget") or {}
                if name in deviations]
        if over:
            text += f"; over budget: {', '.join(over)}"
    failed = list(decision.get("failures") or {})
    if failed:
        text += f"; {', '.join(failed)} could not run this model"
    return text


def _read_decision(file: Path, fingerprint_: dict[str, Any]) -> dict[str, Any] | None:
    try:
        decision = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(decision, dict) or decision.get("format") != CACHE_FORMAT
            or decision.get("fingerprint") != fingerprint_ or not isinstance(decision.get("choice"), str)
            or not isinstance(decision.get("timings_ms"), dict) or decision["choice"] not in decision["timings_ms"]
            or not isinstance(decision.get("failures", {}), dict)
            or not isinstance(decision.get("deviations", {}), dict)):
        return None
    return decision


def _write_decision(file: Path, decision: dict[str, Any]) -> None:
    try:
        write_bytes_atomic(file, (json.dumps(decision, indent=2, sort_keys=True) + "\n").encode())
    except OSError as error:
        # A read-only home or full disk only costs a trial on the next load.
        log.warning("could not cache the backend choice in %s (%s); it will be measured again next time",
                    file, error)


def _cache_file(candidates: list[Candidate], fp: dict[str, Any], budgeted: Budgeted | None
                ) -> tuple[Path | None, dict[str, str]]:
    """The decision's cache file and the artifacts' hashes (None, {} when a file cannot be read).

    The key covers every candidate artifact, the budget and the sample images: changing any of them
    (a new variant, `artforge budget`, other samples) means measuring again.
    """
    files = {str(c.artifact.resolve()): c.artifact for c in candidates}
    samples = representative.sample_files(budgeted.model_dir) if budgeted else []
    try:
        hashes = {name: artifact_sha256(path) for name, path in sorted(files.items())}
        sample_hashes = sorted(artifact_sha256(path) for path in samples)
    except OSError as error:  # unreadable: loading it will fail with the backend's own error
        log.warning("could not hash the model files (%s); measuring without the cache", error)
        return None, {}
    budget = accuracy.as_dict(budgeted.budget) if budgeted else None
    key = hashlib.sha256(json.dumps([sorted(hashes.values()), fp, budget, sample_hashes],
                                    sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / "auto" / f"{key}.json", hashes


def choose(candidates: list[Candidate], threads: int | None, budgeted: Budgeted | None = None) -> Backend:
    """Load the best of candidates (sorted best-rule-first, never empty); its `reason` says why.

    budgeted None: exact, fp32 candidates only. Otherwise reduced candidates are measured against
    budgeted.reference and kept only within budgeted.budget.
    """
    gpu = any(c.probe.score >= GPU_SCORE for c in candidates)
    if budgeted is not None and not gpu and not any(c.reduced for c in candidates):
        budgeted = None  # nothing reduced to weigh (a CPU without bf16, no variants): the fp32 trial, as before
    if budgeted is None:
        candidates = [c for c in candidates if not c.reduced]
    if mode() == "rules":
        return _by_rules(candidates, threads, f"{ENV_MODE}=rules", None)
    if gpu:
        return _by_rules(candidates, threads, "a GPU backend is present and GPUs come first", budgeted)
    if len(candidates) == 1:
        only = candidates[0]
        return _load(only, threads, None, f"auto picked {only.cls.name}, the only backend available here")

    fp = fingerprint(candidates, threads)
    file, hashes = _cache_file(candidates, fp, budgeted)
    decision = _read_decision(file, fp) if file is not None else None
    if decision is not None:
        by_name = {c.display_name: c for c in candidates}
        candidate = by_name.get(decision["choice"])
        if candidate is not None:
            reason = _measured_reason(decision["choice"], decision, f"cached {str(decision.get('created', '?'))[:10]}")
            try:
                backend = _load(candidate, threads, candidate.probe.option, reason)
                if candidate.variant and budgeted:
                    check_variant(backend, budgeted.reference.artifact)
                return backend
            except ArtforgeError as error:
                log.warning("cached backend choice %s no longer loads (%s); measuring again", decision["choice"], error)

    trial = _measure(candidates, threads, budgeted)
    if trial.chosen is None:
        if not trial.loaded:
            # Every backend refused the file. The lowest-ranked one is ONNX
            # Runtime on CPU, present in every install, whose message names
            # the problem with the ONNX file itself (reduced candidates come after the exact ones).
            exact_failures = [trial.failures[c.display_name] for c in candidates
                              if not c.reduced and c.display_name in trial.failures]
            raise (exact_failures or list(trial.failures.values()))[-1]
        failed = next(iter(trial.failures.values()), None)
        exact = [b for b in trial.loaded if not is_reduced(b)]
        if not exact:
            raise failed or ModelLoadError("no backend could run this model at fp32")
        best = exact[0]  # loaded keeps the candidates' rule order
        best.reason = f"auto picked {best.display_name} by preference rules (the trial run failed: {failed})"
        return best
    choice = trial.chosen.display_name
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    decision = {
        "format": CACHE_FORMAT, "choice": choice, "created": created, "input": trial.shape,
        "timings_ms": {name: round(ms, 3) for name, ms in trial.timings_ms.items()},
        "failures": {name: str(error) for name, error in trial.failures.items()},
        "artifacts": hashes, "fingerprint": fp,
    }
    if budgeted is not None:
        decision.update(budget=accuracy.as_dict(budgeted.budget), kind=trial.kind, reference=trial.reference,
                        deviations=trial.deviations, over_budget=trial.over_budget)
    trial.chosen.reason = _measured_reason(choice, decision, "measured now")
    if file is not None:
        _write_decision(file, decision)
    return trial.chosen
