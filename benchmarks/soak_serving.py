"""Soak: `artforge serve` under good and malformed requests from many clients for minutes; RSS and statuses.

Starts `python -m artforge serve` as a subprocess on 127.0.0.1 (ephemeral
ports, `--model-control explicit` so that load requests reach their checks)
against a repository (default: the shipped zoo), then runs --clients
threads, each with its own channel, for --minutes. Each request is either
a good one (Classify, KServe ModelInfer, Stylize of a sample image, which
must succeed) or, with probability --fuzz-share, a malformed one from the
fuzz test's generator (tests/serving_fuzz.py: random bytes, mutated
messages, huge fields, bad options, unknown models, bad load configs,
streams mixing good and bad items). The server's resident memory (VmRSS
from /proc) is sampled every --sample seconds.

At the end: the server must still answer, must stop with exit status 0 on
SIGTERM, no request may have had UNKNOWN or INTERNAL (or hung past its
deadline), and the server's log must hold no ERROR line. Prints a
Markdown report (the command, the CPU, statuses by kind, RSS over time);
--report also writes it to a file. Exit status 1 when a check failed.

    python benchmarks/soak_serving.py [--minutes 2.5] [--clients 16] [--repo zoo/repository]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))  # the fuzz generator lives with the fuzz test
from common import command_line, machine  # noqa: E402
from serving_fuzz import Case, Targets, discover, good_cases, malformed_case, problems, send  # noqa: E402

HOST = "127.0.0.1"  # loopback only
SAMPLE = ROOT / "zoo" / "samples" / "chelsea.jpg"
#: client deadline per request; a malformed request is answered in milliseconds
TIMEOUT_S = 30.0


@dataclasses.dataclass
class Tally:
    """What the clients saw, shared by their threads."""

    by_status: collections.Counter[tuple[str, str]] = dataclasses.field(default_factory=collections.Counter)
    problems: list[str] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def add(self, kind: str, case: Case, code: grpc.StatusCode, found: list[str]) -> None:
        with self.lock:
            self.by_status[(kind, code.name)] += 1
            self.problems += [f"{kind} {case.what} -> {case.method}: {problem}" for problem in found]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of a process from /proc/PID/status, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def start_server(repo: Path, extra: list[str]) -> tuple[subprocess.Popen, int, list[str]]:
    """The server subprocess, its gRPC port and the list its stderr lines go to (read by a thread)."""
    command = [sys.executable, "-m", "artforge", "serve", "--repo", str(repo), "--host", HOST, "--port", "0",
               "--metrics-port", "0", "--model-control", "explicit", *extra]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert process.stderr is not None
    while line := process.stderr.readline():
        lines.append(line)
        if "artforge serving" in line:
            match = re.search(r"\| grpc \S+:(\d+) ", line)
            assert match, line
            threading.Thread(target=lambda: lines.extend(process.stderr or ()), daemon=True).start()
            return process, int(match.group(1)), lines
    raise SystemExit("the server did not start:\n" + "".join(lines))


def client(target: str, targets: Targets, seed: int, fuzz_share: float, until: float, tally: Tally,
           repo: Path) -> None:
    r = random.Random(seed)
    good = good_cases(targets)
    with grpc.insecure_channel(target) as channel:
        while time.monotonic() < until:
            if r.random() < fuzz_share:
                kind, case = "fuzz", malformed_case(r, targets)
            else:
                kind, case = "good", r.choice(good)
            outcome = send(channel, case, timeout=TIMEOUT_S)
            found = problems(outcome, repo)
            if kind == "good" and outcome.code != grpc.StatusCode.OK:
                found.append(f"a good request failed: {outcome.code.name} {outcome.details[:200]}")
            tally.add(kind, case, outcome.code, found)


def sample_image(side: int) -> bytes:
    image = cv2.imread(str(SAMPLE))
    ok, data = cv2.imencode(".jpg", cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA))
    assert ok
    return data.tobytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "zoo" / "repository")
    parser.add_argument("--minutes", type=float, default=2.5)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--fuzz-share", type=float, default=0.3, help="share of requests that are malformed")
    parser.add_argument("--side", type=int, default=256, help="side of the sample image good requests send")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", type=Path, help="also write the Markdown report here")
    parser.add_argument("server_flags", nargs="*", help="more `artforge serve` flags (after --)")
    args = parser.parse_args()

    process, port, log_lines = start_server(args.repo, args.server_flags)
    target = f"{HOST}:{port}"
    failures: list[str] = []
    try:
        with grpc.insecure_channel(target) as channel:
            targets = dataclasses.replace(discover(channel), image=sample_image(args.side))
        tally = Tally()
        started = time.monotonic()
        until = started + args.minutes * 60
        threads = [threading.Thread(target=client, args=(target, targets, args.seed * 1000 + i, args.fuzz_share,
                                                         until, tally, args.repo), daemon=True)
                   for i in range(args.clients)]
        rss = [(0.0, rss_mb(process.pid))]
        for thread in threads:
            thread.start()
        while (left := until - time.monotonic()) > 0:
            time.sleep(min(args.sample, left))
            if process.poll() is not None:
                failures.append(f"the server exited with {process.returncode} during the run")
                break
            rss.append((time.monotonic() - started, rss_mb(process.pid)))
        for thread in threads:
            thread.join(timeout=TIMEOUT_S + 5)
        elapsed = time.monotonic() - started
        peak = rss_mb(process.pid, "VmHWM") if process.poll() is None else float("nan")
        with grpc.insecure_channel(target) as channel:
            for case in good_cases(targets):
                outcome = send(channel, case, timeout=TIMEOUT_S)
                if outcome.code != grpc.StatusCode.OK:
                    failures.append(f"after the run, {case.method} got {outcome.code.name}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            status = process.wait()
    time.sleep(0.5)  # the stderr reader catches the last lines
    if status != 0:
        failures.append(f"the server exited with {status} after SIGTERM")
    failures += tally.problems
    errors = [line.strip() for line in log_lines if " ERROR " in line or "Traceback" in line]
    failures += [f"server log: {line[:300]}" for line in errors]

    report = render(args, elapsed, tally, rss, peak, log_lines, failures)
    print(report)
    if args.report:
        args.report.write_text(report)
    return 1 if failures else 0


def render(args: argparse.Namespace, elapsed: float, tally: Tally, rss: list[tuple[float, float]], peak: float,
           log_lines: list[str], failures: list[str]) -> str:
    total = sum(tally.by_status.values())
    codes = sorted({code for _, code in tally.by_status}, key=lambda c: (c != "OK", c))
    rows = [f"| {kind} | " + " | ".join(str(tally.by_status.get((kind, code), 0)) for code in codes)
            + f" | {sum(n for (k, _), n in tally.by_status.items() if k == kind)} |" for kind in ("good", "fuzz")]
    step = max(1, len(rss) // 12)
    samples = rss[::step] + ([rss[-1]] if (len(rss) - 1) % step else [])
    undecodable = sum("undecodable" in line for line in log_lines)
    warnings = sum(" WARNING " in line for line in log_lines)
    lines = [
        f"`{command_line()}`", "",
        f"Machine: {machine()}. {args.clients} clients (threads, one channel each) for {elapsed:.0f} s against "
        f"`{os.path.relpath(args.repo, ROOT)}`, {args.fuzz_share:.0%} of requests malformed; good requests send a "
        f"{args.side}x{args.side} JPEG. {total} requests, {total / elapsed:.0f}/s.", "",
        "| requests | " + " | ".join(codes) + " | all |", "| --- |" + " ---: |" * (len(codes) + 1), *rows, "",
        "| seconds | " + " | ".join(f"{t:.0f}" for t, _ in samples) + " |",
        "| --- |" + " ---: |" * len(samples),
        "| server RSS (MiB) | " + " | ".join(f"{mb:.0f}" for _, mb in samples) + " |", "",
        f"Peak RSS (VmHWM) {peak:.0f} MiB. Server log: {warnings} WARNING lines ({undecodable} about undecodable "
        f"requests, at most one a minute), {sum(' ERROR ' in line for line in log_lines)} ERROR lines.",
        "", "Checks: " + ("all passed (no UNKNOWN or INTERNAL, no missed deadline, every good request OK, the server "
                          "answered afterwards and exited 0 on SIGTERM)." if not failures else
                          f"{len(failures)} FAILED:"),
    ]
    lines += [f"- {failure}" for failure in failures[:20]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
