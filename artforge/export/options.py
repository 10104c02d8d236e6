"""Option names, choices and defaults of `artforge export`, `quantize` and `build-engine`.

Plain Python (no torch, onnx, onnxruntime or tensorrt): the implementations
(onnx_export.py, precision.py, tensorrt.py) and the command line
(artforge/cli/export.py) import these, so each default is written once and
`artforge --help` stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from artforge import contract
from artforge.errors import InvalidInputError

# ------------------------------------------------------------------ export
# 18 is the lowest opset the dynamo exporter implements natively, and old
# enough for the TensorRT and OpenVINO parsers artforge targets.
DEFAULT_OPSET = 18
MIN_OPSET = 18

# --------------------------------------------- precision variants (quantize)
VARIANT_PRECISIONS = contract.VARIANT_PRECISIONS
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_METHOD = "minmax"
# int8 activations are symmetric signed by default: TensorRT only accepts
# zero-point-0 int8 Q/DQ, so one artifact then serves every backend; uint8
# (asymmetric) is ONNX Runtime's classic CPU pairing and keeps one more bit
# of range for post-ReLU tensors.
ACTIVATION_TYPES = ("int8", "uint8")
DEFAULT_ACTIVATION_TYPE = "int8"
DEFAULT_CALIBRATION_COUNT = 200
DEFAULT_EVALUATION_COUNT = 100
DEFAULT_CALIBRATION_SIZE = 256
DEFAULT_AUTO_EXCLUDE = 3

# ------------------------------------------------- TensorRT (build-engine)
ENGINE_PRECISIONS = contract.ENGINE_PRECISIONS
DEFAULT_ENGINE_PRECISION = "fp16"
INSTANCE_NORM_MODES = ("auto", "native", "decomposed")
DEFAULT_INSTANCE_NORM = "auto"
DEFAULT_WORKSPACE_MB = 4096
DEFAULT_OPT_SIDE = 512
DEFAULT_MAX_SIDE = 1024
#: opt batch of the fixed-size kinds (served through a batcher); stylizers are tuned for one image
DEFAULT_OPT_BATCH = 8


@dataclass(frozen=True)
class Thresholds:
    """The least accuracy a variant must keep against its fp32 source; each applies to one kind."""

    min_top1_agreement: float = 0.95  # classifier: share of images whose top-1 label is unchanged
    max_prob_diff: float = 0.25  # classifier: largest change of any class probability
    min_psnr: float = 30.0  # stylizer: mean PSNR (dB) of the variant's outputs against fp32's
    min_ssim: float = 0.90  # stylizer: mean SSIM
    max_mae: float = 2.0  # generator: mean absolute pixel difference in uint8 levels

    def __post_init__(self) -> None:
        for key in ("min_top1_agreement", "max_prob_diff", "min_ssim"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise InvalidInputError(f"threshold {key} must be a number from 0 to 1, got {value!r}")
        for key in ("min_psnr", "max_mae"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InvalidInputError(f"threshold {key} must be a non-negative number, got {value!r}")

    def for_kind(self, kind: str) -> dict[str, float]:
        keys = {contract.CLASSIFIER: ("min_top1_agreement", "max_prob_diff"),
                contract.STYLIZER: ("min_psnr", "min_ssim"), contract.GENERATOR: ("max_mae",)}[kind]
        return {key: float(getattr(self, key)) for key in keys}


def parse_exclude(text: str | None) -> tuple[tuple[str, ...], int]:
    """`a,b,auto:2` -> (("a", "b"), 2); bare `auto` means DEFAULT_AUTO_EXCLUDE layers."""
    names, auto = [], 0
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        if item == "auto" or item.startswith("auto:"):
            count = item.partition(":")[2] or str(DEFAULT_AUTO_EXCLUDE)
            if not count.isdigit() or int(count) < 1:
                raise InvalidInputError(f"--exclude {item!r} is not allowed; use auto or auto:N with N a positive "
                                        "whole number")
            auto = int(count)
        else:
            names.append(item)
    return tuple(names), auto


def parse_precisions(text: str | None) -> list[str]:
    """`--precision fp16,int8` of `artforge export` -> ["fp16", "int8"] (fp32 is always exported)."""
    items = [p.strip() for p in (text or "").split(",") if p.strip() and p.strip() != "fp32"]
    bad = [p for p in items if p not in VARIANT_PRECISIONS]
    if bad:
        raise InvalidInputError(f"--precision {', '.join(bad)} is not supported; use fp16, int8 or both "
                                "(comma-separated)")
    return list(dict.fromkeys(items))
