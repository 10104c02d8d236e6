"""Reduced-precision variants of each zoo model: speed-up over fp32 next to the accuracy cost.

Makes the fp16 variant and two int8 QDQ variants (signed activations, the
TensorRT-compatible default; unsigned activations, ONNX Runtime CPU's fast
path) of the shipped classifier, stylizer and generator with
`artforge.export.precision.make_variant`, calibrated on crops of the bundled
photos and judged on other crops, then times every variant with artforge's
ONNX Runtime and OpenVINO backends side by side with the fp32 model
(and OpenVINO's bf16, which needs no variant file).

    python benchmarks/bench_precision.py [--quick]

Also run by `benchmarks/bench_suite.py` (its `precision` part). Writes the
`precision` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, measure, percentile, write_section  # noqa: E402

from artforge import contract  # noqa: E402
from artforge.export.options import Thresholds  # noqa: E402
from artforge.export.precision import make_variant  # noqa: E402
from artforge.runtime import Repository  # noqa: E402
from artforge.runtime.backends import available_backends  # noqa: E402
from artforge.zoo.datasets import content_images  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("art_style", "swirl", "abstract_dcgan")
#: (variant suffix, precision, activation type)
VARIANTS = (("fp16", "fp16", "int8"), ("int8", "int8", "int8"), ("int8u", "int8", "uint8"))
#: thresholds loose enough that every variant is kept: the table reports the cost instead of refusing
REPORT_ONLY = Thresholds(min_top1_agreement=0.0, max_prob_diff=1.0, min_psnr=0.0, min_ssim=0.0, max_mae=255.0)


def inputs(kind: str, meta: contract.ModelMetadata) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if kind == contract.CLASSIFIER:
        return "8×224²", rng.integers(0, 256, (8, meta.input_size, meta.input_size, 3), dtype=np.uint8)
    if kind == contract.STYLIZER:
        return "1×512²", rng.integers(0, 256, (1, 512, 512, 3), dtype=np.uint8)
    return "64 latents", rng.standard_normal((64, meta.latent_size), dtype=np.float32)


def accuracy(kind: str, report: dict | None) -> str:
    if report is None:
        return "exact (reference)"
    m = report["evaluation"]["metrics"]
    if kind == contract.CLASSIFIER:
        return f"top-1 agreement {m['top1_agreement'] * 100:.1f} %, max prob diff {m['max_prob_diff']:.3f}"
    if kind == contract.STYLIZER:
        return f"PSNR {m['psnr_db']:.1f} dB (worst {m['min_psnr_db']:.1f}), SSIM {m['ssim']:.3f}"
    return f"mean abs diff {m['mae_levels']:.2f} levels (max {m['max_levels']})"


def timed(repo: Repository, name: str, backend: str, feed: dict[str, np.ndarray], quick: bool) -> float | None:
    try:
        model = repo.load(name, backend=backend)
        times = measure(lambda: model.infer(feed), min_runs=3 if quick else 7, min_seconds=0.5 if quick else 2.0)
    except Exception as exc:  # a backend that cannot run a variant is a result, shown as such
        print(f"  {name} on {backend}: {exc}", flush=True)
        return None
    return percentile(times, 50)


def run(work: Path, quick: bool) -> list[str]:
    repo_path = work / "repo"
    for name in MODELS:
        shutil.copytree(ROOT / "zoo" / "repository" / name, repo_path / name)
    count = 24 if quick else 120
    calibration, held_out = work / "calibration", work / "held-out"
    content_images(calibration, seed=11, count=count, size=256, progress=False)
    content_images(held_out, seed=12, count=12 if quick else 36, size=256, progress=False)

    reports: dict[str, dict] = {}
    for name in MODELS:
        for suffix, precision, activations in VARIANTS:
            print(f"making {name}_{suffix}", flush=True)
            _, reports[f"{name}_{suffix}"] = make_variant(
                repo_path, name, precision, variant=f"{name}_{suffix}", calibration=calibration, held_out=held_out,
                calibration_count=count, activation_type=activations, thresholds=REPORT_ONLY, log=None)

    repo = Repository(repo_path)
    backends = ["onnxruntime"] + (["openvino:fp32"] if "openvino" in available_backends() else [])
    lines = ["| model | input | variant | backend | p50 ms | speed-up vs fp32 on ONNX Runtime | accuracy vs fp32 |",
             "| --- | --- | --- | --- | ---: | ---: | --- |"]
    for name in MODELS:
        meta = repo.load(name, backend="onnxruntime").metadata
        label, batch = inputs(meta.kind, meta)
        feed = {contract.IO_NAMES[meta.kind][0][0]: batch}
        rows = [(name, "fp32", b) for b in backends]
        if "openvino:fp32" in backends:
            rows.append((name, "bf16 (OpenVINO, same file)", "openvino:bf16"))
        rows += [(f"{name}_{suffix}", suffix, b) for suffix, _, _ in VARIANTS for b in backends]
        baseline = None
        for model_name, variant, backend in rows:
            p50 = timed(repo, model_name, backend, feed, quick)
            baseline = baseline or (p50 if backend == "onnxruntime" and variant == "fp32" else None)
            report = reports.get(model_name)
            if variant.startswith("bf16"):
                cost = "measured in docs/decisions.md (at most 2 levels on stylizer pixels)"
            else:
                cost = accuracy(meta.kind, report)
            if p50 is None:
                lines.append(f"| {name} | {label} | {variant} | {backend} | cannot run | — | {cost} |")
                continue
            speedup = f"{baseline / p50:.2f}×" if baseline else "—"
            lines.append(f"| {name} | {label} | {variant} | {backend} | {p50 * 1e3:.1f} | {speedup} | {cost} |")
            print(lines[-1], flush=True)
    return [f"Calibration: {count} random 256² crops of the bundled photos; accuracy measured on "
            f"{12 if quick else 36} other crops (the classifier: agreement with its own fp32 outputs). "
            "`int8` = signed activations (what TensorRT consumes), `int8u` = unsigned activations. "
            "OpenVINO runs the QDQ files with its int8 kernels.", ""] + lines


def section(quick: bool) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="artforge-precision-"))
    try:
        return ["## Precision variants: speed-up against accuracy", "", f"Command: `{command_line()}`  ",
                f"Machine: {machine()}.", ""] + run(work, quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calibration images and runs")
    args = parser.parse_args()
    write_section("precision", "\n".join(section(args.quick)))
    print("wrote benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
