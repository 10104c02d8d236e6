"""The "auto" backend choice: a short measured trial per model and machine, cached.

Which CPU backend is faster depends on the model and the machine (on the dev
VM OpenVINO ran the zoo's stylizers 25% faster, ONNX Runtime the classifier
and the generator), so rules alone guess wrong. For each model, auto loads every CPU backend available,
runs a representative input through each, alternating them so that a burst
of load from another process hits both, and keeps the backend with the
lowest median time. The decision is cached as JSON under
$ARTFORGE_CACHE_DIR/auto/ (default ~/.cache/artforge), keyed by the
artifact's sha256 and a fingerprint of the machine and libraries, so the
trial runs once per model and machine.

Preference rules (probe scores: GPU backends, then OpenVINO, then ONNX
Runtime on CPU) decide instead when ARTFORGE_AUTO=rules, when a GPU backend
is present (a GPU is preferred for serving however a single small request
times, since it leaves the CPU to the image pipeline), or when the trial
cannot run. Reduced precision (openvino:bf16) is never chosen automatically.
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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from artforge import contract
from artforge.errors import ArtforgeError, InvalidInputError, ModelLoadError
from artforge.files import file_sha256, write_bytes_atomic
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
CACHE_FORMAT = 1
_LIBRARIES = ("onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt")


@dataclass(frozen=True)
class Candidate:
    """One backend auto may pick: its class, the probe that offered it and the artifact it would load."""

    cls: type[Backend]
    probe: Probe
    artifact: Path

    @property
    def display_name(self) -> str:
        return f"{self.cls.name}:{self.probe.option}" if self.probe.option else self.cls.name


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


def trial_input(backend: Backend) -> dict[str, np.ndarray]:
    """A representative batch of one for the model behind backend, from its specs and metadata.

    Classifier: its input size. Generator: GENERATOR_TRIAL_BATCH latents. Stylizer: TRIAL_SIDE
    square, rounded up to its size multiple.
    """
    props = backend.metadata_props
    side = TRIAL_SIDE
    if props.get(contract.KEY_KIND) == contract.CLASSIFIER and props.get(contract.KEY_INPUT_SIZE, "").isdigit():
        side = int(props[contract.KEY_INPUT_SIZE])
    multiple = props.get(contract.KEY_SIZE_MULTIPLE, "1")
    multiple_n = int(multiple) if multiple.isdigit() and int(multiple) > 0 else 1
    side = -(-side // multiple_n) * multiple_n
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
    return candidate.cls(candidate.artifact, option=option, threads=threads, reason=reason)


def _by_rules(candidates: list[Candidate], threads: int | None, why: str) -> Backend:
    """The highest-scoring candidate that loads; the last one's error when none does (see _measure)."""
    error: ModelLoadError | None = None
    for candidate in candidates:
        try:
            # option=None lets the backend apply its own fallbacks (a CUDA
            # build without a working GPU falls back to CPU and says so).
            return _load(candidate, threads, None, f"auto picked {candidate.cls.name} by preference rules ({why})")
        except ModelLoadError as failed:
            error = failed
    assert error is not None  # candidates is never empty
    raise error


@dataclass
class _Trial:
    chosen: Backend | None
    timings_ms: dict[str, float]
    #: display name -> the error that kept that candidate out, in rule order
    failures: dict[str, ArtforgeError]
    loaded: list[Backend]
    shape: str


def _measure(candidates: list[Candidate], threads: int | None) -> _Trial:
    loaded: list[Backend] = []
    failures: dict[str, ArtforgeError] = {}
    for candidate in candidates:
        try:
            loaded.append(_load(candidate, threads, candidate.probe.option, ""))
        except ArtforgeError as error:
            failures[candidate.display_name] = error
    if not loaded:
        return _Trial(None, {}, failures, [], "")
    feeds = trial_input(loaded[0])
    runners: list[Backend] = []
    for backend in loaded:
        try:
            backend.run(feeds)  # warm-up: first runs allocate and, for dynamic shapes, plan
            runners.append(backend)
        except ArtforgeError as error:
            failures[backend.display_name] = error
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
    timings = {name: statistics.median(values) * 1000 for name, values in times.items()}
    chosen = min(runners, key=lambda b: timings[b.display_name]) if runners else None
    return _Trial(chosen, timings, failures, loaded, _describe(feeds))


def _measured_reason(choice: str, timings_ms: dict[str, float], shape: str, when: str, failed: list[str]) -> str:
    others = " vs ".join(f"{name} {ms:.1f} ms" for name, ms in sorted(timings_ms.items(), key=lambda kv: kv[1])
                         if name != choice)
    versus = f" vs {others}" if others else ""
    unusable = f"; {', '.join(failed)} could not run this model" if failed else ""
    return f"auto measured {choice} {timings_ms[choice]:.1f} ms{versus} on {shape} ({when}){unusable}"


def _read_decision(file: Path, fingerprint_: dict[str, Any]) -> dict[str, Any] | None:
    try:
        decision = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(decision, dict) or decision.get("format") != CACHE_FORMAT
            or decision.get("fingerprint") != fingerprint_ or not isinstance(decision.get("choice"), str)
            or not isinstance(decision.get("timings_ms"), dict) or decision["choice"] not in decision["timings_ms"]
            or not isinstance(decision.get("failures", {}), dict)):
        return None
    return decision


def _write_decision(file: Path, decision: dict[str, Any]) -> None:
    try:
        write_bytes_atomic(file, (json.dumps(decision, indent=2, sort_keys=True) + "\n").encode())
    except OSError as error:
        # A read-only home or full disk only costs a trial on the next load.
        log.warning("could not cache the backend choice in %s (%s); it will be measured again next time",
                    file, error)


def choose(candidates: list[Candidate], threads: int | None) -> Backend:
    """Load the best of candidates (sorted best-rule-first, never empty); its `reason` says why."""
    if mode() == "rules":
        return _by_rules(candidates, threads, f"{ENV_MODE}=rules")
    if any(c.probe.score >= GPU_SCORE for c in candidates):
        return _by_rules(candidates, threads, "a GPU backend is present and GPUs come first")
    if len(candidates) == 1:
        only = candidates[0]
        return _load(only, threads, None, f"auto picked {only.cls.name}, the only backend available here")

    fp = fingerprint(candidates, threads)
    artifacts = sorted({str(c.artifact.resolve()): c.artifact for c in candidates}.items())
    file: Path | None
    decision: dict[str, Any] | None
    try:
        hashes = {name: artifact_sha256(file) for name, file in artifacts}
    except OSError as error:  # unreadable: loading it will fail with the backend's own error
        log.warning("could not hash %s (%s); measuring without the cache", artifacts[0][0], error)
        hashes, file, decision = {}, None, None
    else:
        key = hashlib.sha256(json.dumps([sorted(hashes.values()), fp], sort_keys=True).encode()).hexdigest()[:32]
        file = cache_dir() / "auto" / f"{key}.json"
        decision = _read_decision(file, fp)
    if decision is not None:
        by_name = {c.display_name: c for c in candidates}
        candidate = by_name.get(decision["choice"])
        if candidate is not None:
            reason = _measured_reason(decision["choice"], decision["timings_ms"], str(decision.get("input", "?")),
                                      f"cached {str(decision.get('created', '?'))[:10]}",
                                      list(decision.get("failures") or {}))
            try:
                return _load(candidate, threads, candidate.probe.option, reason)
            except ArtforgeError as error:
                log.warning("cached backend choice %s no longer loads (%s); measuring again", decision["choice"], error)

    trial = _measure(candidates, threads)
    if trial.chosen is None:
        if not trial.loaded:
            # Every backend refused the file. The lowest-ranked one is ONNX
            # Runtime on CPU, present in every install, whose message names
            # the problem with the ONNX file itself.
            raise list(trial.failures.values())[-1]
        failed = next(iter(trial.failures.values()))
        best = trial.loaded[0]  # loaded keeps the candidates' rule order
        best.reason = f"auto picked {best.display_name} by preference rules (the trial run failed: {failed})"
        return best
    choice = trial.chosen.display_name
    trial.chosen.reason = _measured_reason(choice, trial.timings_ms, trial.shape, "measured now", list(trial.failures))
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    if file is not None:
        _write_decision(file, {
            "format": CACHE_FORMAT, "choice": choice, "created": created, "input": trial.shape,
            "timings_ms": {name: round(ms, 3) for name, ms in trial.timings_ms.items()},
            "failures": {name: str(error) for name, error in trial.failures.items()},
            "artifacts": hashes, "fingerprint": fp,
        })
    return trial.chosen
