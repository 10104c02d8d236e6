"""The gRPC server under load on loopback: image API vs in-process runtime vs KServe tensors; batching on/off.

For Classify and Stylize (a 512x512 JPEG in, JPEG out) at concurrency 1, 4
and 16, three ways of doing the same work, measured side by side in one run:

- image API: artforge.client.ImageClient -> artforge server (the server
  decodes, runs the model, encodes);
- in-process: the same decode + model + encode with artforge.runtime in
  this process, on a thread pool of the same size; the gap to the image
  API is the serving overhead (gRPC, protobuf, scheduling);
- KServe: tritonclient.grpc with uint8 NHWC tensors; the client decodes,
  resizes / pads and (for Stylize) encodes locally.

And the classifier at concurrency 16 on servers started with other flags:
--max-batch-size 1 (every graph run is one image) against dynamic
batching, and two single-threaded instances against one multi-threaded.

Every cell is bounded: at most --requests requests and --time-limit
seconds in all, split over --rounds interleaved rounds (so that load from
other processes falls on every path alike), each after a short warm-up.
The servers run as subprocesses on 127.0.0.1 (their own interpreters, as
deployed) unless --in-process, and stop with the benchmark. Writes the
`serving` section of benchmarks/RESULTS.md.

    python benchmarks/bench_serving.py [--repo zoo/repository] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, measure, percentile, write_section  # noqa: E402

from artforge.client import ImageClient  # noqa: E402
from artforge.runtime import Repository, decode_image, encode_image, pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "zoo" / "samples" / "chelsea.jpg"
CONCURRENCY = (1, 4, 16)
SIDE = 512
QUALITY = 90
HOST = "127.0.0.1"  # loopback only
#: server flags the Classify cell at the top concurrency is repeated with (defaults first, from the main grid)
CONFIGS = ("--max-batch-size 1", "--instances 2 --threads 1", "--instances 2 --threads 1 --max-batch-size 1")


# ------------------------------------------------------------------------ harness

@dataclass
class Cell:
    rpc: str
    path: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: rows and graph runs the server counted during the cell (KServe statistics; 0 for in-process)
    rows: int = 0
    runs: int = 0

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    @property
    def batch(self) -> float:
        """The server's mean graph batch size during the cell (nan: in-process)."""
        return self.rows / self.runs if self.runs else float("nan")

    def ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000 if self.latencies else float("nan")


def run_cell(cell: Cell, work: Callable[[], object], requests: int, time_limit: float) -> Cell:
    """`requests` calls of `work` from `cell.concurrency` threads, stopping early at `time_limit` seconds.

    Adds to the cell: called once per round, its numbers cover every round.
    """
    c = cell.concurrency
    with ThreadPoolExecutor(c) as pool:
        # Warm-up: connections, ORT arenas, the server's worker threads (a few calls, at most one round).
        list(pool.map(lambda _: work(), range(min(c, 4))))
        tickets = itertools.count()  # next() on a count is atomic under the GIL
        started = time.perf_counter()
        stop_at = started + time_limit
        lock = threading.Lock()

        def worker() -> None:
            while next(tickets) < requests and time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                try:
                    work()
                except Exception as error:  # counted and shown: a cell with errors is not a clean number
                    with lock:
                        cell.errors.append(f"{type(error).__name__}: {error}")
                    continue
                elapsed = time.perf_counter() - t0
                with lock:
                    cell.latencies.append(elapsed)

        done_before = len(cell.latencies)
        for future in [pool.submit(worker) for _ in range(c)]:
            future.result()
        wall = time.perf_counter() - started
        cell.wall += wall
    # This round alone, so that the spread between rounds (other load on the machine) shows.
    round_ = sorted(cell.latencies[done_before:]) or [float("nan")]
    print(f"  {cell.rpc:8} c={c:<3} {cell.path:11} {len(round_) / wall:7.1f} req/s  p50 "
          f"{percentile(round_, 50) * 1000:7.1f}  p99 {percentile(round_, 99) * 1000:7.1f} ms  n={len(round_)}"
          + (f"  ERRORS {len(cell.errors)}: {cell.errors[0]}" if cell.errors else ""), flush=True)
    return cell


# ------------------------------------------------------------------------- server

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(repo: Path, in_process: bool, extra: list[str]) -> Iterator[str]:
    """An artforge server on 127.0.0.1 for the length of the block; yields its target."""
    port = free_port()
    flags = ["--repo", str(repo), "--host", HOST, "--port", str(port), "--no-metrics", "--no-http", *extra]
    if in_process:
        from artforge.cli import build_parser
        from artforge.cli.serve import server_options
        from artforge.serving.server import Server

        running = Server(server_options(build_parser().parse_args(["serve", *flags])))
        running.start()
        try:
            yield f"{HOST}:{port}"
        finally:
            running.stop(grace=1)
        return
    with serve_subprocess(flags, f"{HOST}:{port}"):
        yield f"{HOST}:{port}"


@contextlib.contextmanager
def serve_subprocess(flags: list[str], target: str) -> Iterator[subprocess.Popen]:
    """`python -m artforge serve FLAGS` for the block, once it answers at target (gRPC); yields the process;
    SIGTERM after."""
    log = open(os.devnull, "w")  # noqa: SIM115 - closed below; the server's INFO lines would interleave the table
    process = subprocess.Popen([sys.executable, "-m", "artforge", "serve", *flags], stderr=log, stdout=log)
    try:
        # The client's retries ride out the start (loading models takes seconds).
        with ImageClient(target, retries=60, backoff_s=0.1, max_backoff_s=0.5, timeout=90) as client:
            client.list_models()
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def batch_counts(target: str, model: str) -> tuple[int, int]:
    """(rows inferred, graph runs) of `model` so far, from the server's KServe statistics."""
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(target)
    try:
        stats = client.get_inference_statistics(model_name=model, as_json=True)["model_stats"][0]
    finally:
        client.close()
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def measured(cell: Cell, work: Callable[[], object], requests: int, time_limit: float,
             target: str | None = None, model: str = "") -> Cell:
    """run_cell, also counting the server's graph batches when `target` is given."""
    before = batch_counts(target, model) if target else (0, 0)
    run_cell(cell, work, requests, time_limit)
    if target:
        rows, runs = batch_counts(target, model)
        cell.rows += rows - before[0]
        cell.runs += runs - before[1]
    return cell


# -------------------------------------------------------------------------- work

def jpeg_input() -> bytes:
    """A 512x512 photo as JPEG (the shipped sample, else a smooth synthetic picture)."""
    image = cv2.imread(str(SAMPLE)) if SAMPLE.exists() else None
    if image is None:
        y, x = np.mgrid[0:SIDE, 0:SIDE]
        image = np.dstack([(x * 255 // SIDE), (y * 255 // SIDE), ((x + y) * 127 // SIDE)]).astype(np.uint8)
    image = cv2.resize(image, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    assert ok
    return data.tobytes()


def kserve_work(target: str, rpc: str, model, data: bytes) -> Callable[[], object]:
    """Client-side pixels: decode (and resize or pad) here, uint8 NHWC over KServe, encode here."""
    import tritonclient.grpc as triton

    local = threading.local()  # one InferenceServerClient per thread, as tritonclient recommends
    meta = model.metadata

    def client() -> triton.InferenceServerClient:
        if not hasattr(local, "client"):
            local.client = triton.InferenceServerClient(target)
        return local.client

    def send(batch: np.ndarray) -> np.ndarray:
        tensor = triton.InferInput(meta.input_name, list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        result = client().infer(model.name, [tensor], outputs=[triton.InferRequestedOutput(meta.output_name)],
                                client_timeout=60)
        return result.as_numpy(meta.output_name)

    return client_side_work(rpc, model, data, send)


def client_side_work(rpc: str, model, data: bytes, send: Callable[[np.ndarray], np.ndarray]) -> Callable[[], object]:
    """What a KServe client does around `send` (one tensor call): the runtime's own pre- and post-processing."""
    if rpc == "Classify":
        return lambda: pipeline.top_k(send(model.prepare([data]))[0], 5)

    def stylize() -> object:
        prepared = model.prepare(data)
        out = send(model.padded(prepared)[np.newaxis])[0]
        return encode_image(pipeline.stylize_output(out, prepared), "jpeg", QUALITY)
    return stylize


def works(rpc: str, model, target: str, api: ImageClient, data: bytes) -> dict[str, Callable[[], object]]:
    if rpc == "Classify":
        return {
            "image API": lambda: api.classify(data, model=model.name, top_k=5),
            "in-process": lambda: model.classify(data, top_k=5),
            "KServe": kserve_work(target, rpc, model, data),
        }
    return {
        "image API": lambda: api.stylize(data, model=model.name, format="jpeg", quality=QUALITY),
        "in-process": lambda: encode_image(model.stylize(decode_image(data)), "jpeg", QUALITY),
        "KServe": kserve_work(target, rpc, model, data),
    }


def graph_cost(model, sizes: tuple[int, ...] = (1, 8)) -> list[tuple[int, float]]:
    """Median ms per image of the bare graph at each batch size: what batching can save at best."""
    rng = np.random.default_rng(0)
    out = []
    for n in sizes:
        batch = {model.metadata.input_name: rng.integers(0, 256, (n, model.input_size, model.input_size, 3),
                                                          dtype=np.uint8)}
        times = measure(lambda batch=batch: model.infer(batch), min_runs=max(3, 16 // n), min_seconds=0.5)
        out.append((n, statistics.median(times) * 1000 / n))
    return out


# ------------------------------------------------------------------------ report

def report(args: argparse.Namespace, models: dict, cells: list[Cell], configs: list[tuple[str, Cell, float]],
           seconds: float) -> str:
    by = {(c.rpc, c.path, c.concurrency): c for c in cells}
    lines = [
        "## Serving: image API vs in-process vs KServe, and dynamic batching",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}; server {'in this process' if args.in_process else 'a subprocess'} on 127.0.0.1"
        f"{' with `' + args.server_flags + '`' if args.server_flags else ''} (its default flags otherwise), "
        f"client threads in the benchmark process; {seconds:.0f} s in all; load average before the run "
        f"{args.load_before:.1f} (other processes' work competes with every path alike).  ",
        "Models: " + ", ".join(f"{rpc} `{m.name}` v{m.version} ({m.backend_name})" for rpc, m in models.items())
        + f"; input a {SIDE}x{SIDE} JPEG photo ({args.input_kb} KB), Stylize answers JPEG q{QUALITY}.",
        f"Each cell: at most {args.requests} Classify / {args.stylize_requests} Stylize requests or "
        f"{args.time_limit:g} s, in {args.rounds} interleaved rounds, each after up to 4 warm-up calls. "
        "Latency in ms, per request, as the client sees it.",
        "",
        "| RPC | concurrency | path | req/s | p50 | p90 | p99 | n | mean graph batch |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        err = f" ({len(c.errors)} errors)" if c.errors else ""
        lines.append(f"| {c.rpc} | {c.concurrency} | {c.path}{err} | {c.throughput:.1f} | {c.ms(50):.1f} | "
                     f"{c.ms(90):.1f} | {c.ms(99):.1f} | {len(c.latencies)} | "
                     f"{'-' if c.batch != c.batch else f'{c.batch:.1f}'} |")
    lines += ["", "Serving overhead: image API throughput against the same work in-process "
              "(target for Stylize: within 10 %).", "",
              "| RPC | concurrency | image API / in-process | overhead | KServe / in-process |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for rpc in models:
        for c in args.concurrency:
            api, local, ks = (by.get((rpc, p, c)) for p in ("image API", "in-process", "KServe"))
            if not (api and local and local.throughput):
                continue
            ratio = api.throughput / local.throughput
            ks_ratio = f"{ks.throughput / local.throughput:.2f}" if ks else "-"
            lines.append(f"| {rpc} | {c} | {ratio:.2f} | {(1 - ratio) * 100:.0f} % | {ks_ratio} |")
    if configs:
        first = configs[0][1]
        lines += ["", f"Server configurations, Classify at concurrency {first.concurrency} through the image API "
                  "(dynamic batching target: ≥ 1.5× the throughput of `--max-batch-size 1`):", "",
                  "| server flags | req/s | p50 | p99 | mean graph batch |", "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {f'`{flags}`' if flags else 'defaults'} | {cell.throughput:.1f} | {cell.ms(50):.1f} | "
                  f"{cell.ms(99):.1f} | {mean:.1f} |" for flags, cell, mean in configs]
        by_flags = {flags: cell for flags, cell, _ in configs}
        gains = []
        for flags, cell, _ in configs:
            off = by_flags.get(f"{flags} --max-batch-size 1".strip())
            if off is not None and off.throughput:
                gains.append(f"{cell.throughput / off.throughput:.2f}× with {flags or 'the defaults'}")
        lines += ["", f"Batching gain (batching on / `--max-batch-size 1`): **{'; '.join(gains)}**."]
        if args.graph_cost:
            lines += ["", "The classifier graph alone, in-process (ONNX Runtime's default threads): "
                      + ", ".join(f"{ms:.2f} ms per image at batch {n}" for n, ms in args.graph_cost)
                      + ". The difference is the most that batching can save per image on this machine: "
                      "a CPU is already busy with one image, while a GPU is mostly idle with one."]
    lines += ["", "Notes: client and server share the machine's cores, so at concurrency > 1 the client's own "
              "work (gRPC, and for KServe the JPEG decode / resize / encode) takes CPU from the server; "
              "the in-process path has no such competitor. On a 2-core machine this weighs heavily; "
              "numbers from a busy machine (e.g. while models train) are noisy."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "zoo" / "repository")
    parser.add_argument("--classifier", default=None, help="classifier model (default: the repository's first)")
    parser.add_argument("--stylizer", default=None, help="stylizer model (default: the repository's first)")
    parser.add_argument("--requests", type=int, default=None, help="most Classify requests per cell (default 160)")
    parser.add_argument("--stylize-requests", type=int, default=None,
                        help="most Stylize requests per cell (default 32)")
    parser.add_argument("--time-limit", type=float, default=None, help="most seconds per cell (default 12)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds per cell; the request budget and time limit are split over them")
    parser.add_argument("--rpcs", nargs="+", choices=("Classify", "Stylize"), default=["Classify", "Stylize"])
    parser.add_argument("--in-process", action="store_true", help="run the server in this process (a thread)")
    parser.add_argument("--server-flags", default="",
                        help="extra `artforge serve` flags for every server, e.g. \"--instances 2 --threads 1\"")
    parser.add_argument("--quick", action="store_true",
                        help="40 Classify / 8 Stylize requests and 4 s per cell unless given")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    defaults = (40, 8, 4.0) if args.quick else (160, 32, 12.0)
    args.requests = args.requests or defaults[0]
    args.stylize_requests = args.stylize_requests or defaults[1]
    args.time_limit = args.time_limit or defaults[2]
    started = time.perf_counter()
    args.load_before = os.getloadavg()[0]
    repo = Repository(args.repo)
    kinds = {row["name"]: row.get("kind") for row in repo.describe()}
    names = {"Classify": args.classifier or next((n for n, k in kinds.items() if k == "classifier"), None),
             "Stylize": args.stylizer or next((n for n, k in kinds.items() if k == "stylizer"), None)}
    models = {rpc: repo.load(name) for rpc, name in names.items() if name and rpc in args.rpcs}
    if not models:
        sys.exit(f"{args.repo} has neither a classifier nor a stylizer to benchmark")
    args.graph_cost = graph_cost(models["Classify"]) if "Classify" in models else []
    data = jpeg_input()
    args.input_kb = len(data) // 1024
    limits = {"Classify": args.requests, "Stylize": args.stylize_requests}
    top = max(args.concurrency)
    print(f"server on {HOST}; repository {args.repo}; {machine()}", flush=True)
    extra = shlex.split(args.server_flags)
    # Every server runs for the whole benchmark (idle ones cost no CPU), so that each cell
    # can be measured in several rounds, interleaved with the cells it is compared with:
    # load from other processes then falls on every path alike instead of on one cell.
    flag_sets = ["", *CONFIGS] if "Classify" in models else [""]
    with contextlib.ExitStack() as stack:
        targets = {flags: stack.enter_context(server(args.repo, args.in_process, [*extra, *flags.split()]))
                   for flags in flag_sets}
        apis = {flags: stack.enter_context(ImageClient(target, timeout=120)) for flags, target in targets.items()}
        target, api = targets[""], apis[""]
        grid = {(rpc, c, path): (Cell(rpc, path, c), work)
                for rpc, model in models.items() for c in args.concurrency
                for path, work in works(rpc, model, target, api, data).items()}
        configs = {flags: Cell("Classify", f"image API {flags}", top) for flags in flag_sets}
        if "Classify" in models:
            configs[""] = grid[("Classify", top, "image API")][0]  # measured in the grid
        for round_ in range(args.rounds):
            print(f"round {round_ + 1} of {args.rounds}", flush=True)
            for (rpc, _, path), (cell, work) in grid.items():
                measured(cell, work, -(-limits[rpc] // args.rounds), args.time_limit / args.rounds,
                         None if path == "in-process" else target, models[rpc].name)
            if "Classify" in models:
                name = models["Classify"].name
                for flags in CONFIGS:
                    measured(configs[flags], lambda api=apis[flags], name=name: api.classify(data, model=name),
                             -(-args.requests // args.rounds), args.time_limit / args.rounds, targets[flags], name)
    cells = [cell for cell, _ in grid.values()]
    config_rows = [(flags, cell, cell.batch) for flags, cell in configs.items()] if "Classify" in models else []
    text = report(args, models, cells, config_rows, time.perf_counter() - started)
    print()
    print(text)
    if not args.no_write:
        write_section("serving", text)
        print(f"\nwrote {Path('benchmarks/RESULTS.md')}")


if __name__ == "__main__":
    main()
