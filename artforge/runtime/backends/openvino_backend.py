"""OpenVINO backend: the same model.onnx, compiled by OpenVINO's CPU plugin.

Precision. OpenVINO's CPU plugin runs float graphs in bf16 by default on CPUs
that have it (AVX512_BF16 or AMX), which changes results. "fp32" (the default
here) sets INFERENCE_PRECISION_HINT=f32 so outputs match ONNX Runtime; "bf16"
is an explicit opt-in ("openvino:bf16") and is refused on CPUs without bf16.
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
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np

from artforge import contract
from artforge.errors import ArtforgeError, InvalidInputError, ModelLoadError
from artforge.runtime.backends.base import Backend, Probe, TensorSpec

#: option -> OpenVINO inference precision name
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}

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
                                 "rounding (bf16 is opt-in)")

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
            self._compiled = core.compile_model(model, "CPU", config)
        except Exception as error:  # OpenVINO raises RuntimeError and its own pybind types
            raise ModelLoadError(f"{self.path}: OpenVINO cannot load this model ({_first_line(error)})") from None

        self.option = option
        self.threads = threads
        self.reason = reason or f"openvino:{option} was asked for"
        self.inputs = tuple(_spec(port) for port in self._compiled.inputs)
        self.outputs = tuple(_spec(port) for port in self._compiled.outputs)
        self.metadata_props = _metadata_props(model, self.path)
        self._input_specs = {spec.name: spec for spec in self.inputs}
        self._output_names = [spec.name for spec in self.outputs]
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @property
    def compiled_model(self) -> Any:
        """The underlying ov.CompiledModel, for callers that want its properties."""
        return self._compiled

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
        with self._lock:
            request = self._idle.pop() if self._idle else self._compiled.create_infer_request()
        try:
            # share_inputs avoids copying the batch in; outputs are copied out
            # (the default) because the request's buffers are reused next call.
            results = request.infer(feeds, share_inputs=True).to_tuple()
        except RuntimeError as error:
            message = _first_line(error)
            if "ParameterMismatch" in str(error) or "shape" in message.lower():
                raise InvalidInputError(f"{self.path}: the model rejected its input ({message})") from None
            raise ArtforgeError(f"{self.path}: inference failed ({message})") from None
        finally:
            with self._lock:
                self._idle.append(request)
        return dict(zip(self._output_names, results, strict=True))
