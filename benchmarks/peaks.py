"""The machine's practical arithmetic peaks: GFLOP/s of a large square matrix product, fp32 and bf16.

Attained throughput in the suite is stated against these: an fp32 run against
the fp32 peak, a bf16 run (OpenVINO's default on CPUs with AVX512-BF16 or
AMX) against the bf16 peak. Each peak is the fastest of the libraries that
can do the product here (numpy and torch for fp32; torch, which runs bf16
through oneDNN, and OpenVINO's bf16 MatMul for bf16).

    python benchmarks/peaks.py [--n 4096]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import measure  # noqa: E402


def _gflops(n: int, runs: dict[str, Callable[[], object]]) -> tuple[float, str]:
    """The best GFLOP/s among runs (each one n x n x n product), and every library's figure."""
    best = {name: min(measure(run, min_runs=3, min_seconds=0.5)) for name, run in runs.items()}
    rates = {name: 2 * n ** 3 / seconds / 1e9 for name, seconds in best.items()}
    name = max(rates, key=lambda k: rates[k])
    return rates[name], ", ".join(f"{k} {v:.0f}" for k, v in rates.items())


def fp32_matmul_peak(n: int = 4096) -> tuple[float, str]:
    """GFLOP/s of the fastest of numpy's and torch's fp32 n x n product, and each one's."""
    import torch

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    ta = torch.from_numpy(a)
    return _gflops(n, {"numpy": lambda: a @ a, "torch": lambda: ta @ ta})


def bf16_matmul_peak(n: int = 4096) -> tuple[float, str] | None:
    """GFLOP/s of the fastest bf16 n x n product (torch; OpenVINO with a bf16 hint where it offers BF16),
    or None where neither computes in bf16 on this CPU."""
    import torch

    a = torch.from_numpy(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32))
    runs: dict[str, Callable[[], object]] = {}
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        ab = a.bfloat16()
        runs["torch bf16"] = lambda: ab @ ab
    try:
        import openvino as ov
        import openvino.opset13 as ops
    except ImportError:
        ov = None
    if ov is not None and "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        x = ops.parameter([n, n], ov.Type.f32)
        model = ov.Model([ops.matmul(x, ops.constant(a.numpy()), False, False)], [x])
        request = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"}).create_infer_request()
        feed = a.numpy()
        runs["OpenVINO bf16 MatMul"] = lambda: request.infer({0: feed})
    return _gflops(n, runs) if runs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    args = parser.parse_args()
    fp32, by = fp32_matmul_peak(args.n)
    print(f"fp32 matmul peak: {fp32:.0f} GFLOP/s ({by})")
    bf16 = bf16_matmul_peak(args.n)
    print("bf16 matmul peak: " + (f"{bf16[0]:.0f} GFLOP/s ({bf16[1]})" if bf16 else "no bf16 arithmetic on this CPU"))


if __name__ == "__main__":
    main()
