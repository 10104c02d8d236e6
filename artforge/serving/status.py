"""From exceptions to gRPC status codes: one clear message, never UNKNOWN.

artforge.errors classes carry their code name (`grpc_code`); the serving
layer adds the two situations only a server has (a model that is not ready,
a deadline that passed in the queue). Anything else is a bug in the server:
it is logged with its traceback and answered INTERNAL, so a client never
sees UNKNOWN and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from artforge.errors import ArtforgeError, ResourceExhaustedError

log = logging.getLogger("artforge.serving")


class ModelNotReadyError(ArtforgeError):
    """The model exists but is not loaded, failed to load, or is the wrong kind for the call."""

    grpc_code = "FAILED_PRECONDITION"


class ServerBusyError(ResourceExhaustedError):
    """The request could run but the server is full right now (a model's queue, the memory budget): retrying
    later may succeed, unlike a request that is too large (HTTP tells them apart: 429 with Retry-After, 413)."""


class QueueDeadlineError(ArtforgeError):
    """The request's deadline passed before its inference ran (client.DeadlineExceededError is the client's)."""

    grpc_code = "DEADLINE_EXCEEDED"


def status_of(error: BaseException, method: str = "") -> tuple[grpc.StatusCode, str]:
    """The status code and one-sentence message a client gets for `error`."""
    if isinstance(error, ArtforgeError):
        code = getattr(grpc.StatusCode, error.grpc_code, grpc.StatusCode.INTERNAL)
        return code, str(error)
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the request finished"
    log.error("internal error in %s", method or "a request", exc_info=error)
    return grpc.StatusCode.INTERNAL, f"internal server error ({type(error).__name__}: {error})"
