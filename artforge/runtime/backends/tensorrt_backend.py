"""Native TensorRT backend: a serialized engine (model.plan) run on a CUDA stream.

The engine is built by `artforge build-engine` (artforge/export/tensorrt.py)
and sits beside model.onnx with model.plan.json, which records what the engine
was built for (TensorRT version, GPU, compute capability, precision,
optimisation profiles, the source ONNX's sha256) and the ONNX metadata_props,
so this backend never needs the ONNX file to know the model's kind and labels.

An engine only runs on the TensorRT version and GPU model it was built with,
and it silently describes an old graph once model.onnx is re-exported; so the
load refuses a stale engine (ModelLoadError saying to run build-engine again)
rather than failing later inside TensorRT. "auto" then falls back to the next
backend (ONNX Runtime's CUDA provider), which reads model.onnx.

Execution. Each run borrows a slot from a small pool: its own execution
context, CUDA stream and device buffers. A context must not be used by two
threads at once, and each one holds the engine's activation memory (sized for
the profile's largest shape), so a pool bounded by ARTFORGE_TRT_CONTEXTS
(default 2) serves many threads without one context per thread. Inputs bind by
tensor name; dynamic shapes are set with set_input_shape; device buffers grow
(to the next power of two) as shapes grow and are reused otherwise. A batch
larger than the profile's maximum is split. With ARTFORGE_TRT_CUDA_GRAPHS=1
a slot that sees the same input shape twice in a row captures the engine
launch as a CUDA graph and replays it while the shape stays the same, which
removes per-layer launch overhead for fixed-shape traffic (graph_step).

Everything touching tensorrt or cuda-python is imported lazily, so importing
this module costs nothing on CPU-only hosts; probe() says None there. The
plain-Python parts (metadata checks, profile checks, batch splitting) are
unit-tested on CPU; the GPU parts have never run in this repository's CI
(docs/tensorrt.md, "What has never run").
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artforge import contract
from artforge.errors import ArtforgeError, InvalidInputError, ModelLoadError, ResourceExhaustedError
from artforge.files import file_sha256
from artforge.runtime.backends.base import Backend, Probe, TensorSpec

log = logging.getLogger(__name__)

PLAN_FILE = "model.plan"
PLAN_META_FILE = "model.plan.json"
#: version of model.plan.json's layout; a reader refuses a newer one
PLAN_FORMAT = 1
PRECISIONS = contract.ENGINE_PRECISIONS
#: environment: how many execution contexts one loaded engine may create
ENV_CONTEXTS = "ARTFORGE_TRT_CONTEXTS"
#: environment: "1" captures and replays a CUDA graph while the input shape stays the same
ENV_CUDA_GRAPHS = "ARTFORGE_TRT_CUDA_GRAPHS"
DEFAULT_CONTEXTS = 2
_REQUIRED = ("format", "tensorrt_version", "gpu_name", "compute_capability", "precision", "profiles",
             "metadata_props", "inputs", "outputs", "plan_sha256")


# ------------------------------------------------------------ plain Python
@dataclass(frozen=True)
class Environment:
    """What an engine is tied to: the TensorRT version and the GPU it runs on."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    def as_dict(self) -> dict[str, str]:
        return {"tensorrt_version": self.tensorrt_version, "gpu_name": self.gpu_name,
                "compute_capability": self.compute_capability}


def plan_meta_path(plan: Path) -> Path:
    """model.plan -> model.plan.json (the engine's metadata sits beside it)."""
    plan = Path(plan)
    return plan.with_name(plan.name + ".json")


def rebuild_hint(plan: Path) -> str:
    """The command that rebuilds this engine, with the names filled in when the path is <repo>/<name>/<version>/."""
    plan = Path(plan)
    folder = plan.parent
    if folder.name.isdigit() and len(folder.parents) >= 2:
        return (f"artforge build-engine {folder.parent.name} --repo {folder.parent.parent} "
                f"--version {folder.name} --rebuild-stale")
    return "artforge build-engine NAME --repo REPO --rebuild-stale"


def read_plan_metadata(plan: Path) -> dict[str, Any]:
    """Parse and validate model.plan.json beside `plan`; ModelLoadError names what is wrong."""
    path = plan_meta_path(plan)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{plan} has no {path.name} beside it, so its build cannot be checked; "
                             f"run `{rebuild_hint(plan)}` again") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path} is not readable JSON ({type(error).__name__}); "
                             f"run `{rebuild_hint(plan)}` again") from None
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path} must hold a JSON object; run `{rebuild_hint(plan)}` again")
    missing = [key for key in _REQUIRED if key not in meta]
    if missing:
        raise ModelLoadError(f"{path} lacks {', '.join(missing)}; run `{rebuild_hint(plan)}` again")
    if not isinstance(meta["format"], int) or meta["format"] > PLAN_FORMAT:
        raise ModelLoadError(f"{path} has format {meta['format']!r}; this artforge reads format {PLAN_FORMAT} "
                             "or older, so upgrade artforge or rebuild the engine")
    if not isinstance(meta["metadata_props"], dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta["metadata_props"].items()):
        raise ModelLoadError(f"{path}: metadata_props must map strings to strings")
    return meta


def stale_reasons(meta: Mapping[str, Any], environment: Environment | None,
                  onnx_sha256: str | None = None) -> list[str]:
    """Why an engine described by `meta` must not run here (empty when it may).

    environment is this machine's (None skips those checks); onnx_sha256 is
    that of the model.onnx beside the engine (None when there is none).
    """
    reasons = []
    if environment is not None:
        for key, what in (("tensorrt_version", "TensorRT"), ("gpu_name", "GPU"),
                          ("compute_capability", "compute capability")):
            built, here = str(meta.get(key)), getattr(environment, key)
            if built != here:
                reasons.append(f"built for {what} {built}, this machine has {here}")
    if onnx_sha256 is not None and meta.get("onnx_sha256") != onnx_sha256:
        reasons.append("model.onnx has changed since the engine was built")
    return reasons


def check_plan(plan: Path, meta: Mapping[str, Any], environment: Environment | None,
               onnx_sha256: str | None = None) -> None:
    """Raise ModelLoadError, with the command that fixes it, when the engine is stale."""
    reasons = stale_reasons(meta, environment, onnx_sha256)
    if reasons:
        raise ModelLoadError(f"{plan}: the TensorRT engine is stale ({'; '.join(reasons)}); "
                             f"run `{rebuild_hint(plan)}` again")


def profile_problem(name: str, shape: Sequence[int], profile: Mapping[str, Sequence[int]]) -> str | None:
    """Why `shape` is outside the non-batch range of an input's profile {"min","opt","max"}, or None.

    The batch axis is left out: run() splits batches above the profile's maximum.
    """
    low, high = list(profile["min"]), list(profile["max"])
    if len(shape) != len(low):
        return f"input '{name}' must have rank {len(low)}, got shape {list(shape)}"
    for axis in range(1, len(shape)):
        if not low[axis] <= shape[axis] <= high[axis]:
            return (f"input '{name}' has {shape[axis]} on axis {axis}; this engine was built for "
                    f"{low[axis]}..{high[axis]} there (shape {list(shape)})")
    return None


def batch_slices(count: int, limit: int) -> Iterator[slice]:
    """Slices of at most `limit` rows covering range(count)."""
    limit = max(1, int(limit))
    for start in range(0, count, limit):
        yield slice(start, min(start + limit, count))


def spec_from_json(entry: Mapping[str, Any]) -> TensorSpec:
    shape = tuple(None if d is None or int(d) < 0 else int(d) for d in entry["shape"])
    return TensorSpec(str(entry["name"]), np.dtype(entry["dtype"]), shape)


def graph_step(enabled: bool, last_shapes: tuple | None, shapes: tuple, captured: bool) -> str:
    """How a slot launches its engine: "plain", "capture" (then launch the graph) or "replay".

    TensorRT does shape-dependent setup on the first launch after
    set_input_shape changes a shape, and that setup must not be inside a
    graph; it may also rewrite context state that a graph captured for an
    earlier shape reads. So a graph is captured only on the second launch
    in a row with the same shapes, and is valid only until the shapes change
    (the slot then drops it). Alternating shapes therefore never use graphs.
    """
    if not enabled or shapes != last_shapes:
        return "plain"
    return "replay" if captured else "capture"


def _context_count() -> int:
    raw = os.environ.get(ENV_CONTEXTS, "").strip()
    if not raw:
        return DEFAULT_CONTEXTS
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInputError(f"{ENV_CONTEXTS} is {raw!r}; use a positive integer such as 2")
    return int(raw)


def _graphs_enabled() -> bool:
    return os.environ.get(ENV_CUDA_GRAPHS, "").strip().lower() in ("1", "true", "yes", "on")


# ------------------------------------------------------- CUDA (lazy, GPU)
def cudart() -> Any:
    """cuda-python's runtime module (cuda.bindings.runtime, or cuda.cudart before 12.6); ImportError if absent."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime
    return runtime


def cuda_check(result: Any, what: str) -> Any:
    """Unpack a cuda-python call's (error, *values); raise ArtforgeError naming `what` on failure."""
    items = result if isinstance(result, tuple) else (result,)
    error, values = items[0], items[1:]
    if error != cudart().cudaError_t.cudaSuccess:
        raise ArtforgeError(f"CUDA {what} failed ({getattr(error, 'name', error)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def handle(obj: Any) -> int:
    """The integer address behind a cuda-python handle (stream, pointer), as TensorRT takes it."""
    if isinstance(obj, int):
        return obj
    try:
        return int(obj)
    except TypeError:
        return int(obj.getPtr())


@functools.cache
def cuda_environment(device: int = 0) -> Environment | None:
    """TensorRT version, GPU name and compute capability of `device`, or None without TensorRT/CUDA/GPU."""
    try:
        import tensorrt as trt
        runtime = cudart()
    except Exception:  # ImportError, or a broken install raising OSError on a missing libcudart
        return None
    try:
        error, count = runtime.cudaGetDeviceCount()
        if error != runtime.cudaError_t.cudaSuccess or count <= device:
            return None
        error, props = runtime.cudaGetDeviceProperties(device)
        if error != runtime.cudaError_t.cudaSuccess:
            return None
    except Exception:  # a driver that cannot start behaves like no GPU
        return None
    name = props.name
    name = name.decode(errors="replace") if isinstance(name, bytes | bytearray) else str(name)
    return Environment(str(trt.__version__), name.split("\x00", 1)[0].strip(), f"{props.major}.{props.minor}")


def missing_requirements() -> str | None:
    """One sentence saying why TensorRT cannot run here, or None when it can."""
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return "the tensorrt Python package is not installed (pip install 'artforge[tensorrt]')"
    try:
        cudart()
    except Exception:
        return "cuda-python is not installed (pip install 'artforge[tensorrt]')"
    if cuda_environment() is None:
        return "no CUDA device is visible (check the NVIDIA driver and CUDA_VISIBLE_DEVICES)"
    return None


_logger_lock = threading.Lock()
_trt_logger: Any = None


def trt_logger() -> Any:
    """One tensorrt.Logger per process at WARNING; TensorRT wants a logger to outlive its objects."""
    global _trt_logger
    import tensorrt as trt

    with _logger_lock:
        if _trt_logger is None:
            _trt_logger = trt.Logger(trt.Logger.WARNING)
        return _trt_logger


class _Buffer:
    """One device allocation that grows to the next power of two and never shrinks."""

    def __init__(self) -> None:
        self.pointer = 0
        self.nbytes = 0

    def ensure(self, nbytes: int) -> bool:
        """Make room for nbytes; True when the address changed (captured graphs are then stale)."""
        if nbytes <= self.nbytes:
            return False
        size = 1 << max(8, (nbytes - 1).bit_length())
        self.free()
        self.pointer = cuda_check(cudart().cudaMalloc(size), f"cudaMalloc of {size} bytes")
        self.nbytes = size
        return True

    def free(self) -> None:
        if self.pointer:
            cudart().cudaFree(self.pointer)  # freeing cannot usefully fail at this point
            self.pointer, self.nbytes = 0, 0


class _Slot:
    """One execution context with its own stream, device buffers and captured CUDA graphs."""

    def __init__(self, engine: Any, device: int, inputs: Sequence[str], outputs: Sequence[str],
                 graphs: bool) -> None:
        runtime = cudart()
        self.device = device
        cuda_check(runtime.cudaSetDevice(device), "cudaSetDevice")
        self.context = engine.create_execution_context()
        if self.context is None:
            raise ResourceExhaustedError("TensorRT could not create an execution context (out of GPU memory?)")
        # Non-blocking: the legacy default stream (other libraries' work) must not serialise with ours.
        non_blocking = getattr(runtime, "cudaStreamNonBlocking", 1)
        self.stream = cuda_check(runtime.cudaStreamCreateWithFlags(non_blocking), "cudaStreamCreateWithFlags")
        self.inputs, self.outputs = list(inputs), list(outputs)
        self.buffers = {name: _Buffer() for name in (*inputs, *outputs)}
        self.use_graphs = graphs
        #: input shapes of the last launch (what the context's shape state describes)
        self.last_shapes: tuple | None = None
        #: (graph, graph_exec) captured for last_shapes, or None
        self.graph: tuple[Any, Any] | None = None

    def _drop_graphs(self) -> None:
        if self.graph is not None:
            runtime = cudart()
            graph, executable = self.graph
            runtime.cudaGraphExecDestroy(executable)
            runtime.cudaGraphDestroy(graph)
            self.graph = None

    def _capture(self) -> Any | None:
        """Capture one engine launch on this stream as a CUDA graph; None (and graphs off) when it cannot be."""
        runtime = cudart()
        stream = self.stream
        try:
            cuda_check(runtime.cudaStreamBeginCapture(
                stream, runtime.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture")
            try:
                launched = self.context.execute_async_v3(handle(stream))
            finally:
                # Whatever happened, the stream must leave capture mode or it cannot run anything again.
                ended = runtime.cudaStreamEndCapture(stream)
            graph = cuda_check(ended, "cudaStreamEndCapture")
            if not launched:
                runtime.cudaGraphDestroy(graph)
                raise ArtforgeError("execute_async_v3 refused to run under stream capture")
            try:
                executable = cuda_check(runtime.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
            except ArtforgeError:
                runtime.cudaGraphDestroy(graph)
                raise
        except ArtforgeError as error:
            # Some engines (data-dependent shapes, some plugins) cannot be captured;
            # they still run, just without graphs.
            log.warning("CUDA graph capture failed (%s); running this engine without CUDA graphs", error)
            self.use_graphs = False
            return None
        self.graph = (graph, executable)
        return executable

    def run(self, feeds: Mapping[str, np.ndarray], dtypes: Mapping[str, np.dtype]) -> dict[str, np.ndarray]:
        runtime = cudart()
        cuda_check(runtime.cudaSetDevice(self.device), "cudaSetDevice")
        context, stream = self.context, self.stream
        moved = False
        for name in self.inputs:
            array = feeds[name]
            if not context.set_input_shape(name, tuple(array.shape)):
                raise InvalidInputError(f"the TensorRT engine rejected shape {list(array.shape)} for input '{name}'")
            moved |= self.buffers[name].ensure(array.nbytes)
        shapes = {}
        for name in self.outputs:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ArtforgeError(f"TensorRT could not infer the shape of output '{name}' (got {list(shape)})")
            shapes[name] = shape
            moved |= self.buffers[name].ensure(int(np.prod(shape, dtype=np.int64)) * dtypes[name].itemsize)
        if moved:
            self._drop_graphs()  # graphs bake in buffer addresses
        for name, buffer in self.buffers.items():
            if not context.set_tensor_address(name, buffer.pointer):
                raise ArtforgeError(f"TensorRT refused the device address of tensor '{name}'")

        for name in self.inputs:
            array = feeds[name]
            cuda_check(runtime.cudaMemcpyAsync(self.buffers[name].pointer, array.ctypes.data, array.nbytes,
                                               runtime.cudaMemcpyKind.cudaMemcpyHostToDevice, stream),
                       "copy to the GPU")
        shapes_now = tuple(tuple(feeds[name].shape) for name in self.inputs)
        step = graph_step(self.use_graphs, self.last_shapes, shapes_now, self.graph is not None)
        if shapes_now != self.last_shapes:
            self._drop_graphs()  # captured for the old shapes, whose context state is gone
        self.last_shapes = shapes_now
        executable = None
        if step == "replay":
            assert self.graph is not None
            executable = self.graph[1]
        elif step == "capture":
            executable = self._capture()  # None when capture failed; graphs are then off for this slot
        if executable is not None:
            cuda_check(runtime.cudaGraphLaunch(executable, stream), "cudaGraphLaunch")
        elif not context.execute_async_v3(handle(stream)):
            raise ArtforgeError("TensorRT failed to enqueue the engine (execute_async_v3 returned False)")
        results = {}
        for name in self.outputs:
            out = np.empty(shapes[name], dtype=dtypes[name])
            cuda_check(runtime.cudaMemcpyAsync(out.ctypes.data, self.buffers[name].pointer, out.nbytes,
                                               runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream),
                       "copy from the GPU")
            results[name] = out
        cuda_check(runtime.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return results

    def close(self) -> None:
        try:
            self._drop_graphs()
            for buffer in self.buffers.values():
                buffer.free()
            if self.stream is not None:
                cudart().cudaStreamDestroy(self.stream)
                self.stream = None
        except Exception:  # interpreter shutdown may have unloaded cuda-python already
            pass


class EngineRunner:
    """A deserialized engine and its pool of slots; shared by TensorRTBackend and the builder's checks."""

    def __init__(self, plan: bytes, source: str, contexts: int | None = None, graphs: bool | None = None,
                 device: int = 0) -> None:
        import tensorrt as trt

        self.source = source
        self.device = device
        cuda_check(cudart().cudaSetDevice(device), "cudaSetDevice")
        self._runtime = trt.Runtime(trt_logger())
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise ModelLoadError(f"{source}: TensorRT cannot deserialize this engine (corrupt, or built by another "
                                 "TensorRT version); build it again with artforge build-engine")
        inputs: list[str] = []
        outputs: list[str] = []
        self.dtypes: dict[str, np.dtype] = {}
        specs: dict[str, TensorSpec] = {}
        for index in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(index)
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            shape = tuple(None if d < 0 else int(d) for d in self.engine.get_tensor_shape(name))
            self.dtypes[name] = dtype
            specs[name] = TensorSpec(name, dtype, shape)
            (inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(name)
        self.input_names, self.output_names = tuple(inputs), tuple(outputs)
        self.inputs = tuple(specs[n] for n in inputs)
        self.outputs = tuple(specs[n] for n in outputs)
        # Profile 0's limits per input, from the engine itself (the JSON could be hand-edited).
        self.profiles = {}
        for name in inputs:
            low, opt, high = self.engine.get_tensor_profile_shape(name, 0)
            self.profiles[name] = {"min": list(low), "opt": list(opt), "max": list(high)}
        self._limit = contexts or _context_count()
        self._graphs = _graphs_enabled() if graphs is None else graphs
        self._idle: queue.LifoQueue[_Slot] = queue.LifoQueue()
        self._created: list[_Slot] = []
        self._lock = threading.Lock()
        self._closed = False

    def _borrow(self) -> _Slot:
        if self._closed:
            raise ArtforgeError(f"{self.source}: this engine was closed; load the model again")
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._created) < self._limit:
                slot = _Slot(self.engine, self.device, self.input_names, self.output_names, self._graphs)
                self._created.append(slot)
                return slot
        return self._idle.get()  # every slot is busy: wait for one

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch (split to the profile's maximum batch); arrays must match the input dtypes."""
        for name in self.input_names:
            problem = profile_problem(name, feeds[name].shape, self.profiles[name])
            if problem:
                raise InvalidInputError(f"{self.source}: {problem}; rebuild the engine with a wider range "
                                        "(build-engine --min-side/--max-side) or resize the input")
        first = self.input_names[0]
        count = feeds[first].shape[0] if feeds[first].ndim else 1
        limit = min(self.profiles[name]["max"][0] for name in self.input_names)
        if count <= limit:
            return self._run_one({n: np.ascontiguousarray(feeds[n]) for n in self.input_names})
        parts = [self._run_one({n: np.ascontiguousarray(feeds[n][rows]) for n in self.input_names})
                 for rows in batch_slices(count, limit)]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.output_names}

    def _run_one(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        slot = self._borrow()
        try:
            return slot.run(feeds, self.dtypes)
        finally:
            self._idle.put(slot)

    def close(self) -> None:
        """Free every slot's buffers, graphs and stream; runs still in flight finish first on their stream."""
        with self._lock:
            self._closed = True
            for slot in self._created:
                slot.close()
            self._created.clear()
            while True:  # drop the idle references too, so nothing can borrow a freed slot
                try:
                    self._idle.get_nowait()
                except queue.Empty:
                    break

    def __del__(self) -> None:
        if "_created" in self.__dict__:  # __init__ may have failed before the pool existed
            self.close()


class TensorRTBackend(Backend):
    name = "tensorrt"
    artifact = PLAN_FILE

    #: None for an instance made by inspect(), which never runs
    _runner: EngineRunner | None
    #: the parsed model.plan.json
    plan_metadata: dict[str, Any]

    @classmethod
    def probe(cls) -> Probe | None:
        environment = cuda_environment()
        if environment is None:
            return None
        # Above ONNX Runtime's CUDA provider (20): an engine built for this GPU
        # is what build-engine made it for. A stale engine fails to load and
        # "auto" moves on to the next candidate.
        return Probe(30, "", f"TensorRT {environment.tensorrt_version} on {environment.gpu_name} "
                             f"(compute capability {environment.compute_capability}) with a model.plan engine")

    @classmethod
    def options(cls) -> tuple[str, ...]:
        return PRECISIONS

    @classmethod
    def inspect(cls, path: Path) -> TensorRTBackend:
        """Specs and metadata from model.plan.json alone: no GPU memory, no engine deserialisation."""
        self = cls.__new__(cls)
        self.path = Path(path)
        meta = read_plan_metadata(self.path)
        try:
            self.inputs = tuple(spec_from_json(entry) for entry in meta["inputs"])
            self.outputs = tuple(spec_from_json(entry) for entry in meta["outputs"])
        except (KeyError, TypeError, ValueError):
            raise ModelLoadError(f"{plan_meta_path(self.path)}: inputs and outputs must be lists of "
                                 "{name, dtype, shape}; rebuild the engine") from None
        self.option, self.reason, self.threads = str(meta["precision"]), "inspection only", None
        self.metadata_props = dict(meta["metadata_props"])
        self.plan_metadata = meta
        self._runner = None
        return self

    def __init__(self, path: Path, option: str | None = None, threads: int | None = None,
                 reason: str = "") -> None:
        self.path = Path(path)
        if option is not None and option not in PRECISIONS:
            raise InvalidInputError(f"unknown TensorRT option {option!r}; use one of {', '.join(PRECISIONS)}")
        meta = read_plan_metadata(self.path)
        missing = missing_requirements()
        if missing:
            raise ModelLoadError(f"{self.path}: TensorRT cannot run here: {missing}")
        onnx_file = self.path.with_suffix(".onnx")  # model.plan <- model.onnx, model.tile.plan <- model.tile.onnx
        check_plan(self.path, meta, cuda_environment(), file_sha256(onnx_file) if onnx_file.is_file() else None)
        if option is not None and option != meta["precision"]:
            raise ModelLoadError(f"{self.path} was built with precision {meta['precision']}, not {option}; "
                                 f"run `{rebuild_hint(self.path)} --precision {option}`")
        try:
            plan = self.path.read_bytes()
        except OSError as error:
            raise ModelLoadError(f"{self.path} cannot be read ({error.strerror})") from None
        if hashlib.sha256(plan).hexdigest() != meta["plan_sha256"]:
            raise ModelLoadError(f"{self.path} does not match its {PLAN_META_FILE} (a half-copied or replaced "
                                 f"engine); run `{rebuild_hint(self.path)}` again")
        self._runner = EngineRunner(plan, str(self.path))
        self.option = str(meta["precision"])
        self.reason = reason or f"TensorRT engine ({self.option}) was asked for"
        self.threads = threads  # TensorRT runs on the GPU; CPU threads do not apply
        self.metadata_props = dict(meta["metadata_props"])
        self.inputs = self._runner.inputs
        self.outputs = self._runner.outputs
        self.plan_metadata = meta

    @property
    def profiles(self) -> dict[str, dict[str, list[int]]]:
        """min/opt/max shape per input of the engine's optimisation profile."""
        if self._runner is not None:
            return self._runner.profiles
        return {name: dict(shapes) for name, shapes in self.plan_metadata["profiles"][0].items()}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._runner is None:
            raise ModelLoadError(f"{self.path} was opened for inspection only; load it with create_backend to run it")
        return self._runner.run(feeds)

    def close(self) -> None:
        """Free the device buffers and streams now instead of at garbage collection."""
        if self._runner is not None:
            self._runner.close()
