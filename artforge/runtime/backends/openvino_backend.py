"""OpenVINO backend: the same model.onnx, compiled by OpenVINO's CPU plugin.

Precision. OpenVINO's CPU plugin runs float graphs in bf16 by default on CPUs
that have it (AVX512_BF16 or AMX), which changes results. "fp32" (the default
here) sets INFERENCE_PRECISION_HINT=f32 so outputs match ONNX Runtime; "bf16"
("openvino:bf16") is refused on CPUs without bf16, and `auto` takes it only
when its measured deviation is inside the model's accuracy budget (auto.py).
Measured on a 2-core AMD EPYC (Zen 4) VM, swirl stylizer at 512x512:
ONNX Runtime 235 ms, OpenVINO f32 173 ms, OpenVINO bf16 91 ms, bf16 at most
2 levels off f32 (benchmarks/cpu_backends.py; docs/decisions.md, "Backends:
OpenVINO and auto").

Performance hint. LATENCY (one stream using every core for one request) is
what a single in-process call or one gRPC request wants; THROUGHPUT splits the
cores into streams, which only pays when many requests run at once and makes
each of them slower (swirl 256x256: 39 ms LATENCY, 81 ms THROUGHPUT; four
concurrent callers got 25 img/s with either on 2 cores).

Threads. Concurrent run() calls each take an InferRequest from a pool (an
InferRequest must not be used by two threads at once); requests on one
compiled model share its stream, so OpenVINO serialises them internally
instead of oversubscribing the cores.

Static shapes. The model is compiled once with its dynamic dims (any H x W,
any batch), and an input shape that comes back is also compiled with every
dim fixed (StaticShapes): with static shapes OpenVINO fuses the graph's
uint8 boundary (Convert, Transpose, normalisation, Round/Clip) into one
subgraph and plans its memory ahead, which the dynamic model cannot. Measured
on the zoo's width-1.0 stylizer, bf16, one thread (CPU time, this 2-core AMD
EPYC): 3% less at 256x256, 6% at 64x64, 11% at 32x32; the boundary ops fell
from 5.1 to 1.3 ms at 256x256. A static compile costs 0.1-0.5 s, so a shape
is compiled on its STATIC_AFTER-th run, and the memory it holds (about 10 MiB
of compiled code plus its planned activations: 16 MiB at 256x256, 66 MiB at
512x512, 268 MiB at 1024x1024 in bf16) is bounded by
STATIC_SHAPES models per backend, least recently used first out, for inputs
of at most STATIC_MAX_PIXELS pixels; the converted model (its float weights)
is kept to compile from while static shapes are on (docs/decisions.md,
"Backends: sessions that hold their speed").
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from artforge import contract
from artforge.errors import ArtforgeError, InvalidInputError, ModelLoadError
from artforge.runtime.backends.base import Backend, Probe, TensorSpec, batch_pixels

#: option -> OpenVINO inference precision name
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}

#: static-shape compiled models kept per backend, besides the dynamic one ($ARTFORGE_OPENVINO_STATIC_SHAPES;
#: 0 turns static shapes off)
STATIC_SHAPES = 3
ENV_STATIC_SHAPES = "ARTFORGE_OPENVINO_STATIC_SHAPES"
#: runs of one input shape before it gets a static compile (a one-off shape is not worth a compile)
STATIC_AFTER = 2
#: largest input (batch x height x width) given a static model: the gain is in fixed per-run costs, which
#: matter at small sizes, while the memory a static model plans grows with the pixels (about 300 B per pixel
#: for a width-1.0 stylizer in bf16)
STATIC_MAX_PIXELS = 1 << 18
#: input shapes whose runs are counted at once (the least recently seen is forgotten first)
_SEEN_SHAPES = 64

_DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype(np.float32), "f16": np.dtype(np.float16), "f64": np.dtype(np.float64),
    "u8": np.dtype(np.uint8), "i8": np.dtype(np.int8), "u16": np.dtype(np.uint16), "i16": np.dtype(np.int16),
    "i32": np.dtype(np.int32), "i64": np.dtype(np.int64), "boolean": np.dtype(np.bool_),
}


@functools.cache
def _core() -> Any | None:
    """The process-wide ov.Core, or None when OpenVINO is not installed or has no CPU plugin.

    One Core per process: each Core loads its plugins again, and compiled
    models from one Core share the CPU plugin's thread pools.
    """
    try:
        import openvino as ov
    except ImportError:
        return None
    try:
        core = ov.Core()
        return core if "CPU" in core.available_devices else None
    except RuntimeError:  # a broken plugin install; treat as absent rather than failing every load
        return None


def cpu_capabilities() -> tuple[str, ...]:
    """OpenVINO's CPU OPTIMIZATION_CAPABILITIES (e.g. FP32, BF16, INT8), or () without OpenVINO."""
    core = _core()
    if core is None:
        return ()
    return tuple(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def _first_line(error: BaseException, limit: int = 300) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    # OpenVINO puts "Exception from src/...cpp:123:" first; the useful part is the last line.
    text = lines[-1] if lines else type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


#: the artifact contract's graph input/output names
_CONTRACT_NAMES = {name for pair in contract.IO_NAMES.values() for names in pair for name in names}


def _spec(port: Any) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    dtype = _DTYPES.get(port.get_element_type().get_type_name(), np.dtype(object))
    # A port can carry several tensor names (an fp16 variant's boundary Cast
    # adds its own); the contract's name is the one callers use.
    names = sorted(port.get_names() & _CONTRACT_NAMES) or [port.get_any_name()]
    return TensorSpec(names[0], dtype, shape)


def _metadata_props(model: Any, path: Path) -> dict[str, str]:
    """The ONNX metadata_props: OpenVINO's ONNX reader keeps them in rt_info["framework"].

    That key is a reader detail rather than a documented API, so when it is
    missing a session of ONNX Runtime (a base dependency) with every
    optimisation off reads them instead.
    """
    if model.has_rt_info(["framework"]):
        framework = model.get_rt_info()["framework"]
        if isinstance(framework, dict) and framework:
            return {str(k): v.astype(str) if hasattr(v, "astype") else str(v) for k, v in framework.items()}
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception:  # OpenVINO read it, so ONNX Runtime failing here only costs the metadata
        return {}
    return dict(session.get_modelmeta().custom_metadata_map)


def static_shapes() -> int:
    """STATIC_SHAPES, or the non-negative integer in $ARTFORGE_OPENVINO_STATIC_SHAPES."""
    value = os.environ.get(ENV_STATIC_SHAPES, "").strip()
    if not value:
        return STATIC_SHAPES
    if not value.isdigit():
        raise InvalidInputError(f"{ENV_STATIC_SHAPES} is {value!r}; use a whole number of models (0 or more)")
    return int(value)


Shape = tuple[tuple[int, ...], ...]


class _Compiled:
    """One compiled model and its idle InferRequests (a request serves one thread at a time)."""

    def __init__(self, compiled: Any) -> None:
        self.model = compiled
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def infer(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        with self._lock:
            request = self._idle.pop() if self._idle else self.model.create_infer_request()
        try:
            # share_inputs avoids copying the batch in; outputs are copied out
            # (the default) because the request's buffers are reused next call.
            return tuple(request.infer(feeds, share_inputs=True).to_tuple())
        finally:
            with self._lock:
                self._idle.append(request)


class StaticShapes:
    """Static-shape compilations of one model, by input shape: at most `capacity`, least recently used out.

    `get` counts the runs of each shape and compiles it on its `after`-th run. Compiles happen outside the
    lock (they take 0.1 s or more), so runs of other shapes, and of this shape on the dynamic model, go on
    meanwhile; a shape that fails to compile stays on the dynamic model.
    """

    def __init__(self, capacity: int, compile_shape: Callable[[Shape], Any] | None, after: int = STATIC_AFTER,
                 max_pixels: int = STATIC_MAX_PIXELS) -> None:
        self.capacity = capacity if compile_shape is not None else 0
        self.after = after
        self.max_pixels = max_pixels
        self._compile_shape = compile_shape
        self._models: OrderedDict[Shape, _Compiled] = OrderedDict()
        self._seen: OrderedDict[Shape, int] = OrderedDict()
        self._compiling: set[Shape] = set()
        self._failed: set[Shape] = set()
        self._lock = threading.Lock()

    def shapes(self) -> list[Shape]:
        """The shapes with a static model, least recently used first."""
        with self._lock:
            return list(self._models)

    def get(self, shape: Shape) -> _Compiled | None:
        """The static model for shape (compiled now if the shape has earned it), or None for the dynamic one."""
        if self.capacity <= 0 or max(batch_pixels(dims) for dims in shape) > self.max_pixels:
            return None
        with self._lock:
            model = self._models.get(shape)
            if model is not None:
                self._models.move_to_end(shape)
                return model
            runs = self._seen.pop(shape, 0) + 1
            self._seen[shape] = runs
            if len(self._seen) > _SEEN_SHAPES:
                self._seen.popitem(last=False)
            if runs < self.after or shape in self._compiling or shape in self._failed:
                return None
            self._compiling.add(shape)
        assert self._compile_shape is not None  # capacity is 0 without one
        try:
            model = _Compiled(self._compile_shape(shape))
        except Exception:  # the dynamic model still runs this shape; do not try again
            with self._lock:
                self._compiling.discard(shape)
                self._failed.add(shape)
            return None
        with self._lock:
            self._compiling.discard(shape)
            self._models[shape] = model
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)  # in-flight requests keep an evicted model alive until done
        return model


class OpenVinoBackend(Backend):
    name = "openvino"
    artifact = "model.onnx"

    @classmethod
    def probe(cls) -> Probe | None:
        if _core() is None:
            return None
        # Below GPU backends (20+) and above ONNX Runtime on CPU (10): the
        # measured trial in auto.py decides between CPU backends; this score
        # is only the fallback rule.
        return Probe(15, "fp32", "OpenVINO's CPU plugin is installed; fp32 matches ONNX Runtime to float "
                                 "rounding (bf16 only within the model's accuracy budget)")

    @classmethod
    def options(cls) -> tuple[str, ...]:
        return tuple(PRECISIONS)

    @classmethod
    def reduced_precisions(cls) -> tuple[str, ...]:
        return ("bf16",) if "BF16" in cpu_capabilities() else ()

    def __init__(self, path: Path, option: str | None = None, threads: int | None = None,
                 reason: str = "") -> None:
        self.path = Path(path)
        core = _core()
        if core is None:
            raise ModelLoadError("backend openvino is not available: install the openvino package "
                                 "(pip install 'artforge[openvino]')")
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints
        from openvino.frontend import FrontEndManager

        if option is None:
            probe = self.probe()
            assert probe is not None  # _core() succeeded above
            option, reason = probe.option, f"{reason}; {probe.reason}" if reason else probe.reason
        if option not in PRECISIONS:
            raise InvalidInputError(f"unknown OpenVINO option {option!r}; use one of {', '.join(PRECISIONS)}")
        if option == "bf16" and "BF16" not in cpu_capabilities():
            raise ModelLoadError(
                "openvino:bf16 needs a CPU with bfloat16 instructions (AVX512_BF16 or AMX); this CPU offers "
                f"{', '.join(cpu_capabilities())}; use openvino:fp32")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InvalidInputError(f"threads must be a positive integer, got {threads!r}")

        capacity = static_shapes()
        config: dict[str, Any] = {
            hints.inference_precision: ov.Type.f32 if option == "fp32" else ov.Type.bf16,
            hints.performance_mode: hints.PerformanceMode.LATENCY,
        }
        if threads is not None:
            config[props.inference_num_threads] = threads
        try:
            # The ONNX frontend directly: core.read_model tries every frontend
            # on a file it cannot parse, and TensorFlow's prints parse errors to stderr.
            frontend = FrontEndManager().load_by_framework("onnx")
            model = frontend.convert(frontend.load(str(self.path)))
            compiled = core.compile_model(model, "CPU", config)
        except Exception as error:  # OpenVINO raises RuntimeError and its own pybind types
            raise ModelLoadError(f"{self.path}: OpenVINO cannot load this model ({_first_line(error)})") from None

        self.option = option
        self.threads = threads
        self.reason = reason or f"openvino:{option} was asked for"
        self.inputs = tuple(_spec(port) for port in compiled.inputs)
        self.outputs = tuple(_spec(port) for port in compiled.outputs)
        self.metadata_props = _metadata_props(model, self.path)
        self._input_specs = {spec.name: spec for spec in self.inputs}
        self._output_names = [spec.name for spec in self.outputs]
        self._dynamic = _Compiled(compiled)
        dynamic = any(d is None for spec in self.inputs for d in spec.shape)

        def compile_shape(shape: Shape) -> Any:
            fixed = model.clone()
            fixed.reshape({port: ov.PartialShape(list(dims)) for port, dims in zip(fixed.inputs, shape, strict=True)})
            return core.compile_model(fixed, "CPU", config)

        # Only a cache that can be used keeps the converted model (its weights) alive.
        self.static = StaticShapes(capacity, compile_shape if capacity and dynamic else None)

    @property
    def compiled_model(self) -> Any:
        """The underlying ov.CompiledModel (the dynamic-shape one), for callers that want its properties."""
        return self._dynamic.model

    def _check(self, feeds: dict[str, np.ndarray]) -> None:
        # OpenVINO converts a wrong dtype silently (a float image would be cast
        # to uint8), so dtypes and fixed dims are checked here.
        if set(feeds) != set(self._input_specs):
            raise InvalidInputError(f"{self.path}: the model takes input(s) "
                                    f"{', '.join(s.describe() for s in self.inputs)}; got {', '.join(feeds) or 'none'}")
        for name, array in feeds.items():
            spec = self._input_specs[name]
            if not isinstance(array, np.ndarray) or array.dtype != spec.dtype or array.ndim != len(spec.shape) or any(
                    d is not None and d != n for d, n in zip(spec.shape, array.shape, strict=True)):
                got = (f"{array.dtype.name}{list(array.shape)}" if isinstance(array, np.ndarray)
                       else type(array).__name__)
                raise InvalidInputError(f"{self.path}: the model rejected its input "
                                        f"('{name}' must be {spec.describe()}, got {got})")

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check(feeds)
        # Feeds in the compiled model's input order, so they match a static model's ports by position.
        ordered = {spec.name: feeds[spec.name] for spec in self.inputs}
        compiled = self.static.get(tuple(array.shape for array in ordered.values())) or self._dynamic
        try:
            results = compiled.infer(ordered)
        except RuntimeError as error:
            message = _first_line(error)
            if "ParameterMismatch" in str(error) or "shape" in message.lower():
                raise InvalidInputError(f"{self.path}: the model rejected its input ({message})") from None
            raise ArtforgeError(f"{self.path}: inference failed ({message})") from None
        return dict(zip(self._output_names, results, strict=True))
