"""ONNX Runtime backend: one InferenceSession per model, CPU or GPU providers.

Why TensorRT's execution provider is never picked by "auto": it builds a
TensorRT engine for every new input shape (minutes for a big network, and a
stylizer sees a new H x W on nearly every request), so it only pays for
fixed-shape serving. Ask for it with "onnxruntime:tensorrt"; engines are
cached under $ARTFORGE_CACHE_DIR (default ~/.cache/artforge).

Memory and threads (measured on art_style 224x224 batch 8, where this backend
once ran 2.5x slower than a plain session; docs/decisions.md, "Backends:
ONNX Runtime sessions"):

- The CPU memory arena is on, so repeated runs reuse their activation
  buffers. Without it every run of a large batch took fresh pages from the
  kernel (13,000 page faults, +39% CPU time at batch 8; +46% wall time for a
  512x512 stylizer). The arena would otherwise keep the peak of the largest
  input a session ever saw, so a run whose inputs hold more than
  RETAIN_PIXELS pixels asks ONNX Runtime to shrink the arena when it ends: a
  session keeps at most what a run of that size needs.
- Intra-op threads do not spin while waiting for work. Spinning lowers the
  latency of one session on an idle machine, but artforge always has other
  work next to it (the image pipeline's decode and encode threads, the other
  models of a server, OpenVINO runs), and the spinning threads of one session
  doubled the CPU time of another run beside them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from artforge.errors import ArtforgeError, InvalidInputError, ModelLoadError
from artforge.runtime.backends.base import Backend, Probe, TensorSpec, batch_pixels

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


#: the most input pixels (batch x height x width) of a run whose activations a session's arena keeps for
#: the next run; a larger run hands its memory back when it ends. 2**19 (512x512 batch 2, 224x224 batch 10)
#: covers the server's usual batches. What a session then keeps was measured as +237 MiB for the zoo's
#: width-1.0 stylizer after 512x512 runs and +94 MiB for art_style after 224x224 batch 8 runs
#: (docs/decisions.md). A server holding many models can lower it with $ARTFORGE_ONNXRUNTIME_RETAIN_PIXELS
#: (0: every run hands its memory back, at the cost of fresh pages on every run).
RETAIN_PIXELS = 1 << 19
ENV_RETAIN_PIXELS = "ARTFORGE_ONNXRUNTIME_RETAIN_PIXELS"


def retain_pixels() -> int:
    """RETAIN_PIXELS, or the non-negative integer in $ARTFORGE_ONNXRUNTIME_RETAIN_PIXELS."""
    value = os.environ.get(ENV_RETAIN_PIXELS, "").strip()
    if not value:
        return RETAIN_PIXELS
    if not value.isdigit():
        raise InvalidInputError(f"{ENV_RETAIN_PIXELS} is {value!r}; use a whole number of pixels (0 or more)")
    return int(value)


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

        self.retain_pixels = retain_pixels()
        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = True  # bounded per run below (_run_options_for)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
        self._shrink_options = ort.RunOptions()
        self._shrink_options.log_severity_level = 4
        if option == "cpu":
            self._shrink_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    @property
    def session(self) -> ort.InferenceSession:
        """The underlying session, for callers that need IO binding or profiling."""
        return self._session

    def _run_options_for(self, feeds: dict[str, np.ndarray]) -> ort.RunOptions:
        """Shrink the arena after a run larger than retain_pixels, so it never keeps that run's peak."""
        pixels = max((batch_pixels(array.shape) for array in feeds.values()), default=0)
        return self._shrink_options if pixels > self.retain_pixels else self._run_options

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            results = self._session.run(self._output_names, feeds, self._run_options_for(feeds))
        except InvalidArgument as error:
            raise InvalidInputError(f"{self.path}: the model rejected its input "
                                    f"({_first_line(error)})") from None
        except Exception as error:
            raise ArtforgeError(f"{self.path}: inference failed ({_first_line(error)})") from None
        return dict(zip(self._output_names, results, strict=True))
