"""How long the server and the client wait: batch dispatch against the queue delay, and how soon a client gives up.

The tests assert these behaviours without a clock (a full batch beats a
deadline shorter than its queue delay; refused and timed-out calls log no
retry; the logged backoff follows the schedule); this measures the times
themselves, side by side, on a real server on 127.0.0.1 (in this process)
serving copies of the zoo's art_style classifier with batching configs:

- a lone request against a full batch of 8, both under a 2 s queue delay
  (the lone one waits the delay out, the full batch goes at once);
- a preferred batch of 2 under a 20 s queue delay;
- a client deadline of 0.3 s against a 3 s queue delay (DEADLINE_EXCEEDED);
- a refused token with retries=5 (refused once, not retried);
- a closed port with retries=3, backoff 0.05 s doubling to 0.2 s, jitter
  in [half, full] (0.175 to 0.35 s of waiting in all).

Each is repeated --rounds times, the rounds interleaved; the table gives the
median and the range. Writes the `waits` section of benchmarks/RESULTS.md.

    python benchmarks/bench_waits.py [--repo zoo/repository] [--rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine, write_section  # noqa: E402

from artforge.client import (  # noqa: E402
    AuthenticationError,
    DeadlineExceededError,
    ImageClient,
    ServerUnavailableError,
)
from artforge.runtime import encode_image  # noqa: E402
from artforge.serving.options import ServerOptions  # noqa: E402
from artforge.serving.server import Server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # loopback only
TOKEN = "bench"
#: model name -> config.pbtxt of a copy of the classifier
CONFIGS = {
    "delay2s": "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 2000000 }\n",
    "preferred": "max_batch_size: 8\ndynamic_batching { preferred_batch_size: [2] "
                 "max_queue_delay_microseconds: 20000000 }\n",
    "delay3s": "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 3000000 }\n",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def make_repository(source: Path, classifier: str, root: Path) -> Path:
    for name, config in CONFIGS.items():
        shutil.copytree(source / classifier, root / name)
        (root / name / "config.pbtxt").write_text(config)
    return root


def timed(call: Callable[[], object], expected: type[BaseException] | None = None) -> float:
    """Seconds `call` took; it must raise `expected` (or succeed when None)."""
    started = time.perf_counter()
    try:
        call()
    except BaseException as error:
        if expected is None or not isinstance(error, expected):
            raise
    else:
        if expected is not None:
            raise AssertionError(f"{call} succeeded; {expected.__name__} was expected")
    return time.perf_counter() - started


def cases(client: ImageClient, image: bytes, pool: ThreadPoolExecutor) -> dict[str, Callable[[], float]]:
    target = client.target

    def concurrent(model: str, count: int) -> float:
        def run() -> None:
            for future in [pool.submit(client.classify, image, model) for _ in range(count)]:
                future.result()
        return timed(run)

    def deadline() -> float:
        with ImageClient(target, token=TOKEN, timeout=0.3, retries=3) as short:
            return timed(lambda: short.classify(image, model="delay3s"), DeadlineExceededError)

    def refused() -> float:
        with ImageClient(target, token="wrong", retries=5) as wrong:
            return timed(wrong.list_models, AuthenticationError)

    def closed_port() -> float:
        with ImageClient(f"{HOST}:{free_port()}", retries=3, backoff_s=0.05, max_backoff_s=0.2) as nobody:
            return timed(lambda: nobody.classify(image, model="delay2s"), ServerUnavailableError)

    return {
        "1 request, 2 s queue delay": lambda: concurrent("delay2s", 1),
        "8 requests filling max_batch_size 8, 2 s queue delay": lambda: concurrent("delay2s", 8),
        "2 requests, preferred batch 2, 20 s queue delay": lambda: concurrent("preferred", 2),
        "client deadline 0.3 s, 3 s queue delay (DEADLINE_EXCEEDED)": deadline,
        "wrong token, retries=5 (UNAUTHENTICATED)": refused,
        "closed port, retries=3, backoff 0.05-0.2 s (UNAVAILABLE)": closed_port,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "zoo" / "repository")
    parser.add_argument("--classifier", default="art_style")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()

    image = encode_image(np.full((32, 32, 3), (200, 40, 40), np.uint8), "png")
    with tempfile.TemporaryDirectory(prefix="bench-waits-") as tmp:
        repo = make_repository(args.repo, args.classifier, Path(tmp))
        server = Server(ServerOptions(repo=repo, host=HOST, port=0, metrics_port=None, http_port=None, token=TOKEN,
                                      grace_s=1))
        port = server.start()
        try:
            with ThreadPoolExecutor(8) as pool, ImageClient(f"{HOST}:{port}", token=TOKEN, timeout=30) as client:
                work = cases(client, image, pool)
                for run in work.values():  # warm-up: the first call of each path connects and allocates
                    run()
                times: dict[str, list[float]] = {name: [] for name in work}
                for _ in range(args.rounds):
                    for name, run in work.items():
                        times[name].append(run())
        finally:
            server.stop(grace=0)

    rows = ["| what | median | range |", "|---|---:|---:|"]
    for name, values in times.items():
        rows.append(f"| {name} | {statistics.median(values) * 1000:.0f} ms "
                    f"| {min(values) * 1000:.0f}-{max(values) * 1000:.0f} ms |")
    body = "\n".join([
        "## Waits: batch dispatch against the queue delay, and how soon a client gives up", "",
        f"`{command_line()}` on {machine()}; {args.rounds} interleaved rounds after a warm-up, "
        f"copies of `{args.classifier}` (32x32 PNG in) on an in-process server on loopback.", "",
        *rows, "",
    ])
    print(body)
    if not args.no_write:
        write_section("waits", body)


if __name__ == "__main__":
    main()
