"""Every export verifies itself before anything is written.

Two checks, in the spirit of Polygraphy's compare workflow:
1. the graph is valid ONNX and follows the artifact contract (names, dtypes, ranks);
2. ONNX Runtime (CPU) and the PyTorch wrapper agree on several inputs, within
   the contract's tolerance: uint8 images at most one level off on at least
   99.9% of pixels, probabilities within 1e-4.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
import torch

from artforge import contract
from artforge.errors import ParityError

# Tolerances of the contract. One level of uint8 is what a rounding boundary
# costs when two backends differ in the last float bit, so it is allowed; the
# 0.1% of pixels that may exceed it covers rare near-ties amplified by
# normalisation layers, not systematic error.
UINT8_MAX_LEVELS = 1
UINT8_MIN_AGREEMENT = 0.999
PROBABILITY_ATOL = 1e-4

_ONNX_DTYPES = {onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.FLOAT: np.float32}
# What the contract promises at the graph boundary: (input dtype, rank), (output dtype, rank).
_BOUNDARY = {
    contract.CLASSIFIER: ((onnx.TensorProto.UINT8, 4), (onnx.TensorProto.FLOAT, 2)),
    contract.GENERATOR: ((onnx.TensorProto.FLOAT, 2), (onnx.TensorProto.UINT8, 4)),
    contract.STYLIZER: ((onnx.TensorProto.UINT8, 4), (onnx.TensorProto.UINT8, 4)),
}


@dataclass(frozen=True)
class CaseResult:
    """One input compared between PyTorch and ONNX Runtime."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    max_abs_diff: float
    # uint8 outputs: fraction of pixels with any channel more than one level off;
    # float outputs: fraction of values outside PROBABILITY_ATOL.
    mismatch_fraction: float
    passed: bool


@dataclass(frozen=True)
class ParityReport:
    kind: str
    provider: str
    cases: tuple[CaseResult, ...]
    tolerance: str

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.cases), default=0.0)

    @property
    def mismatch_fraction(self) -> float:
        return max((c.mismatch_fraction for c in self.cases), default=0.0)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases)

    def summary(self) -> str:
        unit = "in probability" if self.kind == contract.CLASSIFIER else "uint8 levels"
        return (f"parity vs PyTorch on {len(self.cases)} inputs ({self.provider}): largest difference "
                f"{self.max_abs_diff:.3g} {unit}, worst mismatch fraction {self.mismatch_fraction:.4%} "
                f"[{'pass' if self.passed else 'FAIL'}; tolerance: {self.tolerance}]")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "provider": self.provider, "tolerance": self.tolerance,
                "max_abs_diff": self.max_abs_diff, "mismatch_fraction": self.mismatch_fraction,
                "passed": self.passed, "cases": [asdict(c) for c in self.cases]}


def check_graph(model: onnx.ModelProto, kind: str) -> None:
    """onnx.checker plus the contract's graph boundary (names, dtypes, ranks)."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ParityError(f"the exported {kind} is not a valid ONNX model: {str(exc).splitlines()[0]}") from exc
    want_in, want_out = contract.IO_NAMES[kind]
    got_in = tuple(i.name for i in model.graph.input)
    got_out = tuple(o.name for o in model.graph.output)
    if got_in != want_in or got_out != want_out:
        raise ParityError(f"the exported {kind} has inputs {got_in} and outputs {got_out}; "
                          f"the contract needs {want_in} -> {want_out}")
    for value, (dtype, rank) in zip((model.graph.input[0], model.graph.output[0]), _BOUNDARY[kind], strict=True):
        t = value.type.tensor_type
        if t.elem_type != dtype or len(t.shape.dim) != rank:
            raise ParityError(
                f"the exported {kind}'s '{value.name}' is {onnx.TensorProto.DataType.Name(t.elem_type)} rank "
                f"{len(t.shape.dim)}; the contract needs {onnx.TensorProto.DataType.Name(dtype)} rank {rank}")


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def parity_inputs(kind: str, metadata: contract.ModelMetadata, seed: int = 0) -> list[np.ndarray]:
    """Seeded inputs covering batch sizes above 1 and, for stylizers, several H, W."""
    rng = np.random.default_rng(seed)
    if kind == contract.CLASSIFIER:
        s = int(metadata.input_size or 0)
        gray = np.full((1, s, s, 3), 128, np.uint8)
        return [rng.integers(0, 256, (1, s, s, 3), dtype=np.uint8),
                rng.integers(0, 256, (3, s, s, 3), dtype=np.uint8), gray]
    if kind == contract.GENERATOR:
        z = int(metadata.latent_size or 0)
        return [rng.standard_normal((n, z)).astype(np.float32) for n in (1, 4, 1)]
    if kind == contract.STYLIZER:
        m = max(1, metadata.size_multiple)
        shapes = [(1, 64, 64), (1, 96, 128), (2, 72, 56)]
        return [rng.integers(0, 256, (n, _round_up(h, m), _round_up(w, m), 3), dtype=np.uint8)
                for n, h, w in shapes]
    raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(contract.KINDS)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _session(model: onnx.ModelProto, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Other work shares the machine; verification inputs are small.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _compare(kind: str, array: np.ndarray, expected: np.ndarray, got: np.ndarray) -> CaseResult:
    if got.shape != expected.shape or got.dtype != expected.dtype:
        raise ParityError(f"the exported {kind} returned {got.dtype} {list(got.shape)} where PyTorch returned "
                          f"{expected.dtype} {list(expected.shape)}")
    if expected.dtype == np.uint8:
        diff = np.abs(expected.astype(np.int16) - got.astype(np.int16))
        max_diff = float(diff.max(initial=0))
        off = (diff > UINT8_MAX_LEVELS).any(axis=-1)  # a pixel is off if any channel is
        fraction = float(off.mean()) if off.size else 0.0
        passed = fraction <= 1.0 - UINT8_MIN_AGREEMENT + 1e-12
    else:
        diff = np.abs(expected.astype(np.float64) - got.astype(np.float64))
        max_diff = float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0))
        fraction = float((~(diff <= PROBABILITY_ATOL)).mean()) if diff.size else 0.0
        passed = max_diff <= PROBABILITY_ATOL
    return CaseResult(tuple(array.shape), tuple(got.shape), max_diff, fraction, passed)


def compare(wrapper: torch.nn.Module, model: onnx.ModelProto, kind: str, inputs: Sequence[np.ndarray],
            threads: int = 2) -> ParityReport:
    """Run each input through the PyTorch wrapper and ONNX Runtime; measure, do not judge."""
    try:
        session = _session(model, threads)
    except Exception as exc:  # onnxruntime raises its own exception types, all "cannot load"
        raise ParityError(f"ONNX Runtime cannot load the exported {kind}: {_first_line(exc)}") from exc
    input_name = session.get_inputs()[0].name
    cases = []
    wrapper.eval()
    with torch.inference_mode():
        for array in inputs:
            expected = wrapper(torch.from_numpy(array)).numpy()
            try:
                (got,) = session.run(None, {input_name: array})
            except Exception as exc:
                raise ParityError(f"ONNX Runtime fails to run the exported {kind} on input {list(array.shape)}: "
                                  f"{_first_line(exc)}") from exc
            cases.append(_compare(kind, array, expected, got))
    tolerance = (f"max |diff| <= {PROBABILITY_ATOL:g}" if kind == contract.CLASSIFIER else
                 f"<= {UINT8_MAX_LEVELS} level off on >= {UINT8_MIN_AGREEMENT:.1%} of pixels")
    return ParityReport(kind=kind, provider="CPUExecutionProvider", cases=tuple(cases), tolerance=tolerance)


def verify_model(wrapper: torch.nn.Module, model: onnx.ModelProto, metadata: contract.ModelMetadata, *,
                 seed: int = 0, threads: int = 2, log: Callable[[str], None] | None = print) -> ParityReport:
    """Check the graph and its parity with `wrapper`; raise ParityError if it disagrees."""
    kind = metadata.kind
    check_graph(model, kind)
    report = compare(wrapper, model, kind, parity_inputs(kind, metadata, seed), threads)
    if log is not None:
        log(report.summary())
    if not report.passed:
        worst = max(report.cases, key=lambda c: (not c.passed, c.mismatch_fraction, c.max_abs_diff))
        raise ParityError(
            f"the exported {kind} disagrees with PyTorch on input {list(worst.input_shape)} (largest difference "
            f"{worst.max_abs_diff:.3g}, {worst.mismatch_fraction:.2%} mismatched; allowed: {report.tolerance}), "
            "so nothing was written")
    return report


def check_tile_graph(model: onnx.ModelProto) -> None:
    """onnx.checker plus the tile graph's boundary names (contract.TILE_IO)."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ParityError(f"the exported tile graph is not a valid ONNX model: {str(exc).splitlines()[0]}") from exc
    got = (tuple(i.name for i in model.graph.input), tuple(o.name for o in model.graph.output))
    if got != contract.TILE_IO:
        raise ParityError(f"the exported tile graph has inputs {got[0]} and outputs {got[1]}; "
                          f"the contract needs {contract.TILE_IO[0]} -> {contract.TILE_IO[1]}")


#: the tile graph's moments: float32 sums over up to a few thousand pixels, so a relative tolerance
MOMENTS_RTOL = 1e-3


def verify_tile_graph(wrapper: torch.nn.Module, tile_wrapper: torch.nn.Module, model: onnx.ModelProto,
                      metadata: contract.ModelMetadata, *, seed: int = 0, threads: int = 2,
                      log: Callable[[str], None] | None = print) -> ParityReport:
    """The tile graph under ONNX Runtime against its PyTorch wrapper (images and moments), and, with the
    tile's own statistics, against the whole-image wrapper: tiling with given statistics must be the same
    network. Raise ParityError if any disagrees."""
    check_tile_graph(model)
    try:
        session = _session(model, threads)
    except Exception as exc:
        raise ParityError(f"ONNX Runtime cannot load the exported tile graph: {_first_line(exc)}") from exc
    channels = int(tile_wrapper.channels)  # type: ignore[arg-type]  # a plain int attribute; nn.Module's stub says Tensor | Module
    rng = np.random.default_rng(seed)
    cases = []
    with torch.inference_mode():
        for i, image in enumerate(parity_inputs(contract.STYLIZER, metadata, seed)):
            count, height, width = image.shape[:3]
            own = np.full((count, 1), 1.0 if i == 0 else 0.0, np.float32)
            stats = np.stack([rng.normal(0, 1, (count, channels)), rng.uniform(0.5, 4, (count, channels))],
                             axis=1).astype(np.float32)
            region = np.array([[0, height // 2, width // 4, width]] * count, np.int64)
            feeds = {"image": image, "norm_stats": stats, "norm_own": own, "norm_region": region}
            expected = tile_wrapper(*(torch.from_numpy(feeds[name]) for name in contract.TILE_IO[0]))
            try:
                got = session.run(None, feeds)
            except Exception as exc:
                raise ParityError(f"ONNX Runtime fails to run the exported tile graph on input {list(image.shape)}: "
                                  f"{_first_line(exc)}") from exc
            cases.append(_compare(contract.STYLIZER, image, expected[0].numpy(), got[0]))
            if i == 0:  # own statistics: the whole-image network's pixels
                cases.append(_compare(contract.STYLIZER, image, wrapper(torch.from_numpy(image)).numpy(), got[0]))
            want, have = expected[1].numpy().astype(np.float64), got[1].astype(np.float64)
            scale = np.abs(want).max(axis=-1, keepdims=True) + 1e-6  # per layer-quantity row
            worst = float((np.abs(want - have) / scale).max(initial=0.0))
            cases.append(CaseResult(tuple(image.shape), tuple(have.shape), worst, 0.0 if worst <= MOMENTS_RTOL else 1.0,
                                    worst <= MOMENTS_RTOL))
    report = ParityReport(kind=contract.STYLIZER, provider="CPUExecutionProvider", cases=tuple(cases),
                          tolerance=f"images: <= {UINT8_MAX_LEVELS} level off on >= {UINT8_MIN_AGREEMENT:.1%} of "
                                    f"pixels; moments: relative {MOMENTS_RTOL:g}")
    if log is not None:
        log("tile graph " + report.summary())
    if not report.passed:
        raise ParityError(f"the exported tile graph disagrees with PyTorch ({report.summary()}), "
                          "so nothing was written")
    return report
