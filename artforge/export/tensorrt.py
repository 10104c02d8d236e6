"""`artforge build-engine`: a repository's model.onnx -> a checked TensorRT engine (model.plan).

Steps, for <repo>/<name>/<version>/model.onnx:

1. one optimisation profile from the model's metadata (compute_profile: a pure
   function): classifier and generator vary the batch only; a stylizer also
   varies H and W between --min-side and --max-side, in multiples of its
   size_multiple, tuned for --opt-side;
2. for stylizers, instance normalisation is built two ways, TensorRT's own
   layer ("native") and a decomposition into ReduceMean/Sub/Mul/Add/Sqrt/Div
   (decompose_instance_norm, checked against ONNX Runtime in the tests),
   because which one is faster depends on the TensorRT version and GPU;
   "auto" builds both, times them on the opt shape and keeps the faster;
3. the kept engine is compared with ONNX Runtime (CPU) on seeded inputs at
   the profile's min, opt and max shapes (compare_outputs: pure numpy,
   tolerances by precision and output dtype); an engine that disagrees is
   refused with ParityError and nothing is written;
4. model.plan and model.plan.json (what the engine was built for and the ONNX
   metadata_props, see runtime/backends/tensorrt_backend.py) are written
   atomically beside model.onnx.

Builder timings are kept in a timing cache file per GPU and TensorRT version
(timing_cache_path), so rebuilding a model, or building one that shares
layers with another, skips most kernel timing.

int8: a model holding QuantizeLinear/DequantizeLinear nodes is built with
explicit quantization (its own scales); otherwise an entropy calibrator
(IInt8EntropyCalibrator2) reads --calibration DIR, preprocessed exactly like
runtime inputs (calibration_batches), and its result is kept in a calibration
cache file so the next build skips it.

Everything touching tensorrt or CUDA is imported inside functions; on a
machine without them the CLI stops with one sentence (artforge/cli/export.py).
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from artforge import contract
from artforge.batch.plan import IMAGE_SUFFIXES
from artforge.errors import InvalidInputError, ModelLoadError, NotFoundError, ParityError
from artforge.export.options import (
    DEFAULT_ENGINE_PRECISION,
    DEFAULT_INSTANCE_NORM,
    DEFAULT_MAX_SIDE,
    DEFAULT_OPT_BATCH,
    DEFAULT_OPT_SIDE,
    DEFAULT_WORKSPACE_MB,
    ENGINE_PRECISIONS,
    INSTANCE_NORM_MODES,
)
from artforge.files import write_bytes_atomic
from artforge.runtime.backends.tensorrt_backend import (
    PLAN_FILE,
    PLAN_FORMAT,
    Environment,
    file_sha256,
    plan_meta_path,
    read_plan_metadata,
    stale_reasons,
)

Log = Callable[[str], None]

#: images read for int8 calibration at most, and per calibration batch
CALIBRATION_IMAGES = 512
CALIBRATION_BATCH = 8
CALIBRATION_CACHE = "calibration.cache"
#: timed launches per engine variant on the opt shape (after warm-up)
TIMING_RUNS = 20
WARMUP_RUNS = 3


# ---------------------------------------------------------------- profiles
@dataclass(frozen=True)
class ShapeRange:
    """One input's optimisation-profile shapes."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def as_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _check_count(value: int | None, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInputError(f"{what} must be a positive integer, got {value!r}")


def compute_profile(meta: contract.ModelMetadata, input_shape: Sequence[int | None], *,
                    default_max_batch: int, max_batch: int | None = None, opt_batch: int | None = None,
                    min_side: int | None = None, opt_side: int | None = None,
                    max_side: int | None = None) -> dict[str, ShapeRange]:
    """The optimisation profile {input name: ShapeRange} for a model of `meta.kind`.

    input_shape is the ONNX input's shape (None where dynamic); a fixed batch
    in the graph wins over max_batch. default_max_batch is the repository's
    max_batch_size. Side options apply to stylizers only and must be
    multiples of the stylizer's size_multiple.
    """
    for value, what in ((max_batch, "--max-batch"), (opt_batch, "--opt-batch"), (min_side, "--min-side"),
                        (opt_side, "--opt-side"), (max_side, "--max-side"), (default_max_batch, "max_batch_size")):
        _check_count(value, what)
    kind = meta.kind
    if kind != contract.STYLIZER and any(v is not None for v in (min_side, opt_side, max_side)):
        raise InvalidInputError(f"--min-side, --opt-side and --max-side apply to stylizers only; "
                                f"this model is a {kind}")
    shape = list(input_shape)
    fixed_batch = shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None
    if fixed_batch is not None:
        if max_batch not in (None, fixed_batch):
            raise InvalidInputError(f"the graph's batch is fixed at {fixed_batch}, so --max-batch {max_batch} "
                                    "cannot apply")
        low_batch = opt_b = high_batch = fixed_batch
    else:
        high_batch = max_batch or default_max_batch
        default_opt = 1 if kind == contract.STYLIZER else min(DEFAULT_OPT_BATCH, high_batch)
        opt_b = opt_batch or default_opt
        if opt_b > high_batch:
            raise InvalidInputError(f"--opt-batch {opt_b} is above the maximum batch {high_batch}")
        low_batch = 1

    rest: tuple[int, ...]
    if kind == contract.CLASSIFIER:
        side = meta.classifier_size
        rest = (side, side, 3)
        return {meta.input_name: ShapeRange((low_batch, *rest), (opt_b, *rest), (high_batch, *rest))}
    if kind == contract.GENERATOR:
        rest = (meta.generator_latent_size,)
        return {meta.input_name: ShapeRange((low_batch, *rest), (opt_b, *rest), (high_batch, *rest))}

    multiple = max(1, meta.size_multiple)
    floor = _round_up(max(meta.min_size, multiple), multiple)
    for value, what in ((min_side, "--min-side"), (opt_side, "--opt-side"), (max_side, "--max-side")):
        if value is not None and value % multiple:
            raise InvalidInputError(f"{what} {value} is not a multiple of this stylizer's size multiple {multiple}")
    low = min_side if min_side is not None else floor
    if low < floor:
        raise InvalidInputError(f"--min-side {low} is below this stylizer's smallest side {floor}")
    high = max_side if max_side is not None else max(low, DEFAULT_MAX_SIDE // multiple * multiple)
    opt = opt_side if opt_side is not None else min(max(low, _round_up(DEFAULT_OPT_SIDE, multiple)), high)
    if not low <= opt <= high:
        raise InvalidInputError(f"sides must satisfy min <= opt <= max; got min {low}, opt {opt}, max {high}")
    return {meta.input_name: ShapeRange((low_batch, low, low, 3), (opt_b, opt, opt, 3), (high_batch, high, high, 3))}


# ----------------------------------------------------------- timing cache
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def timing_cache_path(environment: Environment, root: Path | None = None) -> Path:
    """Where the builder's timing cache for this GPU model and TensorRT version lives.

    Timings are only valid for one GPU and one TensorRT version, so the file
    name carries both; root defaults to $ARTFORGE_CACHE_DIR/tensorrt.
    """
    if root is None:
        from artforge.runtime.backends.auto import cache_dir

        root = cache_dir() / "tensorrt"
    capability = environment.compute_capability.replace(".", "")
    return Path(root) / (f"timing-{_slug(environment.gpu_name)}-sm{capability}-"
                         f"trt{_slug(environment.tensorrt_version)}.cache")


# --------------------------------------------------- instance normalisation
def has_op(model: onnx.ModelProto, *op_types: str) -> bool:
    return any(node.op_type in op_types for node in model.graph.node)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def decompose_instance_norm(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` with every InstanceNormalization replaced by plain arithmetic, and how many.

    y = scale * (x - mean) / sqrt(var + epsilon) + bias, with mean and the
    (biased) variance over the spatial axes per sample and channel, as
    InstanceNormalization defines it. Variance is computed from the centred
    values (two passes), which is what keeps fp16 engines accurate.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type for v in (*inferred.graph.value_info, *inferred.graph.input)}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    opset = _opset(out)
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    count = 0
    for node in out.graph.node:
        if node.op_type != "InstanceNormalization" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        x, scale, bias = node.input
        tensor_type = types.get(x)
        if tensor_type is None or not tensor_type.HasField("shape"):
            raise ModelLoadError(f"InstanceNormalization node {node.name or node.output[0]!r}: the rank of its "
                                 "input is unknown, so it cannot be decomposed")
        rank = len(tensor_type.shape.dim)
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type or onnx.TensorProto.FLOAT)
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        prefix = f"{node.name or node.output[0]}/decomposed"
        axes = list(range(2, rank))

        def name(part: str, prefix: str = prefix) -> str:
            return f"{prefix}/{part}"

        def reduce_mean(src: str, dst: str, axes: list[int] = axes,
                        name: Callable[[str], str] = name) -> onnx.NodeProto:
            # Opset 18 moved ReduceMean's axes from an attribute to an input.
            if opset >= 18:
                return helper.make_node("ReduceMean", [src, name("axes")], [dst], keepdims=1, name=dst)
            return helper.make_node("ReduceMean", [src], [dst], axes=axes, keepdims=1, name=dst)

        if opset >= 18:
            initializers.append(numpy_helper.from_array(np.array(axes, dtype=np.int64), name("axes")))
        initializers += [
            numpy_helper.from_array(np.array(epsilon, dtype=dtype), name("epsilon")),
            # [C] -> [C, 1, ..., 1] broadcasts against [N, C, spatial...]
            numpy_helper.from_array(np.array([-1] + [1] * (rank - 2), dtype=np.int64), name("channel_shape")),
        ]
        nodes += [
            reduce_mean(x, name("mean")),
            helper.make_node("Sub", [x, name("mean")], [name("centred")], name=name("centred")),
            helper.make_node("Mul", [name("centred"), name("centred")], [name("squared")], name=name("squared")),
            reduce_mean(name("squared"), name("variance")),
            helper.make_node("Add", [name("variance"), name("epsilon")], [name("shifted")], name=name("shifted")),
            helper.make_node("Sqrt", [name("shifted")], [name("std")], name=name("std")),
            helper.make_node("Div", [name("centred"), name("std")], [name("normalised")], name=name("normalised")),
            helper.make_node("Reshape", [scale, name("channel_shape")], [name("scale")], name=name("scale")),
            helper.make_node("Reshape", [bias, name("channel_shape")], [name("bias")], name=name("bias")),
            helper.make_node("Mul", [name("normalised"), name("scale")], [name("scaled")], name=name("scaled")),
            helper.make_node("Add", [name("scaled"), name("bias")], [node.output[0]], name=name("output")),
        ]
        count += 1
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(initializers)
    return out, count


# ------------------------------------------------------------------ parity
@dataclass(frozen=True)
class Tolerance:
    """What an engine may differ from ONNX Runtime by, per output dtype.

    uint8 images: a pixel is off when any channel differs by more than
    `levels`; at most `off_fraction` of pixels may be off and no value may
    differ by more than `max_levels`. Float outputs (probabilities): every
    value within `atol`, and the top-1 class the same on at least
    `top1_agreement` of the rows whose top-2 margin is clear (> 2 * atol).
    """

    levels: int
    off_fraction: float
    max_levels: int
    atol: float
    top1_agreement: float

    def describe(self, dtype: np.dtype) -> str:
        if dtype == np.uint8:
            return (f"<= {self.levels} levels off on >= {1 - self.off_fraction:.1%} of pixels, "
                    f"none over {self.max_levels}")
        return f"|diff| <= {self.atol:g}, top-1 agreement >= {self.top1_agreement:.0%}"


# Judgement, not measurement (no GPU was available when they were set; see
# docs/tensorrt.md): fp32 (TF32 off) should match ONNX Runtime to rounding,
# like the export check; fp16 rounds every activation to 11 bits, which
# normalisation layers amplify into a level or two on a few pixels; int8
# trades visible error for speed and is checked for gross failure only.
TOLERANCES = {
    "fp32": Tolerance(levels=1, off_fraction=0.001, max_levels=8, atol=1e-3, top1_agreement=1.0),
    "fp16": Tolerance(levels=2, off_fraction=0.01, max_levels=48, atol=1e-2, top1_agreement=0.99),
    "int8": Tolerance(levels=8, off_fraction=0.05, max_levels=255, atol=5e-2, top1_agreement=0.9),
}


@dataclass(frozen=True)
class OutputComparison:
    """One output of one input shape, engine against ONNX Runtime."""

    name: str
    shape: tuple[int, ...]
    max_abs_diff: float
    #: uint8: fraction of pixels off; float: fraction of values outside atol
    off_fraction: float
    #: float outputs of rank 2: fraction of clear rows whose top-1 agrees (None otherwise)
    top1_agreement: float | None
    passed: bool


def compare_outputs(name: str, expected: np.ndarray, got: np.ndarray, tolerance: Tolerance) -> OutputComparison:
    """Measure one output against its reference and judge it by `tolerance` (pure numpy)."""
    if got.shape != expected.shape or got.dtype != expected.dtype:
        raise ParityError(f"the engine's output '{name}' is {got.dtype} {list(got.shape)} where ONNX Runtime "
                          f"gives {expected.dtype} {list(expected.shape)}")
    shape = tuple(expected.shape)
    if expected.dtype == np.uint8:
        diff = np.abs(expected.astype(np.int16) - got.astype(np.int16))
        max_diff = float(diff.max(initial=0))
        off = (diff > tolerance.levels).any(axis=-1) if diff.ndim else diff > tolerance.levels
        fraction = float(off.mean()) if off.size else 0.0
        passed = fraction <= tolerance.off_fraction + 1e-12 and max_diff <= tolerance.max_levels
        return OutputComparison(name, shape, max_diff, fraction, None, passed)
    reference, result = expected.astype(np.float64), got.astype(np.float64)
    diff = np.abs(reference - result)
    max_diff = float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0))
    fraction = float((~(diff <= tolerance.atol)).mean()) if diff.size else 0.0
    agreement = None
    passed = max_diff <= tolerance.atol
    if reference.ndim == 2 and reference.shape[1] > 1 and reference.shape[0]:
        # Rows whose two best classes are within noise of each other may
        # legitimately flip; judging top-1 on them would fail good engines.
        top2 = np.sort(reference, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 2 * tolerance.atol
        if clear.any():
            same = reference.argmax(axis=1) == result.argmax(axis=1)
            agreement = float(same[clear].mean())
            passed = passed and agreement >= tolerance.top1_agreement - 1e-12
    return OutputComparison(name, shape, max_diff, fraction, agreement, passed)


def profile_shapes(profile: Mapping[str, ShapeRange]) -> list[tuple[str, dict[str, tuple[int, ...]]]]:
    """(label, {input: shape}) at the profile's min, opt and max, without repeats."""
    cases: list[tuple[str, dict[str, tuple[int, ...]]]] = []
    for label in ("min", "opt", "max"):
        shapes = {name: tuple(getattr(r, label)) for name, r in profile.items()}
        if all(shapes != seen for _, seen in cases):
            cases.append((label, shapes))
    return cases


def seeded_feeds(shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, np.dtype],
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Random uint8 images / standard-normal floats of the given shapes, the same for the same seed."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shape in shapes.items():
        dtype = np.dtype(dtypes[name])
        if dtype == np.uint8:
            feeds[name] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


# ------------------------------------------------------------- calibration
def calibration_files(folder: Path, limit: int = CALIBRATION_IMAGES) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFoundError(f"calibration folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidInputError(f"calibration folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files[:limit]


def calibration_batches(meta: contract.ModelMetadata, shape: Sequence[int], folder: Path | None = None,
                        limit: int = CALIBRATION_IMAGES, seed: int = 0) -> Iterator[np.ndarray]:
    """Full calibration batches of `shape` [B, ...]: the contract input the runtime would feed.

    Classifier: decode and centre-crop to S (the runtime's classifier_batch);
    stylizer: decode, shorter side to the profile's opt side, centre square.
    Generator: seeded standard-normal latents (its input is never an image).
    Unreadable files are skipped; a short last batch is dropped because the
    calibrator's batch size is fixed.
    """
    batch, rest = int(shape[0]), tuple(int(d) for d in shape[1:])
    if meta.kind == contract.GENERATOR:
        rng = np.random.default_rng(seed)
        for _ in range(max(1, limit // batch)):
            yield rng.standard_normal((batch, *rest)).astype(np.float32)
        return
    if folder is None:
        raise InvalidInputError(f"int8 calibration of a {meta.kind} needs --calibration DIR (a folder of images)")
    from artforge.runtime.pipeline import classifier_batch  # OpenCV: only when calibrating

    side = rest[0]
    rows: list[np.ndarray] = []
    for path in calibration_files(folder, limit):
        try:
            rows.append(classifier_batch([path], side)[0])
        except (InvalidInputError, NotFoundError, OSError):
            continue
        if len(rows) == batch:
            yield np.stack(rows)
            rows = []


# ---------------------------------------------------------- the GPU build
@dataclass
class BuildOptions:
    precision: str = DEFAULT_ENGINE_PRECISION
    calibration: Path | None = None
    calibration_cache: Path | None = None
    max_batch: int | None = None
    opt_batch: int | None = None
    min_side: int | None = None
    opt_side: int | None = None
    max_side: int | None = None
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    timing_cache: Path | None = None
    instance_norm: str = DEFAULT_INSTANCE_NORM
    rebuild_stale: bool = False

    def validate(self) -> None:
        if self.precision not in ENGINE_PRECISIONS:
            raise InvalidInputError(f"precision {self.precision!r} is not one of {', '.join(ENGINE_PRECISIONS)}")
        if self.instance_norm not in INSTANCE_NORM_MODES:
            raise InvalidInputError(f"--instance-norm {self.instance_norm!r} is not one of "
                                    f"{', '.join(INSTANCE_NORM_MODES)}")
        _check_count(self.workspace_mb, "--workspace-mb")


def instance_norm_variants(mode: str, has_instance_norm: bool) -> list[str]:
    """Which engines to build: "native" (the graph as it is) and/or "decomposed" (decompose_instance_norm)."""
    if not has_instance_norm or mode == "native":
        return ["native"]
    return ["native", "decomposed"] if mode == "auto" else ["decomposed"]


def calibration_cache_for(cache: Path, variant: str) -> Path:
    """The int8 calibration cache of one variant; the decomposed graph has other tensor names, so its own file."""
    cache = Path(cache)
    return cache if variant == "native" else cache.with_name(f"{cache.stem}.{variant}{cache.suffix or '.cache'}")


@dataclass
class _Variant:
    label: str
    plan: bytes
    timing_ms: float | None = None


def _major(version: str) -> int:
    head = str(version).split(".")[0]
    return int(head) if head.isdigit() else 0


def _make_calibrator(trt: Any, batches: Iterator[np.ndarray], batch_size: int, cache: Path) -> Any:
    """An IInt8EntropyCalibrator2 that feeds `batches` and keeps TensorRT's result in `cache`."""
    from artforge.runtime.backends.tensorrt_backend import _Buffer, cuda_check, cudart

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = batches
            self._device = _Buffer()
            #: an error raised inside get_batch; TensorRT cannot carry it out of the build, so build_engine does
            self.error: BaseException | None = None

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.error is not None:
                return None
            try:
                batch = next(self._batches, None)
                if batch is None:
                    return None  # no more data: TensorRT computes the scales now
                batch = np.ascontiguousarray(batch)
                self._device.ensure(batch.nbytes)
                runtime = cudart()
                cuda_check(runtime.cudaMemcpy(self._device.pointer, batch.ctypes.data, batch.nbytes,
                                              runtime.cudaMemcpyKind.cudaMemcpyHostToDevice), "calibration copy")
            except Exception as error:  # re-raised by build_engine once the build returns
                self.error = error
                return None
            return [self._device.pointer]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            write_bytes_atomic(cache, bytes(data))

        def close(self) -> None:
            self._device.free()

    return Calibrator()


def _build_plan(onnx_bytes: bytes, source: str, profile: Mapping[str, ShapeRange], options: BuildOptions,
                timing_cache: bytes, calibrator: Any | None, calibration_shape: Sequence[int] | None,
                explicit_int8: bool) -> tuple[bytes, bytes]:
    """(serialized engine, updated timing cache) for one ONNX graph."""
    import tensorrt as trt

    from artforge.runtime.backends.tensorrt_backend import trt_logger

    logger = trt_logger()
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch; 8.x needs the flag.
    flags = 0 if _major(trt.__version__) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        first = str(parser.get_error(0)).strip().splitlines()[0] if parser.num_errors else "no details"
        raise ModelLoadError(f"TensorRT's ONNX parser rejected {source} ({first})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if options.precision == "fp32":
        # TF32 is on by default on Ampere and newer; "fp32" promises fp32 results.
        config.clear_flag(trt.BuilderFlag.TF32)
    if options.precision in ("fp16", "int8"):
        # int8 also allows fp16 so layers left unquantized do not fall back to fp32.
        config.set_flag(trt.BuilderFlag.FP16)
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    trt_profile = builder.create_optimization_profile()
    for name, shapes in profile.items():
        trt_profile.set_shape(name, shapes.min, shapes.opt, shapes.max)
    config.add_optimization_profile(trt_profile)
    if options.precision == "int8" and not explicit_int8:
        assert calibrator is not None and calibration_shape is not None
        config.int8_calibrator = calibrator
        # Calibration runs one fixed shape: the calibrator's batch at the opt size.
        calibration_profile = builder.create_optimization_profile()
        for name in profile:
            calibration_profile.set_shape(name, calibration_shape, calibration_shape, calibration_shape)
        config.set_calibration_profile(calibration_profile)
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelLoadError(f"TensorRT could not build an engine from {source} (its messages above say why)")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


def _median_ms(runner: Any, feeds: dict[str, np.ndarray]) -> float:
    for _ in range(WARMUP_RUNS):
        runner.run(feeds)
    times = []
    for _ in range(TIMING_RUNS):
        started = time.perf_counter()
        runner.run(feeds)  # includes both copies, which are the same for every variant
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _ort_session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def check_parity(runner: Any, model: onnx.ModelProto, profile: Mapping[str, ShapeRange], precision: str,
                 seed: int = 0) -> dict[str, Any]:
    """Engine vs ONNX Runtime (CPU) at min/opt/max; the report, or ParityError when any output fails."""
    tolerance = TOLERANCES[precision]
    session = _ort_session(model)
    names = [o.name for o in session.get_outputs()]
    cases = []
    for index, (label, shapes) in enumerate(profile_shapes(profile)):
        feeds = seeded_feeds(shapes, runner.dtypes, seed + index)
        expected = dict(zip(names, session.run(names, feeds), strict=True))
        got = runner.run(feeds)
        for name in names:
            result = compare_outputs(name, expected[name], got[name], tolerance)
            cases.append({"profile_shape": label, "input_shapes": {k: list(v) for k, v in shapes.items()},
                          **asdict(result)})
    report = {"reference": "onnxruntime CPUExecutionProvider", "seed": seed, "cases": cases,
              "tolerance": {dtype: tolerance.describe(np.dtype(dtype)) for dtype in ("uint8", "float32")},
              "passed": all(c["passed"] for c in cases)}
    if not report["passed"]:
        worst = next(c for c in cases if not c["passed"])
        top1 = "" if worst["top1_agreement"] is None else f", top-1 agreement {worst['top1_agreement']:.0%}"
        raise ParityError(
            f"the {precision} engine disagrees with ONNX Runtime on '{worst['name']}' at the profile's "
            f"{worst['profile_shape']} shape {worst['input_shapes']} (largest difference {worst['max_abs_diff']:.3g}, "
            f"{worst['off_fraction']:.2%} off{top1}; allowed: "
            f"{tolerance.describe(np.dtype(expected[worst['name']].dtype))}), so it was not written")
    return report


def _plan_metadata(engine_bytes: bytes, environment: Environment, precision: str,
                   profile: Mapping[str, ShapeRange], onnx_sha256: str, props: dict[str, str], runner: Any,
                   extra: dict[str, Any]) -> dict[str, Any]:
    import hashlib

    return {
        "format": PLAN_FORMAT, **environment.as_dict(), "precision": precision,
        "profiles": [{name: shapes.as_dict() for name, shapes in profile.items()}],
        "onnx_file": "model.onnx", "onnx_sha256": onnx_sha256,
        "plan_sha256": hashlib.sha256(engine_bytes).hexdigest(), "plan_bytes": len(engine_bytes),
        "inputs": [s.as_dict() for s in runner.inputs], "outputs": [s.as_dict() for s in runner.outputs],
        "metadata_props": props, "built_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), **extra,
    }


def build_engine(repo: Path | str, name: str, version: int | str | None = None,
                 options: BuildOptions | None = None, log: Log | None = print) -> Path:
    """Build, check and write <repo>/<name>/<version>/model.plan (+ .json); returns the plan's path.

    With options.rebuild_stale an existing engine that is still current is
    kept as it is. Raises ModelLoadError when TensorRT or a GPU is missing,
    ParityError when the engine disagrees with ONNX Runtime.
    """
    from artforge.export.repository import MAX_BATCH_SIZE
    from artforge.runtime.backends.tensorrt_backend import EngineRunner, cuda_environment, missing_requirements
    from artforge.runtime.repository import Repository

    options = options or BuildOptions()
    options.validate()
    say = log or (lambda _line: None)
    repository = Repository(repo)
    folder = repository.version_path(name, version)
    onnx_path = folder / "model.onnx"
    if not onnx_path.is_file():
        raise NotFoundError(f"{folder} has no model.onnx to build an engine from")
    missing = missing_requirements()
    if missing:
        raise ModelLoadError(f"build-engine needs TensorRT and a CUDA GPU, and {missing}")
    environment = cuda_environment()
    assert environment is not None  # missing_requirements() checked it
    if _major(environment.tensorrt_version) >= 11 and options.precision != "fp32":
        # TensorRT 11 builds strongly typed networks only: the FP16/INT8 builder
        # flags this builder relies on are gone, so precision would silently be fp32.
        raise InvalidInputError(f"TensorRT {environment.tensorrt_version} builds strongly typed engines only, so "
                                f"--precision {options.precision} needs TensorRT 8.6 to 10.x; use --precision fp32")

    try:
        model = onnx.load(str(onnx_path))
    except Exception as error:  # protobuf decode errors have several types
        raise ModelLoadError(f"{onnx_path} cannot be read as ONNX ({type(error).__name__})") from None
    props = {p.key: p.value for p in model.metadata_props}
    meta = contract.ModelMetadata.from_props(props, source=str(onnx_path))
    onnx_sha256 = file_sha256(onnx_path)
    plan_path = folder / PLAN_FILE

    if options.rebuild_stale and plan_path.is_file():
        try:
            reasons = stale_reasons(read_plan_metadata(plan_path), environment, onnx_sha256)
        except ModelLoadError as error:
            reasons = [str(error)]
        if not reasons:
            say(f"{plan_path} is up to date ({environment.gpu_name}, TensorRT {environment.tensorrt_version})")
            return plan_path
        say(f"rebuilding {plan_path}: {'; '.join(reasons)}")

    input_value = model.graph.input[0]
    input_shape = [d.dim_value if d.HasField("dim_value") else None for d in input_value.type.tensor_type.shape.dim]
    profile = compute_profile(meta, input_shape, default_max_batch=repository.max_batch_size(name)
                              or MAX_BATCH_SIZE[meta.kind], max_batch=options.max_batch, opt_batch=options.opt_batch,
                              min_side=options.min_side, opt_side=options.opt_side, max_side=options.max_side)
    say("profile: " + ", ".join(f"{n} min {list(r.min)} opt {list(r.opt)} max {list(r.max)}"
                                 for n, r in profile.items()))

    import tensorrt as trt

    explicit_int8 = has_op(model, "QuantizeLinear", "DequantizeLinear")
    calibration_shape, calibration_info = None, None
    calibration_cache = options.calibration_cache or folder / CALIBRATION_CACHE
    if options.precision == "int8" and not explicit_int8:
        calibration_shape = (CALIBRATION_BATCH, *profile[meta.input_name].opt[1:])
        if options.calibration is not None:
            calibration_files(options.calibration)  # fail on a bad folder before the slow build
        calibration_info = {"method": "IInt8EntropyCalibrator2", "cache": str(calibration_cache),
                            "images": str(options.calibration) if options.calibration else None,
                            "batch": list(calibration_shape)}
    elif options.precision == "int8":
        calibration_info = {"method": "explicit (QDQ nodes in model.onnx)"}

    def calibrator_for(label: str) -> Any | None:
        if calibration_shape is None:
            return None
        cache = calibration_cache_for(calibration_cache, label)
        batches = calibration_batches(meta, calibration_shape, options.calibration)
        return _make_calibrator(trt, batches, CALIBRATION_BATCH, cache)

    has_instance_norm = has_op(model, "InstanceNormalization")
    variants = instance_norm_variants(options.instance_norm, has_instance_norm)
    if options.instance_norm == "decomposed" and not has_instance_norm:
        say("this model has no InstanceNormalization; building it as it is")
    if calibration_shape is not None and options.calibration is None and meta.kind != contract.GENERATOR:
        # Without images only a variant whose calibration cache exists can be calibrated.
        usable = [v for v in variants if calibration_cache_for(calibration_cache, v).is_file()]
        if not usable:
            raise InvalidInputError(f"int8 for {name} needs a QDQ-quantized model.onnx, a calibration cache "
                                    f"({calibration_cache_for(calibration_cache, variants[0])}) or --calibration DIR "
                                    "(a folder of representative images)")
        if usable != variants:
            say(f"no calibration cache for the {', '.join(v for v in variants if v not in usable)} form and no "
                "--calibration DIR, so it is not built")
        variants = usable

    cache_path = options.timing_cache or timing_cache_path(environment)
    timing_cache = cache_path.read_bytes() if cache_path.is_file() else b""
    opt_feeds_shapes = {n: r.opt for n, r in profile.items()}
    built: list[_Variant] = []
    for label in variants:
        graph = model if label == "native" else decompose_instance_norm(model)[0]
        started = time.perf_counter()
        say(f"building the {options.precision} engine ({label} instance norm)..." if has_instance_norm
            else f"building the {options.precision} engine...")
        calibrator = calibrator_for(label)
        try:
            plan, timing_cache = _build_plan(graph.SerializeToString(), str(onnx_path), profile, options,
                                             timing_cache, calibrator, calibration_shape, explicit_int8)
        finally:
            if calibrator is not None:
                calibrator.close()
        if calibrator is not None and calibrator.error is not None:
            # Calibration stopped early, so the scales (and the engine) are not to be trusted.
            raise calibrator.error
        variant = _Variant(label, plan)
        if len(variants) > 1:
            runner = EngineRunner(plan, f"{plan_path} ({label})", contexts=1, graphs=False)
            try:
                variant.timing_ms = _median_ms(runner, seeded_feeds(opt_feeds_shapes, runner.dtypes))
            finally:
                runner.close()
            say(f"  {label}: built in {time.perf_counter() - started:.0f} s, {variant.timing_ms:.2f} ms "
                f"per batch at {list(next(iter(opt_feeds_shapes.values())))}")
        built.append(variant)
    write_bytes_atomic(cache_path, timing_cache)  # kept even if parity fails: the timings are still valid
    chosen = min(built, key=lambda v: v.timing_ms if v.timing_ms is not None else 0.0)

    runner = EngineRunner(chosen.plan, str(plan_path), contexts=1, graphs=False)
    try:
        parity = check_parity(runner, model, profile, options.precision)
        extra = {
            "instance_norm": {"mode": options.instance_norm, "present": has_instance_norm, "choice": chosen.label,
                              "timings_ms": {v.label: v.timing_ms for v in built if v.timing_ms is not None},
                              "timed_on": {n: list(s) for n, s in opt_feeds_shapes.items()}},
            "workspace_mb": options.workspace_mb, "timing_cache": str(cache_path), "parity": parity,
        }
        if calibration_info:
            extra["calibration"] = calibration_info
        metadata = _plan_metadata(chosen.plan, environment, options.precision, profile, onnx_sha256, props, runner,
                                  extra)
    finally:
        runner.close()
    checked = ", ".join(dict.fromkeys(case["profile_shape"] for case in parity["cases"]))
    say(f"parity vs ONNX Runtime at the profile's {checked} shapes: pass")
    # The engine first, its description last: the runtime checks the plan's
    # sha256 against the JSON, so a reader in between refuses, never misreads.
    write_bytes_atomic(plan_path, chosen.plan)
    write_bytes_atomic(plan_meta_path(plan_path), (json.dumps(metadata, indent=2) + "\n").encode())
    say(f"wrote {plan_path} ({len(chosen.plan) / 2**20:.1f} MiB, {options.precision}, "
        f"instance norm: {chosen.label if has_instance_norm else 'none'})")
    return plan_path
