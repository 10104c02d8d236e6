"""Bearer-token check on every RPC except the health service.

Health stays open because load balancers and Kubernetes probes call it
without credentials; it reveals only SERVING / NOT_SERVING. The token is
compared in constant time. Use it together with TLS: over plain TCP the
token crosses the network in the clear.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import grpc

HEALTH_PREFIX = "/grpc.health.v1.Health/"
_MESSAGE = "missing or wrong credentials: send metadata 'authorization: Bearer <token>'"


async def _deny_unary(request: object, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, _MESSAGE)


async def _deny_stream(request_or_iterator: object, context: grpc.aio.ServicerContext):
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, _MESSAGE)
    yield  # pragma: no cover - makes this an async generator, as streaming handlers are


def _denied(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""
    codec = {"request_deserializer": handler.request_deserializer,
             "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_deny_stream, **codec)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_deny_unary, **codec)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_deny_stream, **codec)
    return grpc.unary_unary_rpc_method_handler(_deny_unary, **codec)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the bearer token must not be empty")
        self._expected = f"bearer {token}".encode()

    def _authorized(self, metadata: tuple | None) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                text = value.decode(errors="replace") if isinstance(value, bytes) else value
                scheme, _, token = text.strip().partition(" ")
                # The scheme is case-insensitive (RFC 7235); the token is not.
                return hmac.compare_digest(f"{scheme.lower()} {token.strip()}".encode(), self._expected)
        return False

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
            handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        if self._authorized(handler_call_details.invocation_metadata):
            return handler
        return _denied(handler)
