"""ONNX Runtime backend: one InferenceSession per model, CPU or GPU providers.

Why TensorRT's execution provider is never picked by "auto": it builds a
TensorRT engine for every new input shape (minutes for a big network, and a
stylizer sees a new H x W on nearly every request), so it only pays for
fixed-shape serving. Ask for it with "onnxruntime:tensorrt"; engines are
cached under $ARTFORGE_CACHE_DIR (default ~/.cache/artforge).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from artforge.errors import ArtforgeError, InvalidInputError, ModelLoadError
from artforge.runtime.backends.base import Backend, Probe, TensorSpec

# Short option names users type, in auto's order of preference.
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_SHORT = {v: k for k, v in PROVIDERS.items()}

_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64), "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int8)": np.dtype(np.int8), "tensor(uint16)": np.dtype(np.uint16),
    "tensor(int16)": np.dtype(np.int16), "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64), "tensor(bool)": np.dtype(np.bool_),
}


def _spec(arg: ort.NodeArg) -> TensorSpec:
    # Symbolic dims come back as strings ("N", "height") or None.
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or ()))
    return TensorSpec(arg.name, _DTYPES.get(arg.type, np.dtype(object)), shape)


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _provider_list(option: str) -> list[str | tuple[str, dict[str, str]]]:
    if option == "tensorrt":
        cache = Path(os.environ.get("ARTFORGE_CACHE_DIR", Path.home() / ".cache" / "artforge")) / "onnxruntime-trt"
        trt = (PROVIDERS["tensorrt"], {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache)})
        return [trt, PROVIDERS["cuda"], PROVIDERS["cpu"]]
    if option == "cuda":
        return [PROVIDERS["cuda"], PROVIDERS["cpu"]]
    return [PROVIDERS["cpu"]]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    artifact = "model.onnx"

    @classmethod
    def probe(cls) -> Probe | None:
        available = ort.get_available_providers()
        if PROVIDERS["cuda"] in available:
            return Probe(20, "cuda", "ONNX Runtime reports CUDAExecutionProvider available")
        return Probe(10, "cpu", "no GPU execution provider in this ONNX Runtime build, so CPUExecutionProvider")

    @classmethod
    def options(cls) -> tuple[str, ...]:
        return tuple(PROVIDERS)

    @classmethod
    def inspect(cls, path: Path) -> OnnxRuntimeBackend:
        return cls(path, option="cpu", threads=1, optimize=False)

    def __init__(self, path: Path, option: str | None = None, threads: int | None = None,
                 reason: str = "", optimize: bool = True) -> None:
        self.path = Path(path)
        forced = option is not None
        if option is None:
            probe = self.probe()
            if probe is None:
                raise ModelLoadError("ONNX Runtime has no usable execution provider on this machine")
            option, reason = probe.option, f"{reason}; {probe.reason}" if reason else probe.reason
        option = _SHORT.get(option, option).lower()
        if option not in PROVIDERS:
            raise InvalidInputError(
                f"unknown ONNX Runtime provider {option!r}; use one of {', '.join(PROVIDERS)}")
        if forced and PROVIDERS[option] not in ort.get_available_providers():
            raise ModelLoadError(
                f"ONNX Runtime provider {option!r} ({PROVIDERS[option]}) is not available in this build; "
                f"available: {', '.join(ort.get_available_providers())}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise InvalidInputError(f"threads must be a positive integer, got {threads!r}")

        options = ort.SessionOptions()
        # The CPU arena keeps the peak of every input shape a session has seen for the process's life (a
        # server that once stylized a 2048x2048 image held 2.7 GB after it); without it freed activations
        # go back to the allocator (0.25 GB after the same request) and latency is unchanged within noise
        # (art_style 224x224 25.6 vs 25.6 ms, mosaic 256x256 162 vs 165 ms; docs/decisions.md).
        options.enable_cpu_mem_arena = False
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                            else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        # 0 lets ONNX Runtime use one thread per physical core, which beats
        # one per logical core for these dense convolution graphs.
        options.intra_op_num_threads = threads or 0
        # We report the provider choice ourselves; ORT's warnings would only
        # repeat it on stderr of every CLI call.
        options.log_severity_level = 3
        self.threads = threads
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=options,
                                                 providers=_provider_list(option))
        except Exception as error:  # ORT raises several pybind types; all mean "cannot load".
            raise ModelLoadError(
                f"{self.path}: ONNX Runtime cannot load this model ({_first_line(error)})") from None

        active = self._session.get_providers()[0]
        if active != PROVIDERS[option]:
            # A GPU build without a usable GPU silently falls back to CPU.
            if forced:
                raise ModelLoadError(f"{self.path}: ONNX Runtime could not start {PROVIDERS[option]} "
                                     f"(it fell back to {active}); check the GPU driver and CUDA libraries")
            reason = f"{PROVIDERS[option]} failed to start, so {active}"
            option = _SHORT.get(active, active)
        self.option = option
        self.reason = reason or f"{PROVIDERS[option]} was asked for"
        self.inputs = tuple(_spec(a) for a in self._session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self._session.get_outputs())
        self._output_names = [o.name for o in self.outputs]
        self.metadata_props = dict(self._session.get_modelmeta().custom_metadata_map)
        # A failing run becomes an exception below; ORT would also log it.
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4

    @property
    def session(self) -> ort.InferenceSession:
        """The underlying session, for callers that need IO binding or profiling."""
        return self._session

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            results = self._session.run(self._output_names, feeds, self._run_options)
        except InvalidArgument as error:
            raise InvalidInputError(f"{self.path}: the model rejected its input "
                                    f"({_first_line(error)})") from None
        except Exception as error:
            raise ArtforgeError(f"{self.path}: inference failed ({_first_line(error)})") from None
        return dict(zip(self._output_names, results, strict=True))
