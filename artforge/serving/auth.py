"""Who may call what: the bearer token, and who may load and unload models.

The token (`--token`) is required on every RPC except the overall health
check, which load balancers and Kubernetes probes call without credentials
and which reveals only SERVING / NOT_SERVING. Per-model health (health.py)
and the Prometheus endpoint (metrics.py) check the same token. The token is
compared in constant time. Use it together with TLS: over plain TCP it
crosses the network in the clear.

Model control (RepositoryModelLoad / RepositoryModelUnload) is off unless
the server runs with `--model-control explicit`, as in Triton; then a call
needs the token when one is set, and otherwise must come from this machine
(loopback). SIGHUP reloads every model whatever the mode: only a local user
can send it.
"""

from __future__ import annotations

import hmac
import ipaddress
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc

from artforge.serving.status import ModelControlOffError, PermissionDeniedError

HEALTH_PREFIX = "/grpc.health.v1.Health/"
UNAUTHENTICATED_MESSAGE = "missing or wrong credentials: send metadata 'authorization: Bearer <token>'"


class BearerToken:
    """The server's token, and the check of an `authorization` value against it."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the bearer token must not be empty")
        self._expected = f"bearer {token}".encode()

    def accepts(self, authorization: str | bytes | None) -> bool:
        """Whether an `authorization` header (gRPC metadata or HTTP) carries the token."""
        if authorization is None:
            return False
        text = authorization.decode(errors="replace") if isinstance(authorization, bytes) else authorization
        scheme, _, token = text.strip().partition(" ")
        # The scheme is case-insensitive (RFC 7235); the token is not.
        return hmac.compare_digest(f"{scheme.lower()} {token.strip()}".encode(), self._expected)

    def authorizes(self, metadata: Iterable[Any] | None) -> bool:
        """Whether gRPC invocation metadata ((key, value) pairs) carries the token."""
        for key, value in metadata or ():
            if key == "authorization":
                return self.accepts(value)
        return False


async def _deny_unary(request: object, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)


async def _deny_stream(request_or_iterator: object, context: grpc.aio.ServicerContext):
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
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
    """UNAUTHENTICATED for every RPC without the token, except the health service (which checks
    per-model requests itself, health.py)."""

    def __init__(self, token: BearerToken) -> None:
        self._token = token

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
            handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        if self._token.authorizes(handler_call_details.invocation_metadata):
            return handler
        return _denied(handler)


def is_loopback(peer: str) -> bool:
    """Whether a gRPC peer string ("ipv4:127.0.0.1:5000", "ipv6:%5B::1%5D:5000", "unix:...") is this machine."""
    scheme, _, rest = urllib.parse.unquote(peer).partition(":")
    if scheme in ("unix", "unix-abstract"):
        return True
    if scheme not in ("ipv4", "ipv6"):
        return False
    host = rest.rsplit(":", 1)[0].strip("[]").split("%")[0]  # drop the port, brackets and an IPv6 zone
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_model_control(mode: str, token_set: bool, peer: str, rpc: str) -> None:
    """Raise why `rpc` (a load or unload) may not run for this caller; return when it may.

    With a token the interceptor has already authenticated the caller.
    """
    if mode != "explicit":
        raise ModelControlOffError(
            f"{rpc} is off on this server (model control 'none', the default); start it with "
            "--model-control explicit to load and unload models (gRPC or HTTP), or send it SIGHUP to reload every "
            "model")
    if not token_set and not is_loopback(peer):
        raise PermissionDeniedError(
            f"{rpc} without a --token is accepted only from the server's own machine (loopback); start the "
            "server with --token (and TLS) to load and unload models from elsewhere")
