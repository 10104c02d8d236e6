"""HTTP beside gRPC on one server: the image endpoints and KServe REST (binary tensors) against their gRPC twins.

One `artforge serve` subprocess on 127.0.0.1 with both front ends; for
Classify and Stylize (a 512x512 JPEG in, JPEG out) at each concurrency, four
paths to the same models, measured side by side in interleaved rounds:

- gRPC image API: artforge.client.ImageClient (the server decodes, runs the
  model, encodes);
- HTTP image endpoint: POST /v1/models/NAME/classify|stylize with the JPEG
  as the body (one keep-alive connection per client thread);
- gRPC KServe: tritonclient.grpc with uint8 NHWC tensors (the client decodes,
  resizes or pads, and encodes);
- REST KServe: tritonclient.http with the same tensors as binary data
  (Triton's binary tensor extension, tritonclient's default).

Writes the `http` section of benchmarks/RESULTS.md.

    python benchmarks/bench_http.py [--repo zoo/repository] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import (  # noqa: E402
    HOST,
    QUALITY,
    SIDE,
    Cell,
    client_side_work,
    free_port,
    jpeg_input,
    kserve_work,
    run_cell,
    serve_subprocess,
)
from common import command_line, machine, write_section  # noqa: E402

from artforge.client import ImageClient  # noqa: E402
from artforge.runtime import Repository  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("gRPC image API", "HTTP image endpoint", "gRPC KServe", "REST KServe (binary)")


@contextmanager
def server(repo: Path, flags: list[str]) -> Iterator[tuple[str, int]]:
    """`artforge serve` with gRPC and HTTP on free loopback ports; yields (gRPC target, HTTP port)."""
    grpc_port, http_port = free_port(), free_port()
    flags = ["--repo", str(Path(repo).resolve()), "--host", HOST, "--port", str(grpc_port), "--http-port",
             str(http_port), "--no-metrics", *flags]
    target = f"{HOST}:{grpc_port}"
    with serve_subprocess(flags, target):
        yield target, http_port


def http_image_work(port: int, rpc: str, model: str, data: bytes) -> Callable[[], object]:
    """POST the JPEG to the image endpoint, one keep-alive connection per thread."""
    local = threading.local()
    path = (f"/v1/models/{model}/classify?top_k=5" if rpc == "Classify"
            else f"/v1/models/{model}/stylize?format=jpeg&quality={QUALITY}")

    def call() -> object:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(HOST, port, timeout=60)
        local.connection.request("POST", path, body=data, headers={"Content-Type": "image/jpeg"})
        response = local.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        return body
    return call


def rest_kserve_work(port: int, rpc: str, model, data: bytes) -> Callable[[], object]:
    """kserve_work's client-side pixels, over tritonclient.http with binary tensors."""
    import tritonclient.http as triton

    local = threading.local()
    meta = model.metadata

    def send(batch: np.ndarray) -> np.ndarray:
        if not hasattr(local, "client"):
            local.client = triton.InferenceServerClient(f"{HOST}:{port}", network_timeout=60)
        tensor = triton.InferInput(meta.input_name, list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch, binary_data=True)
        result = local.client.infer(model.name, [tensor],
                                    outputs=[triton.InferRequestedOutput(meta.output_name, binary_data=True)])
        return result.as_numpy(meta.output_name)

    return client_side_work(rpc, model, data, send)


def works(rpc: str, model, target: str, port: int, api: ImageClient, data: bytes) -> dict[str, Callable[[], object]]:
    grpc_image = ((lambda: api.classify(data, model=model.name, top_k=5)) if rpc == "Classify"
                  else (lambda: api.stylize(data, model=model.name, format="jpeg", quality=QUALITY)))
    return {"gRPC image API": grpc_image, "HTTP image endpoint": http_image_work(port, rpc, model.name, data),
            "gRPC KServe": kserve_work(target, rpc, model, data),
            "REST KServe (binary)": rest_kserve_work(port, rpc, model, data)}


def report(args: argparse.Namespace, models: dict, cells: list[Cell], seconds: float, input_kb: int) -> str:
    by = {(c.rpc, c.path, c.concurrency): c for c in cells}
    lines = [
        "## Serving: HTTP beside gRPC (image endpoints, KServe REST with binary tensors)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}; one server subprocess on 127.0.0.1 serving both front ends (its default flags "
        f"otherwise), client threads in the benchmark process; {seconds:.0f} s in all; load average before the "
        f"run {args.load_before:.1f} (other processes' work competes with every path alike).  ",
        "Models: " + ", ".join(f"{rpc} `{m.name}` v{m.version} ({m.backend_name})" for rpc, m in models.items())
        + f"; input a {SIDE}x{SIDE} JPEG photo ({input_kb} KB), Stylize answers JPEG q{QUALITY}. The image paths "
        "send the JPEG (the server decodes and encodes); the KServe paths decode, resize or pad and encode in "
        "the client and send uint8 tensors.  ",
        f"Each cell: at most {args.requests} Classify / {args.stylize_requests} Stylize requests or "
        f"{args.time_limit:g} s, in {args.rounds} interleaved rounds after up to 4 warm-up calls. "
        "Latency in ms, per request, as the client sees it.",
        "",
        "| RPC | concurrency | path | req/s | p50 | p90 | p99 | n |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        err = f" ({len(c.errors)} errors)" if c.errors else ""
        lines.append(f"| {c.rpc} | {c.concurrency} | {c.path}{err} | {c.throughput:.1f} | {c.ms(50):.1f} | "
                     f"{c.ms(90):.1f} | {c.ms(99):.1f} | {len(c.latencies)} |")
    lines += ["", "HTTP against gRPC, throughput ratio of the same work:", "",
              "| RPC | concurrency | HTTP image / gRPC image | REST KServe / gRPC KServe |",
              "| --- | ---: | ---: | ---: |"]
    for rpc in models:
        for c in args.concurrency:
            cells_ = [by.get((rpc, p, c)) for p in PATHS]
            if any(x is None or not x.throughput for x in cells_):
                continue
            grpc_image, http_image, grpc_kserve, rest_kserve = cells_
            lines.append(f"| {rpc} | {c} | {http_image.throughput / grpc_image.throughput:.2f} | "
                         f"{rest_kserve.throughput / grpc_kserve.throughput:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "zoo" / "repository")
    parser.add_argument("--classifier", default="art_style")
    parser.add_argument("--stylizer", default="mosaic")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--requests", type=int, default=120, help="most Classify requests per cell")
    parser.add_argument("--stylize-requests", type=int, default=24, help="most Stylize requests per cell")
    parser.add_argument("--time-limit", type=float, default=10, help="most seconds per cell")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backend", default="onnxruntime", help="the server's and the local models' backend")
    parser.add_argument("--quick", action="store_true", help="a few requests per cell, to try the harness")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.stylize_requests, args.time_limit, args.rounds = 16, 4, 3, 1

    args.load_before = os.getloadavg()[0]
    repo = Repository(args.repo)
    models = {"Classify": repo.classifier(args.classifier, backend=args.backend),
              "Stylize": repo.stylizer(args.stylizer, backend=args.backend)}
    data = jpeg_input()
    cells: dict[tuple[str, str, int], Cell] = {}
    started = time.perf_counter()
    with server(args.repo, ["--backend", args.backend]) as (target, port), \
            ImageClient(target, timeout=120) as api:
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", flush=True)
            for rpc, model in models.items():
                limit = args.requests if rpc == "Classify" else args.stylize_requests
                for c in args.concurrency:
                    for path, work in works(rpc, model, target, port, api, data).items():
                        cell = cells.setdefault((rpc, path, c), Cell(rpc, path, c))
                        run_cell(cell, work, max(1, limit // args.rounds), args.time_limit / args.rounds)
    text = report(args, models, list(cells.values()), time.perf_counter() - started, len(data) // 1024)
    print(text)
    if not args.no_write:
        write_section("http", text)


if __name__ == "__main__":
    main()
