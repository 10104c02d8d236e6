"""`artforge export`, `quantize` and `build-engine`: from a training run to a repository model, its
reduced-precision variants and its TensorRT engine.

Names, choices and defaults come from artforge/export/options.py (plain
Python); torch, onnx, onnxruntime and tensorrt are imported when a command runs,
so `quantize` works without torch and `build-engine` on a machine without
TensorRT ends with one sentence before any slow import.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from artforge.cli.args import add_command, add_model_version, add_repository, positive_int, repository_path
from artforge.errors import ModelLoadError
from artforge.export.options import (
    ACTIVATION_TYPES,
    CALIBRATION_METHODS,
    DEFAULT_ACTIVATION_TYPE,
    DEFAULT_AUTO_EXCLUDE,
    DEFAULT_CALIBRATION_COUNT,
    DEFAULT_CALIBRATION_METHOD,
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_ENGINE_PRECISION,
    DEFAULT_INSTANCE_NORM,
    DEFAULT_MAX_SIDE,
    DEFAULT_OPSET,
    DEFAULT_OPT_BATCH,
    DEFAULT_OPT_SIDE,
    DEFAULT_WORKSPACE_MB,
    ENGINE_PRECISIONS,
    INSTANCE_NORM_MODES,
    VARIANT_PRECISIONS,
    Thresholds,
    parse_exclude,
    parse_precisions,
)


def add_commands(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "export", "export a trained run to ONNX in a model repository (verified)",
                         run_export)
    # Not dest "run": that is the command's function (add_command's set_defaults), which it would overwrite.
    parser.add_argument("run_folder", type=Path, metavar="RUN", help="training run folder holding model.pt")
    add_repository(parser, "model repository folder, created if missing")
    parser.add_argument("--name", help="model name in the repository (default: the run folder's name)")
    add_model_version(parser, "version number to write (default: one more than the highest existing)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    parser.add_argument("--precision", default=None, metavar="fp16|int8[,...]",
                        help="after the fp32 export, also make these variants as <name>_<precision> "
                             "(see `artforge quantize`)")
    _add_variant_options(parser)

    parser = add_command(commands, "quantize",
                         "make an fp16 or int8 variant of a repository model, measured against it", run_quantize)
    parser.add_argument("model", help="name of the fp32 model in the repository")
    add_repository(parser)
    parser.add_argument("--precision", required=True, choices=VARIANT_PRECISIONS, help="variant to make")
    add_model_version(parser, "source version (default: the latest)")
    parser.add_argument("--name", default=None, help="variant's model name (default: <model>_<precision>)")
    parser.add_argument("--variant-version", type=positive_int, default=None, metavar="N",
                        help="variant's version (default: one more than its highest)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing variant version")
    _add_variant_options(parser)

    parser = add_command(commands, "build-engine",
                         "build a TensorRT engine (model.plan) for a repository model (GPU)", run_build_engine)
    parser.add_argument("name", help="model name in the repository")
    add_repository(parser)
    add_model_version(parser, "version to build (default: the latest)")
    parser.add_argument("--precision", choices=ENGINE_PRECISIONS, default=DEFAULT_ENGINE_PRECISION,
                        help="engine precision (int8 needs a QDQ model or --calibration)")
    parser.add_argument("--calibration", type=Path, default=None, metavar="DIR",
                        help="int8: folder of representative images for the entropy calibrator")
    parser.add_argument("--calibration-cache", type=Path, default=None,
                        help="int8: calibration cache file (default: <version>/calibration.cache)")
    parser.add_argument("--max-batch", type=positive_int, default=None, metavar="N",
                        help="largest batch the engine accepts (default: config.pbtxt's max_batch_size)")
    parser.add_argument("--opt-batch", type=positive_int, default=None, metavar="N",
                        help=f"batch the engine is tuned for (default: 1 for stylizers, else "
                             f"min({DEFAULT_OPT_BATCH}, max))")
    parser.add_argument("--min-side", type=positive_int, default=None, metavar="PX",
                        help="stylizers: smallest H and W (default: the model's minimum)")
    parser.add_argument("--opt-side", type=positive_int, default=None, metavar="PX",
                        help=f"stylizers: H and W the engine is tuned for (default: {DEFAULT_OPT_SIDE})")
    parser.add_argument("--max-side", type=positive_int, default=None, metavar="PX",
                        help=f"stylizers: largest H and W (default: {DEFAULT_MAX_SIDE})")
    parser.add_argument("--workspace-mb", type=positive_int, default=DEFAULT_WORKSPACE_MB, metavar="MIB",
                        help="builder workspace limit in MiB")
    parser.add_argument("--timing-cache", type=Path, default=None,
                        help="timing cache file (default: one per GPU and TensorRT version under "
                             "$ARTFORGE_CACHE_DIR/tensorrt)")
    parser.add_argument("--instance-norm", choices=INSTANCE_NORM_MODES, default=DEFAULT_INSTANCE_NORM,
                        help="stylizers: TensorRT's instance norm layer, the decomposed form, or auto "
                             "(build both, keep the faster)")
    parser.add_argument("--rebuild-stale", action="store_true",
                        help="keep an existing engine that is still current; rebuild it only when stale")


def _add_variant_options(parser: argparse.ArgumentParser) -> None:
    """The calibration, exclusion and threshold options (shared by `quantize` and `export --precision`)."""
    defaults = Thresholds()
    group = parser.add_argument_group("precision variants (fp16, int8)")
    group.add_argument("--calibration", type=Path, metavar="DIR", help="folder of images to calibrate int8 "
                       "activations on (classifiers, stylizers; generators use seeded latents)")
    group.add_argument("--held-out", type=Path, metavar="DIR", help="folder of images to measure accuracy on "
                       "(default: the calibration folder)")
    group.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default=DEFAULT_CALIBRATION_METHOD,
                       help="how activation ranges are chosen")
    group.add_argument("--calibration-count", type=positive_int, default=DEFAULT_CALIBRATION_COUNT, metavar="N",
                       help="calibration images or latents, at most")
    group.add_argument("--calibration-size", type=positive_int, default=DEFAULT_CALIBRATION_SIZE, metavar="PX",
                       help="stylizer calibration/evaluation side in pixels")
    group.add_argument("--activations", choices=ACTIVATION_TYPES, default=DEFAULT_ACTIVATION_TYPE,
                       help="int8 activation type: int8 symmetric (TensorRT needs it) or uint8")
    group.add_argument("--exclude", default=None, metavar="NODE,...|auto[:N]",
                       help="layers to leave in float, by node name, and/or auto[:N] for the N most "
                            f"sensitive ones by measured error (N: {DEFAULT_AUTO_EXCLUDE} unless given)")
    group.add_argument("--min-top1-agreement", type=float, default=defaults.min_top1_agreement,
                       help="classifier: least top-1 agreement with fp32")
    group.add_argument("--max-prob-diff", type=float, default=defaults.max_prob_diff,
                       help="classifier: largest probability difference")
    group.add_argument("--min-psnr", type=float, default=defaults.min_psnr, help="stylizer: least mean PSNR in dB")
    group.add_argument("--min-ssim", type=float, default=defaults.min_ssim, help="stylizer: least mean SSIM")
    group.add_argument("--max-mae", type=float, default=defaults.max_mae,
                       help="generator: largest mean absolute difference in levels")


def _variant_options(args: argparse.Namespace) -> dict[str, Any]:
    """make_variant's keyword arguments from the variant options, checked."""
    exclude, auto = parse_exclude(args.exclude)
    thresholds = Thresholds(min_top1_agreement=args.min_top1_agreement, max_prob_diff=args.max_prob_diff,
                            min_psnr=args.min_psnr, min_ssim=args.min_ssim, max_mae=args.max_mae)
    return dict(calibration=args.calibration, held_out=args.held_out, calibration_method=args.calibration_method,
                calibration_count=args.calibration_count, calibration_size=args.calibration_size,
                activation_type=args.activations, exclude=exclude, auto_exclude=auto, thresholds=thresholds)


# ---------------------------------------------------------------------- export
def export_from_args(args: argparse.Namespace) -> Path:
    """`artforge export`: the run exported, verified and written, then each --precision variant made of it.

    Returns the written model.onnx. Bad options fail before the slow export.
    """
    from artforge.export.onnx_export import export_run

    precisions = parse_precisions(args.precision)
    variant_options = _variant_options(args)
    path = export_run(args.run_folder, repository_path(args), name=args.name, version=args.version, opset=args.opset,
                      overwrite=args.overwrite)
    if precisions:
        from artforge.export.precision import make_variant

        repo, name, version = path.parents[2], path.parent.parent.name, int(path.parent.name)
        for precision in precisions:
            make_variant(repo, name, precision, version=version, **variant_options)
    return path


def run_export(args: argparse.Namespace) -> int:
    print(f"exported: {export_from_args(args)}")
    return 0


# -------------------------------------------------------------------- quantize
def run_quantize(args: argparse.Namespace) -> int:
    from artforge.export.precision import make_variant

    path, report = make_variant(repository_path(args), args.model, args.precision, version=args.version,
                                variant=args.name, variant_version=args.variant_version, overwrite=args.overwrite,
                                **_variant_options(args))
    print(f"{report['precision']} variant: {path} (accuracy report: {path.parent / 'accuracy.json'})")
    return 0


# ---------------------------------------------------------------- build-engine
def run_build_engine(args: argparse.Namespace) -> int:
    """Check for TensorRT and a GPU, then build; errors are artforge errors with one sentence."""
    from artforge.runtime.backends.tensorrt_backend import missing_requirements

    missing = missing_requirements()
    if missing:
        raise ModelLoadError(f"build-engine needs TensorRT and a CUDA GPU, and {missing}")
    from artforge.export.tensorrt import BuildOptions, build_engine

    options = BuildOptions(precision=args.precision, calibration=args.calibration,
                           calibration_cache=args.calibration_cache, max_batch=args.max_batch,
                           opt_batch=args.opt_batch, min_side=args.min_side, opt_side=args.opt_side,
                           max_side=args.max_side, workspace_mb=args.workspace_mb, timing_cache=args.timing_cache,
                           instance_norm=args.instance_norm, rebuild_stale=args.rebuild_stale)
    build_engine(repository_path(args), args.name, args.version, options)
    return 0
