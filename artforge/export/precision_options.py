"""Options of `artforge quantize` and `artforge export --precision`: names, defaults, thresholds, argparse.

Plain Python (no onnx, onnxruntime or torch), so the CLI can build its parser
cheaply; artforge.export.precision does the work.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artforge import contract
from artforge.errors import InvalidInputError

PRECISIONS = ("fp16", "int8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# int8 activations are symmetric signed by default: TensorRT only accepts
# zero-point-0 int8 Q/DQ, so one artifact then serves every backend; uint8
# (asymmetric) is ONNX Runtime's classic CPU pairing and keeps one more bit
# of range for post-ReLU tensors.
ACTIVATION_TYPES = ("int8", "uint8")
DEFAULT_CALIBRATION_COUNT = 200
DEFAULT_EVALUATION_COUNT = 100
DEFAULT_CALIBRATION_SIZE = 256
DEFAULT_AUTO_EXCLUDE = 3


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


def add_variant_arguments(parser: argparse.ArgumentParser) -> None:
    """The calibration, exclusion and threshold options (shared by `quantize` and `export --precision`)."""
    defaults = Thresholds()
    parser.add_argument("--calibration", type=Path, help="folder of images to calibrate int8 activations on "
                        "(classifiers, stylizers; generators use seeded latents)")
    parser.add_argument("--held-out", type=Path, help="folder of images to measure accuracy on "
                        "(default: the calibration folder)")
    parser.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default="minmax",
                        help="how activation ranges are chosen (default minmax)")
    parser.add_argument("--calibration-count", type=int, default=DEFAULT_CALIBRATION_COUNT,
                        help=f"calibration images or latents, at most (default {DEFAULT_CALIBRATION_COUNT})")
    parser.add_argument("--calibration-size", type=int, default=DEFAULT_CALIBRATION_SIZE,
                        help=f"stylizer calibration/evaluation side in pixels (default {DEFAULT_CALIBRATION_SIZE})")
    parser.add_argument("--activations", choices=ACTIVATION_TYPES, default="int8",
                        help="int8 activation type: int8 symmetric (default; TensorRT needs it) or uint8")
    parser.add_argument("--exclude", default=None, metavar="NODE,...|auto[:N]",
                        help="layers to leave in float, by node name, and/or auto[:N] for the N most "
                             f"sensitive ones by measured error (default N {DEFAULT_AUTO_EXCLUDE})")
    parser.add_argument("--min-top1-agreement", type=float, default=defaults.min_top1_agreement,
                        help=f"classifier: least top-1 agreement with fp32 (default {defaults.min_top1_agreement})")
    parser.add_argument("--max-prob-diff", type=float, default=defaults.max_prob_diff,
                        help=f"classifier: largest probability difference (default {defaults.max_prob_diff})")
    parser.add_argument("--min-psnr", type=float, default=defaults.min_psnr,
                        help=f"stylizer: least mean PSNR in dB (default {defaults.min_psnr})")
    parser.add_argument("--min-ssim", type=float, default=defaults.min_ssim,
                        help=f"stylizer: least mean SSIM (default {defaults.min_ssim})")
    parser.add_argument("--max-mae", type=float, default=defaults.max_mae,
                        help=f"generator: largest mean absolute difference in levels (default {defaults.max_mae})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `artforge quantize`."""
    parser.add_argument("model", help="name of the fp32 model in the repository")
    parser.add_argument("--repo", type=Path, required=True, help="model repository folder")
    parser.add_argument("--precision", required=True, choices=PRECISIONS, help="variant to make")
    parser.add_argument("--version", default=None, help="source version (default: the latest)")
    parser.add_argument("--name", default=None, help="variant's model name (default: <model>_<precision>)")
    parser.add_argument("--variant-version", type=int, default=None,
                        help="variant's version (default: one more than its highest)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing variant version")
    add_variant_arguments(parser)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    exclude, auto = parse_exclude(args.exclude)
    thresholds = Thresholds(min_top1_agreement=args.min_top1_agreement, max_prob_diff=args.max_prob_diff,
                            min_psnr=args.min_psnr, min_ssim=args.min_ssim, max_mae=args.max_mae)
    return dict(calibration=args.calibration, held_out=args.held_out, calibration_method=args.calibration_method,
                calibration_count=args.calibration_count, calibration_size=args.calibration_size,
                activation_type=args.activations, exclude=exclude, auto_exclude=auto, thresholds=thresholds)


def run_from_args(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """`artforge quantize` from parsed arguments."""
    from artforge.export.precision import make_variant

    return make_variant(args.repo, args.model, args.precision, version=args.version, variant=args.name,
                        variant_version=args.variant_version, overwrite=args.overwrite, **_options(args))


def parse_precisions(text: str | None) -> list[str]:
    """`--precision fp16,int8` of `artforge export` -> ["fp16", "int8"] (fp32 is always exported)."""
    items = [p.strip() for p in (text or "").split(",") if p.strip() and p.strip() != "fp32"]
    bad = [p for p in items if p not in PRECISIONS]
    if bad:
        raise InvalidInputError(f"--precision {', '.join(bad)} is not supported; use fp16, int8 or both "
                                "(comma-separated)")
    return list(dict.fromkeys(items))


def variants_from_args(args: argparse.Namespace, exported: Path) -> list[Path]:
    """After `artforge export ... --precision P`: make each variant of the model just exported."""
    from artforge.export.precision import make_variant

    repo, name, version = exported.parents[2], exported.parent.parent.name, int(exported.parent.name)
    paths = []
    for precision in parse_precisions(getattr(args, "precision", None)):
        path, _ = make_variant(repo, name, precision, version=version, **_options(args))
        paths.append(path)
    return paths
