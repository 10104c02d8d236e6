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
            feed = {model.metadata.input_name: batch}
            with torch.inference_mode():
                tensor = torch.from_numpy(batch)
                t_torch = measure(lambda tensor=tensor: reference(tensor))
            t_rt = measure(lambda feed=feed: model.infer(feed))
            rows.append((name, model.kind, label, median_ms(t_torch), median_ms(t_rt), percentile(t_rt, 90),
                         model.backend_name))
            print(f"{name:16} {label:16} torch {rows[-1][3]:8.1f} ms  artforge {rows[-1][4]:8.1f} ms  "
                  f"x{rows[-1][3] / rows[-1][4]:.2f}", flush=True)
    lines = [
        "## Runtime vs PyTorch eager (each zoo model)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}; torch {torch.__version__} with {threads} threads.",
        "",
        "| model | kind | input | PyTorch eager p50 ms | artforge p50 ms | artforge p90 ms | speed-up | backend |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    lines += [f"| {n} | {k} | {c} | {t:.1f} | {r:.1f} | {r90 * 1000:.1f} | {t / r:.2f}× | {b} |"
              for n, k, c, t, r, r90, b in rows]
    write_section("runtime", "\n".join(lines))
    print(f"wrote {Path('benchmarks/RESULTS.md')}")


if __name__ == "__main__":
    main()
