"""Each shipped zoo model: artforge's runtime against PyTorch eager, same inputs, one run.

Both sides do the same work: uint8 NHWC pixels in, the contract's outputs back
(PyTorch runs the export wrapper, which is what the ONNX graph was verified
against). Writes the `runtime` section of benchmarks/RESULTS.md.

    python benchmarks/bench_runtime.py [--repo zoo/repository] [--checkpoints zoo/checkpoints] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, measure, median_ms, percentile, write_section  # noqa: E402

from artforge.export.onnx_export import load_run  # noqa: E402
from artforge.runtime import Repository  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def cases(kind: str, meta, quick: bool) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    if kind == "classifier":
        s = meta.input_size
        batches = (1, 8) if quick else (1, 16)
        return [(f"{s}² batch {n}", rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)) for n in batches]
    if kind == "generator":
        batches = (1, 16) if quick else (1, 64)
        return [(f"batch {n}", rng.standard_normal((n, meta.latent_size), dtype=np.float32)) for n in batches]
    sizes = ((256, 1), (256, 4)) if quick else ((256, 1), (256, 4), (512, 1))
    return [(f"{s}² batch {n}", rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)) for s, n in sizes]


def compare(model, reference, batch: np.ndarray) -> tuple[list[float], list[float], float]:
    """Timings of PyTorch eager and artforge on the same batch, and their largest output difference."""
    feed = {model.metadata.input_name: batch}
    tensor = torch.from_numpy(batch)
    with torch.inference_mode():
        t_torch = measure(lambda: reference(tensor))
        expected = reference(tensor).numpy()
    t_rt = measure(lambda: model.infer(feed))
    got = model.infer(feed)[model.metadata.output_name]
    return t_torch, t_rt, float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "zoo" / "repository")
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "zoo" / "checkpoints")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller cases")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    repo = Repository(args.repo)
    rows = []
    for name in repo.names():
        model = repo.load(name)
        reference = load_run(args.checkpoints / f"{name}.pt").wrapper
        for label, batch in cases(model.kind, model.metadata, args.quick):
            t_torch, t_rt, diff = compare(model, reference, batch)
            row = (name, model.kind, label, median_ms(t_torch), median_ms(t_rt), percentile(t_rt, 90) * 1000,
                   diff, model.backend_name)
            rows.append(row)
            print(f"{name:16} {label:16} torch {row[3]:8.1f} ms  artforge {row[4]:8.1f} ms  x{row[3] / row[4]:.2f}",
                  flush=True)
    lines = [
        "## Runtime vs PyTorch eager (each zoo model)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}; torch {torch.__version__} with {threads} threads.",
        "Both sides take the contract's tensors (uint8 NHWC images or float latents) and return its outputs;",
        "PyTorch runs the export wrapper the ONNX graph was verified against. Times are per batch.",
        "",
        "| model | kind | input | PyTorch eager p50 ms | artforge p50 ms | artforge p90 ms | speed-up | max abs diff "
        "| backend |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    lines += [f"| {n} | {k} | {c} | {t:.1f} | {r:.1f} | {r90:.1f} | {t / r:.2f}× | {d:.3g} | {b} |"
              for n, k, c, t, r, r90, d, b in rows]
    write_section("runtime", "\n".join(lines))
    print("wrote benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
