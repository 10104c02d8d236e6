"""The server's memory bound: every request is admitted against a budget of bytes.

A request's cost is estimated before anything is decoded, from its image
header (or tensor shapes) and its model's kind, and reserved until its
response is built; a request that does not fit waits for room (until its
deadline) and one that could never fit is refused at once with
RESOURCE_EXHAUSTED. So the request-scoped memory of the whole server, over
any mix of concurrent requests, stays under `--max-memory`, on top of the
models themselves (weights, compiled kernels; measured at load).

What keeps the estimates bounded: stylize requests over the tiling threshold
run tile by tile (runtime/tiling.py), so a graph never sees more than one
tile's pixels per request; the batcher caps the pixels of one merged batch;
and ONNX Runtime's CPU arena hands back the memory of any run over
RETAIN_PIXELS (onnxruntime_backend.py), so what a session keeps between
requests is bounded by a run of that size.

The per-pixel figures are measured upper bounds (docs/serving.md, "Memory"),
not exact accounting: they err high so the bound holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from artforge.errors import ResourceExhaustedError
from artforge.serving.status import ServerBusyError

MB = 1 << 20
#: activations a style network holds per pixel of its input while it runs: 382 B/px measured for the zoo's
#: width-1.0 network on ONNX Runtime without its arena at 2048x2048 (OpenVINO ~300), rounded up
STYLIZER_BYTES_PER_PIXEL = 400
#: activations per input pixel of a classifier (EfficientNet-Lite0 at 224x224 holds well under 50 MB)
CLASSIFIER_BYTES_PER_PIXEL = 1000
#: a generator's activations per output pixel (DCGAN at 64x64: a few hundred KB per image)
GENERATOR_BYTES_PER_PIXEL = 400
#: the copies one image request holds after decoding besides the graph: decoded RGB(A), padded RGB, output RGB(A),
#: encoded bytes: bytes per output pixel, generous (the decode itself is imageio.decode_cost_bytes)
IMAGE_COPIES_BYTES_PER_PIXEL = 24
#: the longest a request waits for room when it has no deadline of its own
MAX_WAIT_S = 60.0
#: the share of the machine's memory the default budget takes
DEFAULT_SHARE = 0.5


def machine_memory() -> int:
    """Bytes of memory this process may use: physical memory, or the cgroup (container) limit when lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            text = limit_file.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def default_max_memory() -> int:
    """The budget when --max-memory is not given: half of machine_memory()."""
    return int(machine_memory() * DEFAULT_SHARE)


def stylize_cost(decode_bytes: int, output_pixels: int, graph_pixels: int) -> int:
    """Bytes one Stylize request holds: its decode's peak (imageio.decode_cost_bytes), the image copies at
    output size, and the activations of the largest graph input it sends (the image, or one tile)."""
    return decode_bytes + output_pixels * IMAGE_COPIES_BYTES_PER_PIXEL + graph_pixels * STYLIZER_BYTES_PER_PIXEL


def classify_cost(decode_bytes: int, input_size: int) -> int:
    """Bytes one Classify request holds: its (possibly reduced) decode's peak and the network at its input size."""
    return decode_bytes + input_size ** 2 * CLASSIFIER_BYTES_PER_PIXEL


def generate_cost(count: int, output_pixels: int) -> int:
    """Bytes one Generate request holds: its images, encoded copies and the network's activations."""
    return count * output_pixels * (IMAGE_COPIES_BYTES_PER_PIXEL + GENERATOR_BYTES_PER_PIXEL)


def tensor_cost(request_bytes: int, image_pixels: int, kind_bytes_per_pixel: int) -> int:
    """Bytes one KServe request holds: its tensors three times (wire, parsed, outputs) and the activations of
    its image pixels (0 for latents)."""
    return 3 * request_bytes + image_pixels * kind_bytes_per_pixel


def _mb(amount: int) -> str:
    return f"{amount / MB:,.0f} MB"


class MemoryBudget:
    """Bytes reserved by requests in progress, at most `limit`. Use it on the event loop."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"a memory budget must be positive, got {limit}")
        self.limit = limit
        self.used = 0
        self._room = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, amount: int, deadline: float | None, what: str) -> AsyncIterator[None]:
        """Hold `amount` bytes for the block; wait for room until `deadline` (event-loop time).

        ResourceExhaustedError when the request could never fit; ServerBusyError (a ResourceExhaustedError)
        when no room was made before the deadline (or MAX_WAIT_S without one).
        """
        if amount > self.limit:
            raise ResourceExhaustedError(
                f"{what} needs about {_mb(amount)} of memory, over this server's limit of {_mb(self.limit)} "
                "(--max-memory); send a smaller image (or use max_side)")
        loop = asyncio.get_running_loop()
        until = loop.time() + MAX_WAIT_S if deadline is None else min(deadline, loop.time() + MAX_WAIT_S)
        async with self._room:
            while self.used + amount > self.limit:
                left = until - loop.time()
                if left <= 0:
                    raise ServerBusyError(
                        f"{what} needs about {_mb(amount)} of memory and the server's budget stayed full "
                        f"({_mb(self.used)} of {_mb(self.limit)} in use by other requests); retry later")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), left)
            self.used += amount
        try:
            yield
        finally:
            async with self._room:
                self.used -= amount
                self._room.notify_all()
