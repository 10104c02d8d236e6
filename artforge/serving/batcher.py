"""Dynamic batching for one model: merge concurrent requests into graph runs.

Requests (dicts of [n, ...] arrays, already validated) queue here; one
asyncio task forms batches and hands each to one of the model's instances,
threads of a private executor that call the model's `run` (the runtime's
one path to the graph: batch limits, fixed-batch padding; ONNX Runtime
releases the GIL, so instances run in parallel).

Forming a batch (Triton's dynamic batcher rules, simplified):

- Only requests with equal per-row shape and dtype merge: every request of
  a fixed-size model, stylizer requests of the same H and W. The oldest
  request picks the shape; others wait their turn.
- A batch holds at most max_batch_pixels image pixels (its memory grows
  with them; one request larger than that still runs, alone).
- A batch is sent when it reaches max_batch_size rows or max_batch_pixels, when the queued
  requests make up one of the preferred batch sizes, or when the oldest
  request has waited max_queue_delay. A delay of 0 sends what is queued at
  once, which still batches under load: while every instance is busy,
  requests pile up and the next free instance takes them together.
- An instance is claimed *before* the batch is formed, so a batch keeps
  growing until there is something to run it on.

Back-pressure and deadlines: a full queue refuses new requests at once
(RESOURCE_EXHAUSTED); a request whose deadline passes while queued is
dropped before it reaches the graph (DEADLINE_EXCEEDED); a request whose
caller went away (its future was cancelled) is skipped and frees its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from artforge.errors import ArtforgeError
from artforge.serving.metrics import Metrics
from artforge.serving.settings import ModelSettings
from artforge.serving.statistics import ModelStats
from artforge.serving.status import ModelNotReadyError, QueueDeadlineError, ServerBusyError

log = logging.getLogger("artforge.serving")

Feeds = dict[str, np.ndarray]
RunFn = Callable[[Feeds], Feeds]


@dataclass(eq=False)
class _Request:
    feeds: Feeds
    rows: int
    #: image pixels (rows x H x W of its NHWC inputs): what a batch's memory grows with
    pixels: int
    #: requests merge only when their keys (names, dtypes, per-row shapes) are equal
    key: tuple
    future: asyncio.Future
    deadline: float | None  # event-loop time
    enqueued: float = field(default=0.0)


def _key(feeds: Feeds) -> tuple:
    return tuple((name, array.dtype.str, array.shape[1:]) for name, array in sorted(feeds.items()))


def _pixels(feeds: Feeds) -> int:
    return sum(a.shape[0] * a.shape[1] * a.shape[2] for a in feeds.values() if a.ndim == 4)


class Batcher:
    """One model's queue, batch former and inference instances. Create and use it on the event loop."""

    def __init__(self, name: str, run: RunFn, settings: ModelSettings, stats: ModelStats, metrics: Metrics) -> None:
        self.name = name
        self._run = run
        self.settings = settings
        self._stats = stats
        self._metrics = metrics
        self._queue: deque[_Request] = deque()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.instances)
        self._executor = ThreadPoolExecutor(settings.instances, thread_name_prefix=f"artforge-infer-{name}")
        self._running: set[asyncio.Task] = set()
        self._hurry = False
        self._stopped = False
        # A sample from the start, so that an autoscaler reading the gauge sees 0, not "no data".
        metrics.set_queue_depth(name, 0)
        self._task = asyncio.get_running_loop().create_task(self._form_batches(), name=f"batcher-{name}")

    async def infer(self, feeds: Feeds, deadline: float | None = None) -> Feeds:
        """Queue one request and wait for its share of a batch's outputs.

        feeds: every model input as [n, ...] (n <= max_batch_size, checked by the caller).
        deadline: event-loop time after which the request is dropped with DEADLINE_EXCEEDED.
        """
        if self._stopped:
            raise ModelNotReadyError(f"model {self.name} was unloaded while the request was being prepared; "
                                     "retry it")
        loop = asyncio.get_running_loop()
        now = loop.time()
        if deadline is not None and deadline <= now:
            raise QueueDeadlineError(f"the request's deadline passed before it reached model {self.name}")
        self.check_room()
        rows = next(iter(feeds.values())).shape[0]
        request = _Request(feeds, rows, _pixels(feeds), _key(feeds), loop.create_future(), deadline, now)
        self._queue.append(request)
        self._metrics.set_queue_depth(self.name, len(self._queue))
        self._wake.set()
        if deadline is None:
            return await request.future
        try:
            # On timeout wait_for cancels the future, which takes it out of the queue.
            return await asyncio.wait_for(request.future, deadline - now)
        except TimeoutError:
            raise QueueDeadlineError(
                f"the request's deadline passed after {(loop.time() - now) * 1000:.0f} ms waiting for "
                f"model {self.name}") from None

    def check_room(self) -> None:
        """Raise ServerBusyError (RESOURCE_EXHAUSTED) when the queue is full.

        `infer` checks too; handlers also call this before decoding an image,
        so that an overloaded model refuses at once instead of after the work.
        """
        self._prune(asyncio.get_running_loop().time())
        if len(self._queue) >= self.settings.queue_size:
            raise ServerBusyError(
                f"model {self.name} has {len(self._queue)} requests waiting, its queue limit; "
                "retry later, or start the server with a larger --queue-size or more --instances")

    def hurry(self) -> None:
        """Stop waiting for batches to fill (shutdown): send whatever is queued now."""
        self._hurry = True
        self._wake.set()

    async def stop(self) -> None:
        """Stop forming batches; runs already on an instance finish in their thread."""
        self._stopped = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for request in self._queue:
            if not request.future.done():
                request.future.set_exception(ModelNotReadyError(f"model {self.name} was unloaded"))
        self._queue.clear()
        if self._running:
            await asyncio.wait(list(self._running))
        self._executor.shutdown(wait=False)
        self._metrics.set_queue_depth(self.name, 0)

    # -- forming batches ----------------------------------------------------------

    def _prune(self, now: float) -> None:
        """Drop requests whose caller left, and fail those past their deadline."""
        if not any(r.future.done() or (r.deadline is not None and r.deadline <= now) for r in self._queue):
            return
        kept: deque[_Request] = deque()
        for request in self._queue:
            if request.future.done():
                continue
            if request.deadline is not None and request.deadline <= now:
                request.future.set_exception(QueueDeadlineError(
                    f"the request's deadline passed while it waited for model {self.name}"))
                continue
            kept.append(request)
        self._queue = kept
        self._metrics.set_queue_depth(self.name, len(kept))

    def _pick(self) -> list[_Request] | None:
        """The batch to send now, or None to keep waiting (for more requests or the delay)."""
        settings = self.settings
        first = self._queue[0]
        picked: list[_Request] = []
        rows, pixels, prefix_rows = 0, 0, []
        full = False
        for request in self._queue:
            if request.key != first.key:
                continue
            if rows + request.rows > settings.max_batch_size:
                continue
            if picked and pixels + request.pixels > settings.max_batch_pixels:
                full = True  # a batch's memory grows with its pixels: large images go in smaller batches
                continue
            picked.append(request)
            rows += request.rows
            pixels += request.pixels
            prefix_rows.append(rows)
            if rows == settings.max_batch_size:
                full = True
                break
        if full or settings.max_queue_delay_s <= 0 or self._hurry:
            return picked
        preferred = [i for i, total in enumerate(prefix_rows) if total in settings.preferred_batch_sizes]
        if preferred:
            return picked[:preferred[-1] + 1]
        if asyncio.get_running_loop().time() >= first.enqueued + settings.max_queue_delay_s:
            return picked
        return None

    async def _next_batch(self) -> list[_Request]:
        loop = asyncio.get_running_loop()
        while True:
            self._prune(loop.time())
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._pick()
            if batch is not None:
                chosen = set(map(id, batch))
                self._queue = deque(r for r in self._queue if id(r) not in chosen)
                self._metrics.set_queue_depth(self.name, len(self._queue))
                return batch
            self._wake.clear()
            due = self._queue[0].enqueued + self.settings.max_queue_delay_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(due - loop.time(), 0))

    async def _form_batches(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self._slots.release()

    # -- running batches ----------------------------------------------------------

    async def _execute(self, batch: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            outputs, (input_ns, infer_ns, output_ns), size = await loop.run_in_executor(
                self._executor, self._run_batch, [r.feeds for r in batch])
        except Exception as error:  # every failure must reach the waiting callers
            if not isinstance(error, ArtforgeError):
                log.error("model %s: batch of %d failed", self.name, len(batch), exc_info=error)
                error = ArtforgeError(f"model {self.name}: inference failed ({type(error).__name__}: {error})")
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        for request, result in zip(batch, outputs, strict=True):
            if not request.future.done():
                request.future.set_result(result)
        waited = [started - r.enqueued for r in batch]
        self._stats.record_batch(size, [int(w * 1e9) for w in waited], input_ns, infer_ns, output_ns)
        self._metrics.observe_batch(self.name, size, infer_ns / 1e9, waited)

    def _run_batch(self, feeds: list[Feeds]) -> tuple[list[Feeds], tuple[int, int, int], int]:
        """In an instance thread: merge, run through the model (which pads a fixed graph batch), split per
        request."""
        t0 = time.perf_counter_ns()
        counts = [next(iter(f.values())).shape[0] for f in feeds]
        size = sum(counts)
        merged = feeds[0] if len(feeds) == 1 else {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}
        t1 = time.perf_counter_ns()
        outputs = self._run(merged)
        t2 = time.perf_counter_ns()
        results, start = [], 0
        for count in counts:
            results.append({name: out[start:start + count] for name, out in outputs.items()})
            start += count
        return results, (t1 - t0, t2 - t1, time.perf_counter_ns() - t2), size
