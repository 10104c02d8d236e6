"""Shared helpers for the benchmarks: timing, machine description, RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: the CPU flags that decide which kernels and precisions run fast (bf16/int8 paths, AVX-512 variants)
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16",
               "amx_int8", "amx_tile", "avx_vnni")


def cpu_flags() -> list[str]:
    """The SPEED_FLAGS this CPU reports (/proc/cpuinfo), in SPEED_FLAGS order."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in SPEED_FLAGS if flag in present]
    except OSError:
        pass
    return []


def machine() -> str:
    flags = " ".join(cpu_flags()) or "none of " + " ".join(SPEED_FLAGS)
    return (f"{cpu_name()} (flags: {flags}), {os.cpu_count()} logical cores, "
            f"Python {platform.python_version()}")


def command_line() -> str:
    # Quoted where needed, so the recorded command can be pasted back into a shell.
    return "python " + shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])


def measure(fn: Callable[[], object], min_runs: int = 5, min_seconds: float = 1.0, warmup: int = 2) -> list[float]:
    """Wall-clock seconds of each call, after warm-up; at least min_runs and min_seconds."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def percentile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between this benchmark's markers in RESULTS.md."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    header = "# Benchmark results\n\nEach section says the command that made it.\n"
    text = RESULTS.read_text() if RESULTS.exists() else header
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(RESULTS)
