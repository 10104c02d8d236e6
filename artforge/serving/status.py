"""From exceptions to gRPC status codes: one clear message, never UNKNOWN.

artforge.errors classes carry their code name (`grpc_code`); the serving
layer adds the situations only a server has (a model that is not ready,
a deadline that passed in the queue, model control that is off or not
allowed to this caller). Anything else is a bug in the server:
it is logged with its traceback and answered INTERNAL, so a client never
sees UNKNOWN and the server keeps serving.

What a client reads is also made safe to send (`for_client`): the
repository's path becomes its folder name (runtime errors name files by
their full path, which is right in a log and in the CLI, but tells every
client where the server keeps its models), and the sentence is bounded.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

import grpc

from artforge.errors import ArtforgeError, ResourceExhaustedError

log = logging.getLogger("artforge.serving")
#: longest status message sent; gRPC carries it in a trailer (16 KiB hard limit for all metadata)
MAX_MESSAGE_CHARS = 1024


class ModelNotReadyError(ArtforgeError):
    """The model exists but is not loaded, failed to load, or is the wrong kind for the call."""

    grpc_code = "FAILED_PRECONDITION"


class ServerBusyError(ResourceExhaustedError):
    """The request could run but the server is full right now (a model's queue, the memory budget): retrying
    later may succeed, unlike a request that is too large (HTTP tells them apart: 429 with Retry-After, 413)."""


class QueueDeadlineError(ArtforgeError):
    """The request's deadline passed before its inference ran (client.DeadlineExceededError is the client's)."""

    grpc_code = "DEADLINE_EXCEEDED"


class ModelControlOffError(ArtforgeError):
    """A load or unload request to a server started without --model-control explicit."""

    grpc_code = "FAILED_PRECONDITION"


class PermissionDeniedError(ArtforgeError):
    """The caller is authenticated (or no token is set) but may not make this call (auth.py)."""

    grpc_code = "PERMISSION_DENIED"


@functools.lru_cache(maxsize=8)
def _spellings(repository: Path) -> tuple[tuple[str, ...], str]:
    """The ways a message may spell the repository's path (longest first: one may contain another), and the
    folder name that replaces them."""
    resolved = repository.resolve()
    forms = {str(repository), str(repository.absolute()), str(resolved)} - {".", "/", ""}
    return tuple(sorted(forms, key=len, reverse=True)), resolved.name


def for_client(message: str, repository: Path | None = None) -> str:
    """`message` as a client may read it: the repository's path named by its folder name, at most
    MAX_MESSAGE_CHARS characters."""
    if repository is not None:
        forms, name = _spellings(repository)
        for form in forms:
            message = message.replace(form, name)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS - 3] + "..."
    return message


def status_of(error: BaseException, method: str = "", repository: Path | None = None) -> tuple[grpc.StatusCode, str]:
    """The status code and one-sentence message (see for_client) a client gets for `error`."""
    if isinstance(error, ArtforgeError):
        code = getattr(grpc.StatusCode, error.grpc_code, grpc.StatusCode.INTERNAL)
        return code, for_client(str(error), repository)
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the request finished"
    log.error("internal error in %s", method or "a request", exc_info=error)
    return grpc.StatusCode.INTERNAL, for_client(f"internal server error ({type(error).__name__}: {error})", repository)
