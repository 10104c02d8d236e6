"""Reduced precision on this CPU: every variant on every CPU backend, its speed next to its measured accuracy.

Makes the fp16 variant and two int8 QDQ variants (signed activations, the
TensorRT-compatible default; unsigned activations, ONNX Runtime CPU's fast
path) of the shipped classifier, stylizer and generator with
`artforge.export.precision.make_variant` (what `artforge quantize` runs),
calibrated on crops of the bundled photos and judged on other crops. Then it
runs the fp32 model and every variant through artforge's ONNX Runtime,
OpenVINO fp32 and OpenVINO bf16 backends (bf16 needs no variant file: it is
OpenVINO's default on CPUs with AVX512-BF16 or AMX), and for each cell gives
the p50 latency, the speed-up over the exact reference (the fp32 model on the
fastest fp32 backend) and the accuracy of that cell's outputs against the
fp32 model's on the held-out inputs, measured through that backend (int8 in
OpenVINO is not bit-identical to int8 in ONNX Runtime, nor bf16 to fp32).

    python benchmarks/bench_precision.py [--quick]

Also run by `benchmarks/bench_suite.py` (its `precision` part). Writes the
`precision` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, percentile, write_section  # noqa: E402

from artforge import contract  # noqa: E402
from artforge.export.options import Thresholds  # noqa: E402
from artforge.export.precision import image_batches, latent_batches, list_images, make_variant  # noqa: E402
from artforge.export.precision import measure as precision_measure  # noqa: E402
from artforge.runtime import Repository  # noqa: E402
from artforge.runtime.backends import available_backends  # noqa: E402
from artforge.runtime.backends.openvino_backend import cpu_capabilities  # noqa: E402
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


def accuracy(kind: str, metrics: dict | None) -> str:
    if metrics is None:
        return "exact (reference)"
    m = metrics
    if kind == contract.CLASSIFIER:
        return f"top-1 agreement {m['top1_agreement'] * 100:.1f} %, max prob diff {m['max_prob_diff']:.3f}"
    if kind == contract.STYLIZER:
        return f"PSNR {m['psnr_db']:.1f} dB (worst {m['min_psnr_db']:.1f}), SSIM {m['ssim']:.3f}"
    return f"mean abs diff {m['mae_levels']:.2f} levels (max {m['max_levels']})"


class _AsSession:
    """A loaded model behind the ONNX Runtime session interface that `precision.measure` takes."""

    def __init__(self, model: object) -> None:
        self.model = model

    def run(self, _names: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.model.infer(feeds).values())  # type: ignore[attr-defined]


def timed(repo: Repository, cells: list[tuple[str, str]], feed: dict[str, np.ndarray],
          quick: bool) -> dict[tuple[str, str], float | None]:
    """p50 seconds of each (model, backend) cell, timed interleaved round by round like the suite (drift in
    the machine's speed lands on every cell alike); None for a cell that cannot run here."""
    models = {}
    for name, backend in cells:
        try:
            models[(name, backend)] = repo.load(name, backend=backend)
            models[(name, backend)].infer(feed)
        except Exception as exc:  # a backend that cannot run a variant is a result, shown as such
            print(f"  {name} on {backend}: {exc}", flush=True)
    times: dict[tuple[str, str], list[float]] = {cell: [] for cell in models}
    block_seconds = 0.1 if quick else 0.4
    for _ in range(3 if quick else 6):
        for cell, model in models.items():
            model.infer(feed)  # an untimed opener absorbs the previous cell's idle threads
            block = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                model.infer(feed)
                times[cell].append(time.perf_counter() - t0)
                if time.perf_counter() - block >= block_seconds:
                    break
    return {cell: percentile(times[cell], 50) if cell in times else None for cell in cells}


def held_out_batches(meta: contract.ModelMetadata, held_out: Path, count: int) -> list[np.ndarray]:
    """The inputs accuracy is judged on: held-out photo crops, or the generator's seeded latents."""
    if meta.kind == contract.GENERATOR:
        return latent_batches(meta, 64, seed=12)
    return image_batches(list_images(held_out, "held-out")[:count], meta)


def run(work: Path, quick: bool) -> list[str]:
    repo_path = work / "repo"
    for name in MODELS:
        shutil.copytree(ROOT / "zoo" / "repository" / name, repo_path / name)
    count = 24 if quick else 120
    judged = 12 if quick else 36
    calibration, held_out = work / "calibration", work / "held-out"
    content_images(calibration, seed=11, count=count, size=256, progress=False)
    content_images(held_out, seed=12, count=judged, size=256, progress=False)

    reports: dict[str, dict] = {}
    for name in MODELS:
        for suffix, precision, activations in VARIANTS:
            print(f"making {name}_{suffix}", flush=True)
            _, reports[f"{name}_{suffix}"] = make_variant(
                repo_path, name, precision, variant=f"{name}_{suffix}", calibration=calibration, held_out=held_out,
                calibration_count=count, activation_type=activations, thresholds=REPORT_ONLY, log=None)

    repo = Repository(repo_path)
    backends = ["onnxruntime"]
    if "openvino" in available_backends():
        backends.append("openvino:fp32")
        if "BF16" in cpu_capabilities():
            backends.append("openvino:bf16")
    exact_backends = {"onnxruntime", "openvino:fp32"}
    lines = ["| model | input | variant | backend | p50 ms | speed-up vs exact | accuracy vs fp32, measured on this "
             "backend | `artforge quantize` report (ONNX Runtime) |",
             "| --- | --- | --- | --- | ---: | ---: | --- | --- |"]
    for name in MODELS:
        reference = repo.load(name, backend="onnxruntime")
        meta = reference.metadata
        label, batch = inputs(meta.kind, meta)
        input_name = contract.IO_NAMES[meta.kind][0][0]
        feed = {input_name: batch}
        judge_on = held_out_batches(meta, held_out, judged)
        cells = [(name, "fp32", b) for b in backends] + [
            (f"{name}_{suffix}", suffix, b) for suffix, _, _ in VARIANTS for b in backends]
        timings = timed(repo, [(model_name, b) for model_name, _, b in cells], feed, quick)
        exact = min((p for (m, b), p in timings.items() if m == name and b in exact_backends and p), default=None)
        for model_name, variant, backend in cells:
            p50 = timings[(model_name, backend)]
            metrics = None
            if not (variant == "fp32" and backend in exact_backends) and p50 is not None:
                metrics = precision_measure(meta.kind, _AsSession(reference), _AsSession(repo.load(
                    model_name, backend=backend)), input_name, judge_on)
            cost = accuracy(meta.kind, metrics)
            report = reports.get(model_name)
            quantize = accuracy(meta.kind, report["evaluation"]["metrics"]) if report else "—"
            if p50 is None:
                lines.append(f"| {name} | {label} | {variant} | {backend} | cannot run | — | {cost} | {quantize} |")
                continue
            speedup = f"{exact / p50:.2f}×" if exact else "—"
            lines.append(f"| {name} | {label} | {variant} | {backend} | {p50 * 1e3:.1f} | {speedup} | {cost} "
                         f"| {quantize} |")
            print(lines[-1], flush=True)
    return [f"Calibration: {count} random 256² crops of the bundled photos; accuracy measured on "
            f"{judged} other crops (classifier: agreement with its own fp32 outputs; generator: 64 seeded latents), "
            "each cell through its own backend against the fp32 model on ONNX Runtime. `int8` = signed activations "
            "(what TensorRT consumes), `int8u` = unsigned activations; OpenVINO runs the QDQ files with its int8 "
            "kernels, and `openvino:bf16` runs whatever the file leaves in float in bf16. Speed-up is against the "
            "fp32 model on the faster of the exact backends (ONNX Runtime, OpenVINO fp32).", ""] + lines


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
