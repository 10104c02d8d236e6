"""Arguments of `artforge build-engine`, kept apart from artforge/export/tensorrt.py.

The CLI parser is built for every artforge command, so this module holds
only argparse definitions and a requirements check; the builder (onnx,
onnxruntime) is imported once TensorRT and a GPU are known to be present. On a machine without them the
command ends with one sentence (exit 2), before any slow import.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from artforge.errors import ModelLoadError

# Mirrors of artforge.export.tensorrt's defaults (importing it here would load onnx for every command);
# tests/test_tensorrt.py checks that they agree.
PRECISIONS = ("fp16", "fp32", "int8")
INSTANCE_NORM_MODES = ("auto", "native", "decomposed")
DEFAULT_WORKSPACE_MB = 4096


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `artforge build-engine`."""
    parser.add_argument("name", help="model name in the repository")
    parser.add_argument("--repo", type=Path, required=True, help="model repository folder")
    parser.add_argument("--version", help="version folder to build (default: the latest)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16",
                        help="engine precision (default fp16; int8 needs a QDQ model or --calibration)")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="int8: folder of representative images for the entropy calibrator")
    parser.add_argument("--calibration-cache", type=Path, default=None,
                        help="int8: calibration cache file (default: <version>/calibration.cache)")
    parser.add_argument("--max-batch", type=_positive, default=None,
                        help="largest batch the engine accepts (default: config.pbtxt's max_batch_size)")
    parser.add_argument("--opt-batch", type=_positive, default=None,
                        help="batch the engine is tuned for (default: 1 for stylizers, else min(8, max))")
    parser.add_argument("--min-side", type=_positive, default=None,
                        help="stylizers: smallest H and W (default: the model's minimum)")
    parser.add_argument("--opt-side", type=_positive, default=None,
                        help="stylizers: H and W the engine is tuned for (default 512)")
    parser.add_argument("--max-side", type=_positive, default=None, help="stylizers: largest H and W (default 1024)")
    parser.add_argument("--workspace-mb", type=_positive, default=DEFAULT_WORKSPACE_MB,
                        help=f"builder workspace limit in MiB (default {DEFAULT_WORKSPACE_MB})")
    parser.add_argument("--timing-cache", type=Path, default=None,
                        help="timing cache file (default: one per GPU and TensorRT version under "
                             "$ARTFORGE_CACHE_DIR/tensorrt)")
    parser.add_argument("--instance-norm", choices=INSTANCE_NORM_MODES, default="auto",
                        help="stylizers: TensorRT's instance norm layer, the decomposed form, or auto "
                             "(build both, keep the faster; default)")
    parser.add_argument("--rebuild-stale", action="store_true",
                        help="keep an existing engine that is still current; rebuild it only when stale")


def run_from_args(args: argparse.Namespace) -> int:
    """Check for TensorRT and a GPU, then build; errors are artforge errors with one sentence."""
    from artforge.runtime.backends.tensorrt_backend import missing_requirements

    missing = missing_requirements()
    if missing:
        raise ModelLoadError(f"build-engine needs TensorRT and a CUDA GPU, and {missing}")
    from artforge.export.tensorrt import build_from_args

    return build_from_args(args)
