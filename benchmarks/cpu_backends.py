"""Side-by-side CPU timings of the zoo models: ONNX Runtime vs OpenVINO fp32 / bf16, and thread counts.

    python benchmarks/cpu_backends.py [--repo zoo/repository] [--seconds 1.0]

Backends run in blocks (one untimed run first, since ONNX Runtime's idle
threads spin after a run and slow whatever runs next), in A B ... B A order,
median per backend. Also prints bf16's error against fp32. Results go in
docs/decisions.md ("Backends: OpenVINO and auto") with the machine they ran on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from artforge.runtime.backends import Backend, OnnxRuntimeBackend, OpenVinoBackend
from artforge.runtime.backends.auto import trial_input
from artforge.runtime.backends.openvino_backend import cpu_capabilities

SHAPES = {"swirl": [256, 512], "mosaic": [512], "art_style": [224], "abstract_dcgan": [1, 64]}


def feeds_for(backend: Backend, size: int) -> dict[str, np.ndarray]:
    feeds = trial_input(backend)
    name, array = next(iter(feeds.items()))
    rng = np.random.default_rng(0)
    if array.ndim == 2:  # generator: size is the batch
        return {name: rng.standard_normal((size, array.shape[1])).astype(np.float32)}
    if backend.inputs[0].shape[1] is None:  # stylizer: size is the side
        return {name: rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)}
    return feeds


def timed(backends: dict[str, Backend], feeds: dict[str, np.ndarray], seconds: float) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in backends}
    for name in backends:  # the OpenVINO backend compiles a static-shape model on a shape's second run
        backends[name].run(feeds)
    for name in [*backends, *reversed(backends)]:
        backends[name].run(feeds)
        start = time.perf_counter()
        while len(times[name]) < 3 or time.perf_counter() - start < seconds / 2:
            t0 = time.perf_counter()
            backends[name].run(feeds)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default="zoo/repository")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"cpus: {cores}, OpenVINO capabilities: {', '.join(cpu_capabilities())}")
    for model, sizes in SHAPES.items():
        path = Path(args.repo) / model / "1" / "model.onnx"
        backends: dict[str, Backend] = {"onnxruntime": OnnxRuntimeBackend(path, option="cpu")}
        for threads in sorted({1, cores}):
            backends[f"onnxruntime t={threads}"] = OnnxRuntimeBackend(path, option="cpu", threads=threads)
        backends["openvino:fp32"] = OpenVinoBackend(path, option="fp32")
        if "BF16" in cpu_capabilities():
            backends["openvino:bf16"] = OpenVinoBackend(path, option="bf16")
        for size in sizes:
            feeds = feeds_for(backends["onnxruntime"], size)
            result = timed(backends, feeds, args.seconds)
            shape = "x".join(map(str, next(iter(feeds.values())).shape))
            cells = ", ".join(f"{name} {ms:.1f} ms" for name, ms in result.items())
            line = f"{model} {shape}: {cells}"
            if "openvino:bf16" in backends:
                ref = next(iter(backends["openvino:fp32"].run(feeds).values())).astype(np.float64)
                low = next(iter(backends["openvino:bf16"].run(feeds).values())).astype(np.float64)
                diff = np.abs(ref - low)
                line += f"; bf16 vs fp32 max |diff| {diff.max():.3g}, mean {diff.mean():.3g}"
                if ref.ndim == 4:
                    line += f", {(diff > 2).mean():.1%} of values off by more than 2"
            print(line, flush=True)


if __name__ == "__main__":
    main()
