"""Serving against a peer server: `artforge serve` and TorchServe on the same style network, under two load generators.

The same network (zoo `mosaic`: the weights of zoo/checkpoints/mosaic.pt,
exported as zoo/repository/mosaic) at the same input (a 512x512 JPEG photo,
JPEG q90 out) from:

- TorchServe with its recommended custom-handler pattern
  (benchmarks/torchserve_stylizer.py, a BaseHandler subclass), twice: eager
  torch fp32 from the checkpoint, and TorchServe's ONNX path (ONNX Runtime on
  the repository's model.onnx); one worker each (`--torchserve-workers`),
  TorchServe's default batch size of 1;
- `artforge serve` on a repository holding only that model, its default
  flags (backend `auto` unless `--backend`).

Load generators, side by side:

- Triton's perf_analyzer: `--service-kind torchserve` (HTTP, the JPEG as the
  multipart "data" field) against TorchServe, and KServe v2 gRPC with uint8
  tensors of the same decoded picture against artforge (no JPEG work there:
  perf_analyzer speaks tensors), count windows, one concurrency per run;
- this benchmark's own generator (bench_serving.run_cell): the same JPEG
  POSTed over keep-alive HTTP to TorchServe's /predictions/NAME and to
  artforge's /v1/models/NAME/stylize, and through artforge's gRPC image API,
  alternating cell by cell in interleaved rounds so that load from other
  processes falls on every server alike.

Precision is asked of each server: artforge's ListModels backend and reason,
TorchServe's handler answers an `x-precision` header. Server CPU seconds per
request (the server's process tree, from /proc) show where the work went.
Writes the `peers` section of benchmarks/RESULTS.md.

Setup (once per machine; `bash benchmarks/setup_peers.sh` does all of it,
idempotently):

1. Debian: `apt-get install openjdk-17-jre-headless libb64-0d` (TorchServe's
   frontend is Java; perf_analyzer links libb64).
2. A venv of its own, never the project's (TorchServe brings its own torch):
   `python3.11 -m venv ../peers-venv && ../peers-venv/bin/pip install
   torch==2.13.0 torchserve==0.12.0 torch-model-archiver==0.12.0 pyyaml
   onnxruntime pillow nvidia-cuda-runtime-cu12 tritonclient==2.41.0`
   (pyyaml: TorchServe needs but does not declare it; nvidia-cuda-runtime-cu12:
   perf_analyzer loads libcudart.so.12 even with no GPU; this benchmark puts
   its lib/ folder on LD_LIBRARY_PATH).
3. perf_analyzer is the binary inside the tritonclient wheel: this venv's
   (the [dev] extra), else the peers venv's, else $PERF_ANALYZER.

Point the benchmark at the venv with `--peers-venv` or $ARTFORGE_PEERS_VENV
(default: ../peers-venv beside the checkout). A peer that is missing is
skipped, and the report says which and why.

    python benchmarks/bench_peers.py [--quick] [--concurrency 1 2 4] [--backend auto]
    python benchmarks/bench_peers.py --variant="--max-batch-size 1"   # one more artforge server, as rows

`--variant FLAGS` (repeatable) adds artforge servers started with extra
flags (gRPC image API rows): the check that batching 512² stylizer inputs
costs no CPU per request (docs/decisions.md, "Serving against TorchServe").
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import glob
import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import (  # noqa: E402
    HOST,
    QUALITY,
    SIDE,
    Cell,
    free_port,
    jpeg_input,
    measured,
    run_cell,
    serve_subprocess,
)
from common import command_line, machine, write_section  # noqa: E402

from artforge.client import ImageClient  # noqa: E402
from artforge.runtime import decode_image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HANDLER = Path(__file__).resolve().parent / "torchserve_stylizer.py"
STYLE_NET = ROOT / "artforge" / "models" / "style_net.py"
CONCURRENCY = (1, 2, 4)
#: TorchServe model names of the two paths, and the files each archive serves
TS_PATHS = ("eager", "onnx")
#: report rows, in order: (server, path) -> what the path sends
ROWS = {
    "TorchServe eager": "HTTP, JPEG body",
    "TorchServe ONNX": "HTTP, JPEG body",
    "artforge HTTP image": "HTTP, JPEG body",
    "artforge gRPC image API": "gRPC, JPEG",
    "artforge KServe gRPC": "gRPC, uint8 tensor",
}
#: prefix of the rows of artforge servers started with --variant flags
VARIANT = "artforge gRPC image API, "


def sends(row: str) -> str:
    return ROWS.get(row, "gRPC, JPEG")


# --------------------------------------------------------------------------------------- finding peers

@dataclass
class Peers:
    venv: Path
    torchserve: Path | None = None
    archiver: Path | None = None
    perf_analyzer: Path | None = None
    #: LD_LIBRARY_PATH perf_analyzer needs (libcudart.so.12 from nvidia-cuda-runtime-cu12)
    library_path: str = ""
    #: why a peer is skipped, one sentence each
    skipped: list[str] = field(default_factory=list)

    def perf_env(self) -> dict[str, str]:
        old = os.environ.get("LD_LIBRARY_PATH", "")
        return {**os.environ, "LD_LIBRARY_PATH": ":".join(p for p in (self.library_path, old) if p)}


def find_peers(venv: Path) -> Peers:
    peers = Peers(venv)
    bins = venv / "bin"
    if not shutil.which("java"):
        peers.skipped.append("TorchServe: no `java` on PATH (Debian's openjdk-17-jre-headless; "
                             "benchmarks/setup_peers.sh installs it)")
    elif not (bins / "torchserve").exists() or not (bins / "torch-model-archiver").exists():
        peers.skipped.append(f"TorchServe: {venv} has no torchserve / torch-model-archiver (run "
                             "benchmarks/setup_peers.sh, or point --peers-venv / $ARTFORGE_PEERS_VENV at its venv)")
    else:
        peers.torchserve, peers.archiver = bins / "torchserve", bins / "torch-model-archiver"
    candidates = [os.environ.get("PERF_ANALYZER", ""), str(Path(sys.prefix) / "bin" / "perf_analyzer"),
                  str(bins / "perf_analyzer"), shutil.which("perf_analyzer") or ""]
    found = next((Path(c) for c in candidates if c and Path(c).exists()), None)
    libs = [p for prefix in (sys.prefix, str(venv))
            for p in glob.glob(f"{prefix}/lib/python3*/site-packages/nvidia/cuda_runtime/lib")]
    peers.library_path = ":".join(libs)
    if found is None:
        peers.skipped.append("perf_analyzer: not found (the binary inside the tritonclient wheel; "
                             "benchmarks/setup_peers.sh installs it into the peers venv)")
        return peers
    probe = subprocess.run([str(found), "--version"], capture_output=True, text=True, env=peers.perf_env())
    if probe.returncode != 0:
        why = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or ["no output"]
        peers.skipped.append(f"perf_analyzer: {found} does not start ({why[0]}); it needs Debian's libb64-0d "
                             "and libcudart.so.12 from nvidia-cuda-runtime-cu12 (benchmarks/setup_peers.sh)")
    else:
        peers.perf_analyzer = found
    return peers


# ---------------------------------------------------------------------------------------------- servers

def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants, from /proc."""
    total, stack, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK")
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
    return total


@dataclass
class Running:
    """A server under test: its process (for CPU accounting) and where to reach it."""

    name: str
    pid: int
    http_port: int
    grpc_target: str = ""
    #: the precision each model path ran at, as the server said
    precision: dict[str, str] = field(default_factory=dict)


def _get_json(url: str, timeout: float = 5) -> object:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


@contextlib.contextmanager
def torchserve(peers: Peers, model: str, checkpoint: Path, onnx: Path, workers: int,
               workdir: Path) -> Iterator[Running]:
    """TorchServe serving `<model>_eager` and `<model>_onnx` on loopback, once every worker is READY."""
    assert peers.torchserve and peers.archiver
    store = workdir / "model-store"
    store.mkdir()
    env = {**os.environ, "PATH": f"{peers.venv / 'bin'}:{os.environ.get('PATH', '')}",
           "ARTFORGE_PEERS_QUALITY": str(QUALITY)}
    sources = {"eager": (checkpoint, [STYLE_NET]), "onnx": (onnx, [])}
    for path in TS_PATHS:
        serialized, extra = sources[path]
        command = [str(peers.archiver), "--model-name", f"{model}_{path}", "--version", "1.0",
                   "--serialized-file", str(serialized), "--handler", str(HANDLER), "--export-path", str(store),
                   "--archive-format", "no-archive", "--force"]
        if extra:
            command += ["--extra-files", ",".join(map(str, extra))]
        subprocess.run(command, check=True, env=env, capture_output=True)
    ports = {kind: free_port() for kind in ("inference", "management", "metrics")}
    config = workdir / "config.properties"
    config.write_text("".join(f"{kind}_address=http://{HOST}:{port}\n" for kind, port in ports.items())
                      + f"default_workers_per_model={workers}\n"
                      # the per-minute system-metrics collector is a Python process of its own: CPU off the model
                      + "disable_system_metrics=true\n")
    log = open(workdir / "torchserve.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(peers.torchserve), "--start", "--foreground", "--ncs", "--disable-token-auth", "--model-store",
         str(store), "--ts-config", str(config), "--models", *(f"{model}_{p}={model}_{p}" for p in TS_PATHS)],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # /ping says Healthy before the workers are; wait on each model's worker status instead.
        deadline = time.monotonic() + 240
        for path in TS_PATHS:
            url = f"http://{HOST}:{ports['management']}/models/{model}_{path}"
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (workdir / "torchserve.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"TorchServe did not get {model}_{path} READY:\n{tail}")
                with contextlib.suppress(OSError, ValueError):
                    workers_ = _get_json(url)[0]["workers"]  # type: ignore[index]
                    if workers_ and all(w["status"] == "READY" for w in workers_):
                        break
                time.sleep(0.5)
        yield Running("TorchServe", process.pid, ports["inference"])
    finally:
        # TorchServe's frontend (Java) and its Python workers share the session started above.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@contextlib.contextmanager
def artforge(repo: Path, model: str, flags: list[str], workdir: Path) -> Iterator[Running]:
    """`artforge serve` (gRPC and HTTP) on a repository holding only `model`."""
    single = workdir / "repository"
    single.mkdir()
    (single / model).symlink_to((repo / model).resolve(), target_is_directory=True)
    grpc_port, http_port = free_port(), free_port()
    target = f"{HOST}:{grpc_port}"
    with serve_subprocess(["--repo", str(single), "--host", HOST, "--port", str(grpc_port), "--http-port",
                           str(http_port), "--no-metrics", *flags], target) as process:
        yield Running("artforge", process.pid, http_port, target)


# ------------------------------------------------------------------------------------------ load: own

def picture(side: int) -> bytes:
    """bench_serving's JPEG photo at side x side."""
    data = jpeg_input()
    if side == SIDE:
        return data
    image = cv2.resize(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), (side, side),
                       interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    assert ok
    return buffer.tobytes()


def post_work(port: int, path: str, data: bytes, content_type: str,
              seen: dict[str, str] | None = None) -> Callable[[], object]:
    """POST the JPEG, one keep-alive connection per client thread; the same client code for every server.

    A kept connection the server closed while idle (a server's keep-alive timeout: a thread can sit out
    several seconds behind its peers at high concurrency) is reopened once, as pooling HTTP clients do.
    """
    local = threading.local()

    def call() -> object:
        while True:
            fresh = not hasattr(local, "connection")
            if fresh:
                local.connection = http.client.HTTPConnection(HOST, port, timeout=120)
            try:
                local.connection.request("POST", path, body=data, headers={"Content-Type": content_type})
                response = local.connection.getresponse()
                body = response.read()
                break
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                local.connection.close()
                del local.connection
                if fresh:
                    raise
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        if seen is not None and "x-precision" not in seen and response.getheader("x-precision"):
            seen["x-precision"] = response.getheader("x-precision", "")
        return body
    return call


# ------------------------------------------------------------------------------------ load: perf_analyzer

@dataclass
class PaResult:
    throughput: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    requests: int = 0
    #: why there is no number (perf_analyzer's own last words)
    error: str = ""
    #: "Timer not set correctly" lines perf_analyzer printed (its torchserve mode's per-request complaint)
    timer_warnings: int = 0


def perf_analyzer(peers: Peers, args: argparse.Namespace, concurrency: int, workdir: Path, *,
                  model: str, url: str, kind: str, data: Path, side: int) -> PaResult:
    """One perf_analyzer run at one concurrency, count windows; p50/p99 as perf_analyzer reports them."""
    assert peers.perf_analyzer
    report = workdir / f"pa-{model}-{kind}-{concurrency}.csv"
    command = [str(peers.perf_analyzer), "-m", model, "-u", url, "--concurrency-range",
               f"{concurrency}:{concurrency}", "--measurement-mode", "count_windows",
               "--measurement-request-count", str(args.pa_requests), "--max-trials", str(args.pa_trials),
               "--stability-percentage", str(args.pa_stability), "--percentile", "99", "-f", str(report)]
    if kind == "torchserve":
        command += ["--service-kind", "torchserve", "-i", "http", "--input-data", str(data)]
    else:
        # The model batches (config.pbtxt's max_batch_size), so perf_analyzer adds the batch dimension of 1.
        command += ["-i", "grpc", "--shape", f"image:{side},{side},3", "--input-data", str(data)]
    timeout = args.pa_timeout
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=peers.perf_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        return PaResult(error=f"no stable result in {timeout:g} s")
    output = done.stdout + done.stderr
    result = PaResult(timer_warnings=output.count("Timer not set correctly"))
    lines = [line.strip() for line in output.splitlines() if line.strip() and "Timer not set" not in line]
    if done.returncode != 0 or not report.exists():
        result.error = (lines[-1] if lines else f"exit {done.returncode}")[:100]
        return result
    row = next(csv.DictReader(report.open()))
    result.throughput = float(row["Inferences/Second"])
    result.p50_ms, result.p99_ms = float(row["p50 latency"]) / 1000, float(row["p99 latency"]) / 1000
    counts = [line for line in lines if line.startswith("Request count:")]
    result.requests = int(counts[-1].split(":")[1]) if counts else 0
    return result


# ------------------------------------------------------------------------------------------------ report

def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def report(args: argparse.Namespace, peers: Peers, precision: dict[str, str], own: dict[tuple[str, int], Cell],
           pa: dict[tuple[str, int], PaResult], cpu: dict[tuple[str, int], float], seconds: float,
           input_kb: int) -> str:
    rows = list(dict.fromkeys([*(name for name in ROWS if any(key[0] == name for key in (*own, *pa))),
                               *(key[0] for key in own if key[0].startswith(VARIANT))]))
    pa_settings = (f"count windows of {args.pa_requests} requests, up to {args.pa_trials} windows, "
                   f"stable within {args.pa_stability} %")
    lines = [
        "## Serving against a peer: artforge serve and TorchServe, one style network, two load generators",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}; both servers on 127.0.0.1 at once (idle while the other is measured), load "
        f"generators on the same cores; {seconds:.0f} s in all; load average before the run "
        f"{args.load_before:.1f}, after {os.getloadavg()[0]:.1f} (other processes' work falls on every cell).  ",
        f"Model: zoo `{args.model}` (the same weights: zoo/checkpoints/{args.model}.pt for TorchServe eager, "
        f"zoo/repository/{args.model} for TorchServe's ONNX path and artforge); input a {args.side}x{args.side} "
        f"JPEG photo ({input_kb} KB), JPEG q{QUALITY} out. TorchServe {args.torchserve_workers} worker(s) per "
        "model, batch size 1 (its default); artforge its defaults"
        + (f" with `{' '.join(args.artforge_flags)}`" if args.artforge_flags else "")
        + ("; rows `artforge gRPC image API, FLAGS` are more artforge servers started with those flags"
           if args.variant else "") + ".  ",
        f"Own generator: at most {args.requests} requests or {args.time_limit:g} s per cell, in {args.rounds} "
        "interleaved rounds (cells alternate server by server), each after up to 4 warm-up calls; latency per "
        f"request as the client sees it. perf_analyzer: {pa_settings}; its p50/p99.  ",
        "Server CPU: the server's process tree's CPU seconds per request served during the own generator's "
        "cells (warm-up calls included in both); "
        "graph batch: artforge's mean rows per graph run in the cell (its KServe statistics).",
        "",
        "Precision, as each server reports it:",
        "",
    ]
    lines += [f"- {name}: {text}" for name, text in precision.items()]
    if peers.skipped:
        lines += ["", "Skipped: " + "; ".join(peers.skipped) + "."]
    lines += ["", "| concurrency | server · path | sends | own: req/s | p50 ms | p99 ms | n | server CPU-s/req "
              "| graph batch | perf_analyzer: req/s | p50 ms | p99 ms | n |",
              "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in args.concurrency:
        for name in rows:
            cell, result = own.get((name, c)), pa.get((name, c))
            if cell is None and result is None:
                continue
            own_cols = (["-"] * 6 if cell is None else
                        [fmt(cell.throughput, 2), fmt(cell.ms(50), 0), fmt(cell.ms(99), 0),
                         str(len(cell.latencies)) + (f" ({len(cell.errors)} errors)" if cell.errors else ""),
                         fmt(cpu.get((name, c), float("nan")), 3), fmt(cell.batch, 2)])
            if result is None:
                pa_cols = ["-"] * 4
            elif result.error:
                pa_cols = [f"failed: {result.error}", "-", "-", "-"]
            else:
                pa_cols = [fmt(result.throughput, 2), fmt(result.p50_ms, 0), fmt(result.p99_ms, 0),
                           str(result.requests)]
            lines.append(f"| {c} | {name} | {sends(name)} | " + " | ".join(own_cols + pa_cols) + " |")
    lines += target_lines(args, own, pa)
    warnings = sum(r.timer_warnings for r in pa.values())
    lines += ["", "Notes: perf_analyzer's KServe runs send the decoded picture as a uint8 tensor and get one back "
              "(no JPEG decode or encode on the server), so its artforge row is not the same work as its "
              "TorchServe rows; the own generator's JPEG rows are. "
              + (f"perf_analyzer's torchserve mode printed \"Failed to update context stat: Timer not set "
                 f"correctly\" {warnings} times (once per request) and reads its HTTP timing breakdown as 0; "
                 "its throughput and latency still come from its own clock. " if warnings else "")
              + "Client and servers share the machine's cores: on 2 cores the client's own work weighs on every "
              "cell alike."]
    return "\n".join(lines) + "\n"


def target_lines(args: argparse.Namespace, own: dict[tuple[str, int], Cell],
                 pa: dict[tuple[str, int], PaResult]) -> list[str]:
    """The issue's target, per concurrency: artforge's JPEG paths against TorchServe's better path."""
    out = ["", "Target: artforge serve at least TorchServe's throughput at every concurrency, with lower p99 "
           "(own generator, JPEG in and out; against TorchServe's better path at that concurrency):", "",
           "| concurrency | TorchServe's best | artforge path | throughput ratio | p99 ratio | met |",
           "| ---: | --- | --- | ---: | ---: | --- |"]
    rows = 0
    for c in args.concurrency:
        peers = [(cell.throughput, name, cell) for name in ("TorchServe eager", "TorchServe ONNX")
                 if (cell := own.get((name, c))) is not None and cell.latencies]
        if not peers:
            continue
        _, peer_name, peer = max(peers, key=lambda item: item[0])
        for name in ("artforge HTTP image", "artforge gRPC image API"):
            cell = own.get((name, c))
            if cell is None:
                continue
            if not cell.latencies:
                out.append(f"| {c} | {peer_name} | {name} | - | - | **no** ({len(cell.errors)} errors) |")
                rows += 1
                continue
            ratio, p99 = cell.throughput / peer.throughput, cell.ms(99) / peer.ms(99)
            met = "yes" if ratio >= 1.0 and p99 < 1.0 else "**no**"
            out.append(f"| {c} | {peer_name} ({peer.throughput:.2f} req/s, p99 {peer.ms(99):.0f} ms) | {name} | "
                       f"{ratio:.2f} | {p99:.2f} | {met} |")
            rows += 1
    return out if rows else ["", "Target: not judged (no TorchServe figures in this run)."]


# -------------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "zoo" / "repository")
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "zoo" / "checkpoints",
                        help="the training checkpoints TorchServe's eager path loads (NAME.pt)")
    parser.add_argument("--model", default="mosaic", help="a stylizer in --repo with a checkpoint in --checkpoints")
    parser.add_argument("--side", type=int, default=512, help="the input picture's side")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--requests", type=int, default=60, help="own generator: most requests per cell")
    parser.add_argument("--time-limit", type=float, default=40, help="own generator: most seconds per cell")
    parser.add_argument("--rounds", type=int, default=3, help="own generator: interleaved rounds per cell")
    parser.add_argument("--pa-requests", type=int, default=20, help="perf_analyzer: requests per count window")
    parser.add_argument("--pa-trials", type=int, default=8, help="perf_analyzer: most windows per run")
    parser.add_argument("--pa-stability", type=float, default=25,
                        help="perf_analyzer: stable when the last 3 windows agree within this %% (its default 10 "
                        "rarely settles on a shared 2-core machine)")
    parser.add_argument("--pa-timeout", type=float, default=240, help="perf_analyzer: most seconds per run")
    parser.add_argument("--peers-venv", type=Path,
                        default=Path(os.environ.get("ARTFORGE_PEERS_VENV", ROOT.parent / "peers-venv")),
                        help="the venv holding TorchServe (default $ARTFORGE_PEERS_VENV, else ../peers-venv)")
    parser.add_argument("--torchserve-workers", type=int, default=1, help="TorchServe workers per model")
    parser.add_argument("--backend", default="auto", help="artforge serve's --backend")
    parser.add_argument("--artforge-flags", nargs=argparse.REMAINDER, default=[],
                        help="more `artforge serve` flags (last on the line)")
    parser.add_argument("--variant", action="append", default=[], metavar="FLAGS",
                        help="also measure an artforge server started with these extra flags (gRPC image API "
                        "only), e.g. --variant=\"--max-batch-size 1\"; repeatable")
    parser.add_argument("--no-perf-analyzer", action="store_true", help="the own generator only")
    parser.add_argument("--no-own", action="store_true", help="perf_analyzer only")
    parser.add_argument("--quick", action="store_true", help="a few requests per cell, to try the harness")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.time_limit, args.rounds = 6, 10, 1
        args.pa_requests, args.pa_trials, args.pa_stability = 4, 3, 100
    args.load_before = os.getloadavg()[0]
    checkpoint = args.checkpoints / f"{args.model}.pt"
    onnx = next(iter(sorted((args.repo / args.model).glob("*/model.onnx"), key=lambda p: int(p.parent.name))[-1:]),
                None)
    if onnx is None or not checkpoint.exists():
        sys.exit(f"{args.model}: needs {args.repo / args.model}/<version>/model.onnx and {checkpoint}")
    peers = find_peers(args.peers_venv)
    for line in peers.skipped:
        print(f"skipping {line}", flush=True)
    started = time.perf_counter()
    data = picture(args.side)
    name = args.model
    own: dict[tuple[str, int], Cell] = {}
    pa: dict[tuple[str, int], PaResult] = {}
    cpu: dict[tuple[str, int], float] = {}
    spent: dict[tuple[str, int], float] = {}
    served: dict[tuple[str, int], int] = {}
    precision: dict[str, str] = {}
    print(f"{machine()}; load average {args.load_before:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        jpeg = workdir / "picture.jpg"
        jpeg.write_bytes(data)
        (workdir / "tensor").mkdir()
        (workdir / "tensor" / "image").write_bytes(decode_image(data).tobytes())  # perf_analyzer's raw input
        (workdir / "torchserve.json").write_text(json.dumps({"data": [{"TORCHSERVE_INPUT": [str(jpeg)]}]}))
        (workdir / "ts").mkdir()
        (workdir / "af").mkdir()
        ts = (stack.enter_context(torchserve(peers, name, checkpoint, onnx, args.torchserve_workers,
                                             workdir / "ts")) if peers.torchserve else None)
        af = stack.enter_context(artforge(args.repo, name, ["--backend", args.backend, *args.artforge_flags],
                                          workdir / "af"))
        api = stack.enter_context(ImageClient(af.grpc_target, timeout=120))
        info = next(m for m in api.list_models() if m.name == name)
        precision["artforge"] = f"{info.backend} ({info.reason})" if info.reason else info.backend
        works: dict[str, tuple[Running, Callable[[], object]]] = {}
        seen: dict[str, dict[str, str]] = {"eager": {}, "onnx": {}}
        if ts is not None:
            works["TorchServe eager"] = (ts, post_work(ts.http_port, f"/predictions/{name}_eager", data,
                                                       "application/octet-stream", seen["eager"]))
            works["TorchServe ONNX"] = (ts, post_work(ts.http_port, f"/predictions/{name}_onnx", data,
                                                      "application/octet-stream", seen["onnx"]))
        works["artforge HTTP image"] = (af, post_work(af.http_port, f"/v1/models/{name}/stylize?format=jpeg"
                                                      f"&quality={QUALITY}", data, "image/jpeg"))
        works["artforge gRPC image API"] = (af, lambda: api.stylize(data, model=name, format="jpeg",
                                                                    quality=QUALITY))
        for i, flags in enumerate(args.variant):
            (workdir / f"af{i}").mkdir()
            server = stack.enter_context(artforge(args.repo, name, ["--backend", args.backend, *args.artforge_flags,
                                                                    *shlex.split(flags)], workdir / f"af{i}"))
            client = stack.enter_context(ImageClient(server.grpc_target, timeout=120))
            works[VARIANT + flags] = (server, lambda client=client: client.stylize(data, model=name, format="jpeg",
                                                                                   quality=QUALITY))
        if not args.no_own:
            order = list(works)
            for round_ in range(args.rounds):
                print(f"own generator, round {round_ + 1} of {args.rounds}", flush=True)
                for c in args.concurrency:
                    # Rotate who goes first, so that no server always meets the same neighbour's leftovers.
                    shift = (round_ + c) % len(order)
                    for path in order[shift:] + order[:shift]:
                        server, work = works[path]
                        cell = own.setdefault((path, c), Cell("Stylize", path, c))
                        before, done = process_tree_cpu(server.pid), len(cell.latencies) + len(cell.errors)
                        if server.grpc_target:  # artforge: count its graph batches too
                            measured(cell, work, -(-args.requests // args.rounds), args.time_limit / args.rounds,
                                     server.grpc_target, name)
                        else:
                            run_cell(cell, work, -(-args.requests // args.rounds), args.time_limit / args.rounds)
                        spent[(path, c)] = spent.get((path, c), 0.0) + process_tree_cpu(server.pid) - before
                        # run_cell's warm-up calls (min(c, 4) a round) cost the server too
                        served[(path, c)] = (served.get((path, c), 0) + len(cell.latencies) + len(cell.errors)
                                             - done + min(c, 4))
            cpu.update({key: spent[key] / served[key] for key in spent if served[key]})
        for path, label in (("eager", "eager"), ("onnx", "ONNX")):
            if seen[path].get("x-precision"):
                precision[f"TorchServe {label}"] = seen[path]["x-precision"]
        if peers.perf_analyzer and not args.no_perf_analyzer:
            for c in args.concurrency:
                runs = [("artforge KServe gRPC", dict(model=name, url=af.grpc_target, kind="kserve",
                                                      data=workdir / "tensor"))]
                if ts is not None:
                    runs += [(f"TorchServe {label}", dict(model=f"{name}_{path}", url=f"{HOST}:{ts.http_port}",
                                                          kind="torchserve", data=workdir / "torchserve.json"))
                             for path, label in (("eager", "eager"), ("onnx", "ONNX"))]
                for row, kwargs in runs:
                    result = perf_analyzer(peers, args, c, workdir, side=args.side, **kwargs)
                    pa[(row, c)] = result
                    print(f"  perf_analyzer c={c} {row:24} "
                          + (f"failed: {result.error}" if result.error else
                             f"{result.throughput:6.2f} req/s  p50 {result.p50_ms:7.0f}  p99 {result.p99_ms:7.0f} ms"),
                          flush=True)
    text = report(args, peers, precision, own, pa, cpu, time.perf_counter() - started, len(data) // 1024)
    print()
    print(text)
    if not args.no_write:
        write_section("peers", text)
        print("wrote benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
