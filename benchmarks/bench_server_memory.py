"""Server memory per large Stylize request: artforge's defaults (tiled, ONNX Runtime without its arena) against
the same server told never to tile, side by side in one run.

Each case starts `python -m artforge serve` as its own process on 127.0.0.1
(so RSS is the server's alone), sends a warm-up, then the same large JPEG
twice, sampling the server's RSS every 20 ms; the table gives the RSS before,
the peak, and what the server still holds after. Writes the `server memory`
section of benchmarks/RESULTS.md.

    python benchmarks/bench_server_memory.py [--sides 2048 3072] [--backends onnxruntime openvino:fp32] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, write_section  # noqa: E402

from artforge.proto.artforge.v1 import image_service_pb2 as api  # noqa: E402
from artforge.proto.artforge.v1 import image_service_pb2_grpc as api_grpc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NEVER_TILE_MP = "100000"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def start(backend: str, tile_above: str) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "artforge", "serve", "--repo", str(ROOT / "zoo" / "repository"),
               "--host", "127.0.0.1", "--port", "0", "--no-metrics", "--no-http", "--backend", backend,
               "--max-message-mb", "256", "--tile-above", tile_above]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert server.stderr is not None
    for line in server.stderr:  # the server logs its address once it serves
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if found and "metrics" not in line.split(found.group(0))[0][-20:]:
            threading.Thread(target=server.stderr.read, daemon=True).start()  # keep draining
            return server, f"127.0.0.1:{found.group(1)}"
    raise RuntimeError(f"the server exited with {server.wait()}")


def case(backend: str, side: int, tile_above: str) -> dict[str, float]:
    photo = cv2.resize(cv2.imread(str(ROOT / "zoo" / "samples" / "astronaut.jpg")), (side, side))
    data = cv2.imencode(".jpg", photo)[1].tobytes()
    server, target = start(backend, tile_above)
    try:
        with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 256 << 20)]) as channel:
            stub = api_grpc.ImageServiceStub(channel)
            stub.Stylize(api.StylizeRequest(model="mosaic", image=cv2.imencode(".jpg", photo[:64, :64])[1].tobytes()),
                         timeout=120)
            before, peak, done = rss_mb(server.pid), [0.0], threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_mb(server.pid))
                    done.wait(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            started = time.perf_counter()
            for _ in range(2):
                stub.Stylize(api.StylizeRequest(model="mosaic", image=data, format="jpeg"), timeout=600)
            seconds = (time.perf_counter() - started) / 2
            done.set()
            sampler.join()
            return {"before": before, "peak": peak[0], "after": rss_mb(server.pid), "seconds": seconds}
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[2048, 3072])
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "openvino:fp32"])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("ARTFORGE_CACHE_DIR", str(ROOT / ".cache-bench"))
    rows = ["| backend | image | server | RSS before (MB) | peak (MB) | after (MB) | s per request |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for backend in args.backends:
        for side in args.sides:
            for label, tile_above in (("artforge defaults (tiled above 4 MP)", "4"), ("never tiled", NEVER_TILE_MP)):
                got = case(backend, side, tile_above)
                rows.append(f"| {backend} | {side}² JPEG | {label} | {got['before']:.0f} | {got['peak']:.0f} | "
                            f"{got['after']:.0f} | {got['seconds']:.1f} |")
                print(rows[-1], flush=True)
    body = "\n".join(["## Server memory per large Stylize request", "", f"`{command_line()}`", "",
                      f"Machine: {machine()}", "", *rows, "",
                      "Server RSS sampled every 20 ms over two requests after a warm-up; `after` is what it holds "
                      "once they are done. ONNX Runtime runs without its CPU arena in both rows."])
    if not args.no_write:
        write_section("server memory", body)
    print(body)


if __name__ == "__main__":
    main()
