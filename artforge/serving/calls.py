"""What every RPC handler shares: status mapping, metrics, statistics, deadlines.

Handlers raise artforge errors; `Calls.unary` turns them into one gRPC
status (never UNKNOWN) and records the request in Prometheus and in the
model's KServe statistics. Stream handlers use `Calls.call`, which returns
the status instead of aborting, so one bad item does not end the stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc

from artforge.serving.metrics import Metrics
from artforge.serving.model_manager import ModelManager
from artforge.serving.status import status_of

T = TypeVar("T")
R = TypeVar("R")
OK = grpc.StatusCode.OK
# In-flight items per stream: enough to fill batches, few enough that one
# client cannot park unbounded work in the server.
STREAM_WINDOW = 16


def deadline_in(*timeouts: float | None) -> float | None:
    """The event-loop time when the soonest of these timeouts (seconds from now; None = none) runs out."""
    limits = [t for t in timeouts if t is not None]
    return asyncio.get_running_loop().time() + min(limits) if limits else None


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The request's gRPC deadline in event-loop time (None: the client set none)."""
    return deadline_in(context.time_remaining())


class Calls:
    """Status mapping and accounting of one front end's requests (`protocol` labels its metrics)."""

    def __init__(self, manager: ModelManager, metrics: Metrics, protocol: str = "grpc") -> None:
        self._manager = manager
        self._metrics = metrics
        self._protocol = protocol

    def _record(self, method: str, model: str, code: grpc.StatusCode, started: float, per_model: bool) -> None:
        elapsed = time.perf_counter() - started
        label = self._manager.label(model)
        self._metrics.observe_request(label, method, code, elapsed, self._protocol)
        if per_model and label:
            try:
                served = self._manager.resolve(label)
            except Exception:  # not loaded (any more): nothing to count against
                return
            served.stats.record_request(code is OK, int(elapsed * 1e9))

    async def call(self, method: str, model: str, work: Callable[[], Awaitable[T]],
                   per_model: bool = True) -> tuple[T | None, grpc.StatusCode, str]:
        """Run one request; returns (result, OK, "") or (None, code, message)."""
        started = time.perf_counter()
        try:
            result = await work()
        except asyncio.CancelledError:
            # The client went away or its deadline passed: gRPC already answered it.
            self._record(method, model, grpc.StatusCode.CANCELLED, started, per_model)
            raise
        except Exception as error:
            code, message = status_of(error, method, self._manager.repo.path)
            self._record(method, model, code, started, per_model)
            return None, code, message
        self._record(method, model, OK, started, per_model)
        return result, OK, ""

    async def unary(self, method: str, model: str, context: grpc.aio.ServicerContext,
                    work: Callable[[], Awaitable[T]], per_model: bool = True) -> T:
        result, code, message = await self.call(method, model, work, per_model)
        if code is not OK:
            await context.abort(code, message)  # raises
        assert result is not None  # a handler's result is a response message
        return result


async def ordered_stream(requests: AsyncIterator[R], handle: Callable[[R, int], Awaitable[T]],
                         window: int = STREAM_WINDOW) -> AsyncIterator[T]:
    """Handle stream items concurrently (so they can share batches), yield answers in request order.

    `handle(request, index)` must not raise for a bad item; it returns the
    item's error response instead. At most `window` items are in flight;
    reading stops while the window is full, which pushes back on the client.
    """
    pending: asyncio.Queue[asyncio.Task | None] = asyncio.Queue(maxsize=window)

    async def read() -> None:
        index = 0
        try:
            async for request in requests:
                await pending.put(asyncio.ensure_future(handle(request, index)))
                index += 1
        finally:
            await pending.put(None)

    reader = asyncio.ensure_future(read())
    try:
        while (task := await pending.get()) is not None:
            yield await task
        await reader  # re-raises a read error (e.g. a malformed message)
    finally:
        reader.cancel()
        while not pending.empty():
            task = pending.get_nowait()
            if task is not None:
                task.cancel()
