"""The overhead of the distributed path: one folder through `artforge stylize` locally and on Ray (local cluster).

The zoo's sample photos copied --copies times into a temporary folder go
through the batch driver twice, with the same model and backend: the local
executor (the models in this process) and the Ray executor (the models in
actors of a local Ray cluster started with this machine's cores). One run
each; the Ray run's time includes starting its actors and loading the models
in them, and the cluster's own start is timed apart. Writes the `batch ray`
section of benchmarks/RESULTS.md.

    python benchmarks/bench_batch_ray.py [--repo zoo/repository] [--model mosaic] [--copies 8] [--no-write]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, write_section  # noqa: E402

from artforge.batch.driver import run_stylize  # noqa: E402
from artforge.batch.local import LocalExecutor  # noqa: E402
from artforge.batch.options import BatchOptions  # noqa: E402
from artforge.batch.report import BatchReport  # noqa: E402
from artforge.runtime.repository import Repository  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "zoo" / "repository")
    parser.add_argument("--samples", type=Path, default=ROOT / "zoo" / "samples")
    parser.add_argument("--model", default="mosaic")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    import ray

    from artforge.batch.cluster import RayExecutor

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        samples = sorted(args.samples.glob("*.jpg"))
        for copy in range(args.copies):
            (src / str(copy)).mkdir(parents=True)
            for sample in samples:
                shutil.copy(sample, src / str(copy) / sample.name)
        count = len(samples) * args.copies
        options = BatchOptions(fmt="jpg")

        local = LocalExecutor([Repository(args.repo).stylizer(args.model, backend=args.backend)])
        local_report = run_stylize(local, src, Path(tmp) / "local", options, progress=False)

        started = time.perf_counter()
        ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        cluster_seconds = time.perf_counter() - started
        try:
            executor = RayExecutor(args.repo, [args.model], backend=args.backend)
            ray_report = run_stylize(executor, src, Path(tmp) / "ray", options, progress=False)
        finally:
            ray.shutdown()

    def row(name: str, report: BatchReport, note: str) -> str:
        return (f"| {name} | {report.done} | {report.wall_seconds:.1f} | {report.done / report.wall_seconds:.2f} "
                f"| {report.model_seconds:.1f} | {note} |")

    body = "\n".join([
        "## Batch stylization: the local engine against Ray (local cluster)",
        "",
        f"`{command_line()}` on {machine()}; Ray {ray.__version__}.",
        "",
        f"{count} JPEGs (the zoo's {len(samples)} samples x {args.copies}, up to 512 px) -> JPEG, model "
        f"`{args.model}`, backend `{args.backend}`, one run each.",
        "",
        "| engine | images | wall s | images/s | model s | |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        row("local (`--engine local`)", local_report, "models in this process"),
        row("Ray (`--engine ray`)", ray_report,
            f"{executor.actors} actor(s) x {executor.actor_cpus} CPUs; includes actor start and model load; "
            f"the cluster's own start took {cluster_seconds:.1f} s more"),
        "",
        "On one machine Ray adds the cluster start, the actors' start and model",
        "load, and a hop through its object store per batch of rows; it pays off",
        "when nodes are added (docs/batch.md, \"Scaling with nodes\").",
    ])
    print(body)
    if not args.no_write:
        write_section("batch ray", body)


if __name__ == "__main__":
    main()
