"""Requests that are not valid protobuf: INVALID_ARGUMENT and at most one log line a minute.

grpc.aio parses each request message with the method's request_deserializer
before any handler code runs; a DecodeError there becomes UNKNOWN
("Unexpected DecodeError") and a traceback logged at ERROR, per request,
and nothing the handler does can change that. So this interceptor gives
gRPC a copy of each method handler that takes the raw bytes (no
deserializer) and parses them itself, first thing in the handler, where a
failure can be answered with a status: INVALID_ARGUMENT, counted in the
metrics like any failed request, logged once a minute at most.

Stream requests are parsed as the handler iterates them. A handler that
reads with `context.read()` instead of iterating would get raw bytes; none
of this server's do. Synchronous handlers are left as they are.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc

from artforge.errors import InvalidInputError
from artforge.serving.metrics import Metrics

log = logging.getLogger("artforge.serving")
#: seconds between two log lines about undecodable requests (the ones between are counted)
LOG_INTERVAL_S = 60.0


class UndecodableRequestError(InvalidInputError):
    """Request bytes that do not parse as the method's message."""


class _Throttled:
    """One warning per interval; the line says how many were left unlogged since the previous one."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next = 0.0
        self._unlogged = 0

    def warn(self, method: str, size: int, error: Exception) -> None:
        now = time.monotonic()
        if now < self._next:
            self._unlogged += 1
            return
        more = f"; {self._unlogged} more since the last such line" if self._unlogged else ""
        log.warning("undecodable %s request of %d bytes (%s: %s), answered INVALID_ARGUMENT%s; the next such "
                    "line comes %.0f s from now at the earliest", method, size, type(error).__name__,
                    str(error)[:200], more, self._interval_s)
        self._next, self._unlogged = now + self._interval_s, 0


class RequestDecodingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: Metrics | None = None, log_interval_s: float = LOG_INTERVAL_S) -> None:
        self._metrics = metrics
        self._throttled = _Throttled(log_interval_s)
        #: method -> (the handler gRPC found, its raw-bytes copy); only methods that exist, so bounded
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
            handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = (handler, self._wrap(method, handler))
            self._wrapped[method] = cached
        return cached[1]

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        parse = handler.request_deserializer
        assert parse is not None  # intercept_service passes the others through
        descriptor = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
        what = descriptor.full_name if descriptor is not None else "protobuf"
        short = method.rsplit("/", 1)[-1]

        def decoded(raw: bytes) -> Any:
            try:
                return parse(raw)
            except Exception as error:  # DecodeError, and whatever else a parser raises on bad bytes
                self._throttled.warn(method, len(raw), error)
                raise UndecodableRequestError(f"the request is not a valid {what} message: protobuf cannot parse "
                                              f"its {len(raw)} bytes") from None

        async def decoded_stream(raw_iterator: AsyncIterator[bytes]) -> AsyncIterator[Any]:
            async for raw in raw_iterator:
                yield decoded(raw)

        async def refuse(error: UndecodableRequestError, context: grpc.aio.ServicerContext) -> None:
            if self._metrics is not None:
                self._metrics.observe_request("", short, grpc.StatusCode.INVALID_ARGUMENT, 0.0)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))

        behavior = cast(Callable[..., Any], handler.stream_stream or handler.stream_unary or handler.unary_stream
                        or handler.unary_unary)
        prepare: Callable[[Any], Any] = decoded_stream if handler.request_streaming else decoded
        if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
            return handler  # a synchronous handler: left alone

        # gRPC treats a handler by its kind (coroutine, or async generator), so the copy is of the same kind.
        # The abort happens here, in the handler's own coroutine: a stream handler may read its requests in
        # another task (calls.ordered_stream), and an abort from there would race the handler's writes.
        if inspect.isasyncgenfunction(behavior):
            async def streaming(raw: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                try:
                    async for response in behavior(prepare(raw), context):
                        yield response
                except UndecodableRequestError as error:
                    await refuse(error, context)
            wrapped: Callable[..., Any] = streaming
        else:
            async def unary(raw: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    return await behavior(prepare(raw), context)
                except UndecodableRequestError as error:
                    await refuse(error, context)
            wrapped = unary

        codec = {"request_deserializer": None, "response_serializer": handler.response_serializer}
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(wrapped, **codec)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(wrapped, **codec)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(wrapped, **codec)
        return grpc.unary_unary_rpc_method_handler(wrapped, **codec)
