"""From a request's status to HTTP: the same sentence as gRPC, with the matching HTTP status.

Every error body is `{"error": "<sentence>"}`, the KServe REST error object,
on every route (image endpoints too), so one client check reads them all.
"""

from __future__ import annotations

import grpc

from artforge.serving.status import ModelNotReadyError, ServerBusyError

#: seconds a client is told to wait before retrying a request the server was too busy for
RETRY_AFTER_S = 1

_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.CANCELLED: 499,
}


class HttpError(Exception):
    """An error answer: status, the one-sentence message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def http_error(code: grpc.StatusCode, message: str, error: BaseException | None = None) -> HttpError:
    """The HTTP answer for a request that ended with `code` (and, when known, the exception behind it).

    RESOURCE_EXHAUSTED splits in two: a full server (a model's queue, the memory budget) is 429 with
    Retry-After, a request that is too large for this server (pixels, body, image count) is 413. A model
    that is not loaded is 503 (it may be loaded again); asking a model of the wrong kind is 400.
    """
    if isinstance(error, ServerBusyError):
        return HttpError(429, message, {"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(error, ModelNotReadyError):
        return HttpError(503, message)
    headers = {"WWW-Authenticate": "Bearer"} if code is grpc.StatusCode.UNAUTHENTICATED else None
    return HttpError(_STATUS.get(code, 500), message, headers)
