"""Client SDK for the artforge.v1 image API: ImageClient (blocking) and AsyncImageClient (asyncio).

    from artforge.client import ImageClient

    with ImageClient("127.0.0.1:8001", token=os.environ.get("ARTFORGE_TOKEN")) as client:
        client.classify("painting.jpg", top_k=3)        # [("impressionism", 0.91), ...]
        client.generate(4, seed=0)                       # [png bytes, ...]
        client.stylize("photo.jpg", model="mosaic")      # jpeg bytes (the input's format)
        for result in client.stylize_many(paths, model="mosaic"):
            if result.ok:
                Path(f"out/{result.index}.jpg").write_bytes(result.image)
            else:
                print(result.index, result.error)

An `image` is encoded bytes, a file path (read as-is, never re-encoded) or a
numpy RGB / RGBA / grayscale uint8 array (sent as a fast, lossless PNG). The
server decodes, resizes and encodes, so the client needs no model knowledge.

Errors are artforge.errors types carrying the server's sentence:
INVALID_ARGUMENT -> InvalidInputError, NOT_FOUND -> NotFoundError,
RESOURCE_EXHAUSTED -> ResourceExhaustedError. What only a remote call can
meet has its own RemoteError subclasses naming the server:
ServerUnavailableError (UNAVAILABLE after the retries), DeadlineExceededError
(also a TimeoutError), AuthenticationError (UNAUTHENTICATED / PERMISSION_DENIED);
anything else (FAILED_PRECONDITION: model not ready or of the wrong kind,
INTERNAL, ...) is a RemoteError with `.code`.

Retries: only UNAVAILABLE is retried (the server was not reached, or was
shutting down and refused new calls, so the request did no work), at most
`retries` times, with exponential backoff and jitter so that many clients
of a restarted server do not come back in lockstep. `timeout` bounds the
whole unary call, retries included. Streams resume after UNAVAILABLE: the
items that had no answer yet are sent again on a new stream.

stylize_many reports per-item failures as StylizeResult objects (`ok`,
`error`, `unwrap()`), not exceptions, because an exception would end the
iteration and lose the rest of the batch; stream-wide failures (server gone
after the retries, deadline, cancel) raise.

This module imports neither torch nor the runtime (no onnxruntime): an app
that only talks to a server needs grpcio, protobuf and numpy, plus OpenCV
when it passes numpy arrays.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from artforge import __version__
from artforge.defaults import CLIENT_RETRIES, CLIENT_TIMEOUT_S
from artforge.errors import ArtforgeError, InvalidInputError, NotFoundError, ResourceExhaustedError
from artforge.proto.artforge.v1 import image_service_pb2 as api
from artforge.proto.artforge.v1 import image_service_pb2_grpc as api_grpc

log = logging.getLogger("artforge.client")

DEFAULT_BACKOFF_S = 0.1
DEFAULT_MAX_BACKOFF_S = 2.0
#: the server's default limit; gRPC's own 4 MB default would refuse large PNGs
DEFAULT_MAX_MESSAGE_MB = 64.0
#: stream items sent but not answered yet: twice the server's in-flight window, so the
#: server always has the next items at hand, while client memory stays bounded
STREAM_WINDOW = 32

#: what an `image` argument may be
ImageInput = bytes | bytearray | memoryview | str | os.PathLike | np.ndarray

CLASSIFIER, GENERATOR, STYLIZER = "classifier", "generator", "stylizer"


# ------------------------------------------------------------------------ errors

class RemoteError(ArtforgeError):
    """The server answered with a status that has no closer artforge error type."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN) -> None:
        super().__init__(message)
        self.code = code
        self.grpc_code = code.name


class ServerUnavailableError(RemoteError):
    """The server could not be reached (or refused new calls) on every attempt."""


class DeadlineExceededError(RemoteError, TimeoutError):
    """The call's deadline passed before the server answered."""


class AuthenticationError(RemoteError, PermissionError):
    """The server wants a (different) bearer token."""


_MAPPED: dict[grpc.StatusCode, type[ArtforgeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInputError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
}


def error_from_status(code: grpc.StatusCode, details: str, target: str, method: str,
                      attempts: int = 1, timeout: float | None = None) -> ArtforgeError:
    """The artforge error for a gRPC status (also used for the in-band errors of a stream)."""
    details = details or code.name
    if code in _MAPPED:
        return _MAPPED[code](details)
    if code == grpc.StatusCode.UNAVAILABLE:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return ServerUnavailableError(
            f"artforge server {target} is unavailable{tries} ({details}); check that it is running and reachable",
            code)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        limit = f" within {timeout:g} s" if timeout is not None else ""
        return DeadlineExceededError(
            f"artforge server {target} did not finish {method}{limit} ({details}); allow a longer timeout", code)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return AuthenticationError(
            f"artforge server {target} refused {method}: {details}; pass token= (CLI: --token or $ARTFORGE_TOKEN)",
            code)
    return RemoteError(f"artforge server {target} answered {method} with {code.name}: {details}", code)


def _code_of(code_value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == code_value:
            return code
    return grpc.StatusCode.UNKNOWN


# ------------------------------------------------------------------ result types

@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelInfo:
    """One ListModels entry (see image_service.proto's ModelInfo)."""

    name: str
    kind: str
    versions: tuple[str, ...]
    ready: bool
    reason: str = ""
    backend: str = ""
    labels: tuple[str, ...] = ()
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()


@dataclass
class StylizeResult:
    """One stylize_many answer: the image, or the error of this item alone."""

    #: position of the item in the input sequence
    index: int
    image: bytes = b""
    format: str = ""
    width: int = 0
    height: int = 0
    model: str = ""
    model_version: str = ""
    error: ArtforgeError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> bytes:
        """The image bytes, or raise this item's error."""
        if self.error is not None:
            raise self.error
        return self.image


def _tensors(items: Iterable[api.TensorInfo]) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(t.name, t.datatype, tuple(t.shape)) for t in items)


def _model_info(m: api.ModelInfo) -> ModelInfo:
    return ModelInfo(name=m.name, kind=m.kind, versions=tuple(m.versions), ready=m.ready, reason=m.reason,
                     backend=m.backend, labels=tuple(m.labels), inputs=_tensors(m.inputs),
                     outputs=_tensors(m.outputs))


# ------------------------------------------------------------------------ images

def _encode_array(array: np.ndarray) -> bytes:
    import cv2  # only arrays need OpenCV; bytes and paths go to the server untouched

    if array.dtype != np.uint8:
        raise InvalidInputError(f"an image array must be uint8, got {array.dtype}; convert it or pass encoded bytes")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        bgr = array
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    else:
        raise InvalidInputError(f"an image array must be HxW, HxWx3 (RGB) or HxWx4 (RGBA), got shape {array.shape}")
    if array.size == 0:
        raise InvalidInputError(f"an image array must not be empty, got shape {array.shape}")
    # PNG is lossless; level 1 because this is transport, not storage: the
    # server decodes it at once, and level 1 is several times faster than the default.
    ok, encoded = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise InvalidInputError(f"OpenCV could not encode a {array.shape} array as PNG")
    return encoded.tobytes()


def image_bytes(image: ImageInput) -> bytes:
    """Encoded bytes for an `image` argument: bytes as-is, a file's contents, or an array as PNG."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, (bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, np.ndarray):
        return _encode_array(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"image file {path} does not exist") from None
        except IsADirectoryError:
            raise InvalidInputError(f"{path} is a folder, not an image file") from None
        except OSError as error:
            raise InvalidInputError(f"image file {path} cannot be read ({error.strerror})") from None
    raise InvalidInputError(f"an image must be encoded bytes, a file path or a numpy array, "
                            f"not {type(image).__name__}")


def _read(path: str | os.PathLike | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InvalidInputError(f"{what} {path} cannot be read ({error.strerror})") from None


# -------------------------------------------------------------------- stream state

@dataclass
class _Item:
    index: int
    request: api.StylizeRequest | None = None
    error: ArtforgeError | None = None  # set when the item failed on this side (unreadable file)


@dataclass
class _StreamState:
    """Items in input order that have no result yet; shared by the sync and the async stream.

    Responses come back in request order, so the next response belongs to
    the first item that was sent; items that failed before sending wait in
    the same queue so that results keep the input order.
    """

    target: str
    in_flight: int = 0
    pending: collections.deque[_Item] = field(default_factory=collections.deque)

    def add(self, item: _Item) -> None:
        self.pending.append(item)
        if item.request is not None:
            self.in_flight += 1

    def local_failures(self) -> list[StylizeResult]:
        """Failed-before-sending items now at the front (their turn has come)."""
        out = []
        while self.pending and self.pending[0].request is None:
            item = self.pending.popleft()
            out.append(StylizeResult(index=item.index, error=item.error))
        return out

    def answer(self, response: api.StylizeResponse) -> list[StylizeResult]:
        """Results completed by `response`: any local failures before its item, then its item."""
        out = self.local_failures()
        if not self.pending:
            raise RemoteError(f"artforge server {self.target} sent more StylizeStream answers than requests")
        item = self.pending.popleft()
        self.in_flight -= 1
        if response.request_id != str(item.index):
            raise RemoteError(f"artforge server {self.target} answered StylizeStream out of order "
                              f"(item {response.request_id!r} where {item.index} was due)")
        error = None
        if response.HasField("error"):
            error = error_from_status(_code_of(response.error.code), response.error.message, self.target,
                                      "StylizeStream")
        out.append(StylizeResult(index=item.index, image=response.image, format=response.format,
                                 width=response.width, height=response.height, model=response.model,
                                 model_version=response.model_version, error=error))
        return out

    def unanswered(self) -> list[api.StylizeRequest]:
        """Requests to send again on a new stream after the old one broke."""
        return [item.request for item in self.pending if item.request is not None]


# ------------------------------------------------------------------------ clients

class _ClientBase:
    """Options, channel arguments, retries and error mapping shared by both clients."""

    def __init__(self, target: str, *, timeout: float | None = CLIENT_TIMEOUT_S, retries: int = CLIENT_RETRIES,
                 backoff_s: float = DEFAULT_BACKOFF_S, max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
                 token: str | None = None, tls: bool = False, root_certificates: str | os.PathLike | None = None,
                 client_cert: str | os.PathLike | None = None, client_key: str | os.PathLike | None = None,
                 tls_server_name: str | None = None, max_message_mb: float = DEFAULT_MAX_MESSAGE_MB) -> None:
        if not target:
            raise InvalidInputError("the server target must be HOST:PORT, e.g. 127.0.0.1:8001")
        if timeout is not None and timeout <= 0:
            raise InvalidInputError(f"timeout must be positive seconds (or None for no deadline), got {timeout}")
        if retries < 0:
            raise InvalidInputError(f"retries must not be negative, got {retries}")
        if (client_cert is None) != (client_key is None):
            raise InvalidInputError("a client certificate needs both client_cert and client_key (PEM files)")
        self.target = target
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._tls = tls or root_certificates is not None or client_cert is not None
        self._credentials = (grpc.ssl_channel_credentials(
            root_certificates=_read(root_certificates, "TLS root certificate file"),
            private_key=_read(client_key, "TLS client key file"),
            certificate_chain=_read(client_cert, "TLS client certificate file")) if self._tls else None)
        limit = int(max_message_mb * 1024 * 1024)
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit),
            # gRPC waits 1 s (growing to 120 s) before reconnecting to a server that refused
            # it, and calls fail at once meanwhile; retries would then be wasted inside that
            # window, so the channel reconnects on the retry schedule instead. (Not
            # min_reconnect_backoff_ms: gRPC uses it as the connect timeout, 20 s by default,
            # which a slow network needs.)
            ("grpc.initial_reconnect_backoff_ms", max(1, int(backoff_s * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(1, int(max_backoff_s * 1000))),
            ("grpc.primary_user_agent", f"artforge-client/{__version__}"),
        ]
        if tls_server_name:
            self._options.append(("grpc.ssl_target_name_override", tls_server_name))
        if token and not self._tls and not _is_loopback(target):
            log.warning("sending a bearer token to %s without TLS: anyone on the network path can read it", target)
        self._defaults: dict[str, str] = {}
        self._channel = self._open_channel()
        self._stub = api_grpc.ImageServiceStub(self._channel)

    def _open_channel(self) -> Any:
        raise NotImplementedError

    def _retry_delay(self, error: grpc.RpcError, attempt: int, deadline: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None when `error` is final."""
        if error.code() != grpc.StatusCode.UNAVAILABLE or attempt > self.retries:
            return None
        # Exponential growth, capped, with "equal jitter": half fixed, half random,
        # which spreads retrying clients out yet keeps a floor on each wait.
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        delay = ceiling * random.uniform(0.5, 1.0)
        if deadline is not None and time.monotonic() + delay >= deadline:
            return None
        return delay

    def _error(self, error: grpc.RpcError, method: str, attempts: int, timeout: float | None) -> ArtforgeError:
        return error_from_status(error.code(), error.details() or "", self.target, method, attempts, timeout)

    @staticmethod
    def _deadline(timeout: float | None) -> float | None:
        return None if timeout is None else time.monotonic() + timeout

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        # A tiny positive floor: gRPC treats 0 as "already expired", which is what we want.
        return None if deadline is None else max(0.001, deadline - time.monotonic())

    def _pick(self, models: list[ModelInfo], kind: str) -> str:
        """The first ready model of `kind` (the server sorts by name), as the local CLI picks the first."""
        ready = [m.name for m in models if m.kind == kind and m.ready]
        if not ready:
            known = ", ".join(f"{m.name} ({m.kind or '?'}{'' if m.ready else ', not ready'})" for m in models)
            raise NotFoundError(f"artforge server {self.target} has no ready {kind} model; pass a model name "
                                f"(its models: {known or 'none'})")
        return ready[0]

    @staticmethod
    def _stylize_request(model: str, image: bytes, format: str | None, quality: int | None,
                         max_side: int | None, request_id: str = "") -> api.StylizeRequest:
        return api.StylizeRequest(model=model, image=image, format=(format or "").lower(), quality=quality or 0,
                                  max_side=max_side or 0, request_id=request_id)


def _is_loopback(target: str) -> bool:
    host = target.rsplit(":", 1)[0].strip("[]").removeprefix("dns:///").removeprefix("ipv4:")
    return host in ("localhost", "::1") or host.startswith("127.") or target.startswith("unix:")


def _prepare(index: int, image: ImageInput, make: Callable[[bytes, str], api.StylizeRequest]) -> _Item:
    try:
        return _Item(index, request=make(image_bytes(image), str(index)))
    except ArtforgeError as error:
        return _Item(index, error=error)


class ImageClient(_ClientBase):
    """Blocking client; thread-safe (one channel, shared by every thread).

    target: "host:port" (any gRPC target string works, e.g. "unix:/run/artforge.sock").
    timeout: seconds per unary call, retries included; None = no deadline.
    retries: extra attempts after UNAVAILABLE, with backoff from backoff_s doubling to max_backoff_s.
    token: sent as `authorization: Bearer <token>`.
    tls / root_certificates / client_cert / client_key: TLS (root_certificates None = the system's
    roots); a client certificate for servers that require one; tls_server_name overrides the name
    checked against the server's certificate.
    max_message_mb: largest message in either direction.
    """

    def _open_channel(self) -> grpc.Channel:
        if self._credentials is not None:
            return grpc.secure_channel(self.target, self._credentials, options=self._options)
        return grpc.insecure_channel(self.target, options=self._options)

    def _unary(self, method: str, request: Any) -> Any:
        call = getattr(self._stub, method)
        deadline = self._deadline(self.timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                return call(request, timeout=self._remaining(deadline), metadata=self._metadata)
            except grpc.RpcError as error:
                delay = self._retry_delay(error, attempt, deadline)
                if delay is None:
                    raise self._error(error, method, attempt, self.timeout) from None
                log.info("%s on %s: UNAVAILABLE (%s); retry %d of %d in %.2f s", method, self.target,
                         error.details(), attempt, self.retries, delay)
                time.sleep(delay)

    def list_models(self) -> list[ModelInfo]:
        """Every model on the server, ready or not, sorted by name."""
        return [_model_info(m) for m in self._unary("ListModels", api.ListModelsRequest()).models]

    def default_model(self, kind: str) -> str:
        """The model used when none is named: the server's first ready model of `kind` (cached)."""
        if kind not in self._defaults:
            self._defaults[kind] = self._pick(self.list_models(), kind)
        return self._defaults[kind]

    def classify(self, image: ImageInput, model: str | None = None, top_k: int = 5) -> list[tuple[str, float]]:
        """Top-k (label, probability) pairs, best first."""
        request = api.ClassifyRequest(model=model or self.default_model(CLASSIFIER), image=image_bytes(image),
                                      top_k=top_k)
        return [(label.label, label.score) for label in self._unary("Classify", request).labels]

    def generate(self, count: int, seed: int | None = None, model: str | None = None, format: str = "png",
                 quality: int | None = None) -> list[bytes]:
        """`count` encoded images; the same seed, count and model version give the same images."""
        request = api.GenerateRequest(model=model or self.default_model(GENERATOR), count=count, seed=seed,
                                      format=format, quality=quality or 0)
        return list(self._unary("Generate", request).images)

    def stylize(self, image: ImageInput, model: str | None = None, format: str | None = None,
                quality: int | None = None, max_side: int | None = None) -> bytes:
        """The stylized image, encoded as `format` ("jpeg", "png", "webp"; None = the input's format)."""
        request = self._stylize_request(model or self.default_model(STYLIZER), image_bytes(image), format, quality,
                                        max_side)
        return self._unary("Stylize", request).image

    def stylize_many(self, images: Iterable[ImageInput], model: str | None = None, format: str | None = None,
                     quality: int | None = None, max_side: int | None = None, timeout: float | None = None,
                     window: int = STREAM_WINDOW) -> Iterator[StylizeResult]:
        """One StylizeResult per image, in input order, over one StylizeStream.

        `images` is consumed lazily, at most `window` items ahead of the
        results. timeout bounds the whole stream (default: none, since a
        folder may take hours). Breaking out of the loop cancels the stream.
        """
        name = model or self.default_model(STYLIZER)

        def make(data: bytes, request_id: str) -> api.StylizeRequest:
            return self._stylize_request(name, data, format, quality, max_side, request_id)

        return _SyncStream(self, enumerate(images), make, window, timeout).results()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ImageClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _SyncStream:
    """StylizeStream with a bounded window and resume after UNAVAILABLE (see _StreamState).

    gRPC consumes the request generator in its own thread; `cond` guards the
    shared state. Each (re)opened stream has a generation number: a request
    generator of an older stream returns as soon as it notices, and the
    source lock makes sure an item it was still preparing lands in `pending`
    before a new stream takes the unsent items from there.
    """

    def __init__(self, client: ImageClient, source: Iterator[tuple[int, ImageInput]],
                 make: Callable[[bytes, str], api.StylizeRequest], window: int, timeout: float | None) -> None:
        self._client = client
        self._source = source
        self._make = make
        self._window = max(1, window)
        self._timeout = timeout
        self._state = _StreamState(client.target)
        self._cond = threading.Condition()
        self._source_lock = threading.Lock()
        self._generation = 0
        self._exhausted = False
        self._source_error: BaseException | None = None

    def _requests(self, generation: int) -> Iterator[api.StylizeRequest]:
        with self._source_lock, self._cond:
            resend = self._state.unanswered() if generation == self._generation else []
        yield from resend
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._state.in_flight < self._window or self._generation != generation)
                if self._generation != generation or self._exhausted:
                    return
            with self._source_lock:
                with self._cond:
                    if self._generation != generation or self._exhausted:
                        return
                try:
                    index, image = next(self._source)
                except StopIteration:
                    item = None
                except Exception as error:  # the caller's iterable failed: end the stream, raise it later
                    item, self._source_error = None, error
                else:
                    item = _prepare(index, image, self._make)
                with self._cond:
                    if item is None:
                        self._exhausted = True
                        self._cond.notify_all()
                        return
                    self._state.add(item)
                    if self._generation != generation:
                        return  # the next stream sends it
            if item.request is not None:
                yield item.request

    def results(self) -> Iterator[StylizeResult]:
        client = self._client
        deadline = client._deadline(self._timeout)
        failures = 0
        try:
            while True:
                with self._cond:
                    generation = self._generation
                call = client._stub.StylizeStream(self._requests(generation), timeout=client._remaining(deadline),
                                                  metadata=client._metadata)
                try:
                    for response in call:
                        with self._cond:
                            done = self._state.answer(response)
                            self._cond.notify_all()
                        failures = 0  # progress: the retry budget is for consecutive failures
                        yield from done
                except grpc.RpcError as error:
                    self._next_generation()
                    failures += 1
                    delay = client._retry_delay(error, failures, deadline)
                    if delay is None:
                        raise client._error(error, "StylizeStream", failures, self._timeout) from None
                    log.info("StylizeStream on %s: UNAVAILABLE (%s); resuming %d unanswered item(s), retry %d of %d "
                             "in %.2f s", client.target, error.details(), len(self._state.unanswered()), failures,
                             client.retries, delay)
                    time.sleep(delay)
                    continue
                finally:
                    call.cancel()  # no-op after a clean end; stops the RPC when the caller stopped iterating
                with self._cond:
                    rest = self._state.local_failures()
                    stuck = self._state.in_flight
                yield from rest
                if self._source_error is not None:
                    raise self._source_error
                if stuck:
                    raise RemoteError(f"artforge server {client.target} ended StylizeStream with {stuck} "
                                      f"item(s) unanswered")
                return
        finally:
            self._next_generation()

    def _next_generation(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()


class AsyncImageClient(_ClientBase):
    """The asyncio client: the same options and methods as ImageClient, as coroutines.

    Create and use it inside one running event loop. stylize_many is an async
    generator and takes a sync or an async iterable of images.
    """

    def _open_channel(self) -> grpc.aio.Channel:
        if self._credentials is not None:
            return grpc.aio.secure_channel(self.target, self._credentials, options=self._options)
        return grpc.aio.insecure_channel(self.target, options=self._options)

    async def _unary(self, method: str, request: Any) -> Any:
        call = getattr(self._stub, method)
        deadline = self._deadline(self.timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call(request, timeout=self._remaining(deadline), metadata=self._metadata)
            except grpc.RpcError as error:
                delay = self._retry_delay(error, attempt, deadline)
                if delay is None:
                    raise self._error(error, method, attempt, self.timeout) from None
                log.info("%s on %s: UNAVAILABLE (%s); retry %d of %d in %.2f s", method, self.target,
                         error.details(), attempt, self.retries, delay)
                await asyncio.sleep(delay)

    async def list_models(self) -> list[ModelInfo]:
        return [_model_info(m) for m in (await self._unary("ListModels", api.ListModelsRequest())).models]

    async def default_model(self, kind: str) -> str:
        if kind not in self._defaults:
            self._defaults[kind] = self._pick(await self.list_models(), kind)
        return self._defaults[kind]

    @staticmethod
    async def _bytes(image: ImageInput) -> bytes:
        # Reading a file or PNG-encoding an array blocks; keep it off the event loop.
        if isinstance(image, bytes):
            return image
        return await asyncio.to_thread(image_bytes, image)

    async def classify(self, image: ImageInput, model: str | None = None, top_k: int = 5) -> list[tuple[str, float]]:
        request = api.ClassifyRequest(model=model or await self.default_model(CLASSIFIER),
                                      image=await self._bytes(image), top_k=top_k)
        return [(label.label, label.score) for label in (await self._unary("Classify", request)).labels]

    async def generate(self, count: int, seed: int | None = None, model: str | None = None, format: str = "png",
                       quality: int | None = None) -> list[bytes]:
        request = api.GenerateRequest(model=model or await self.default_model(GENERATOR), count=count, seed=seed,
                                      format=format, quality=quality or 0)
        return list((await self._unary("Generate", request)).images)

    async def stylize(self, image: ImageInput, model: str | None = None, format: str | None = None,
                      quality: int | None = None, max_side: int | None = None) -> bytes:
        request = self._stylize_request(model or await self.default_model(STYLIZER), await self._bytes(image),
                                        format, quality, max_side)
        return (await self._unary("Stylize", request)).image

    async def stylize_many(self, images: Iterable[ImageInput] | AsyncIterable[ImageInput], model: str | None = None,
                           format: str | None = None, quality: int | None = None, max_side: int | None = None,
                           timeout: float | None = None, window: int = STREAM_WINDOW) -> AsyncIterator[StylizeResult]:
        """As ImageClient.stylize_many, as an async generator."""
        name = model or await self.default_model(STYLIZER)

        def make(data: bytes, request_id: str) -> api.StylizeRequest:
            return self._stylize_request(name, data, format, quality, max_side, request_id)

        # aclosing: when the caller stops early, the stream is cancelled now, not at garbage collection.
        async with contextlib.aclosing(_AsyncStream(self, images, make, window, timeout).results()) as results:
            async for result in results:
                yield result

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncImageClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _AsyncStream:
    """StylizeStream on asyncio: a feeder task prepares items, one writer task per (re)opened stream sends them.

    The feeder lives as long as the whole stylize_many: cancelling a task
    that waits on the caller's async iterator would close that iterator, so
    only the writers (which wait on a queue, which is safe to cancel) belong
    to one stream attempt.
    """

    def __init__(self, client: AsyncImageClient, images: Iterable[ImageInput] | AsyncIterable[ImageInput],
                 make: Callable[[bytes, str], api.StylizeRequest], window: int, timeout: float | None) -> None:
        self._client = client
        self._images = images
        self._make = make
        self._window = max(1, window)
        self._timeout = timeout
        self._state = _StreamState(client.target)
        self._ready: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=self._window)
        self._room = asyncio.Event()
        self._exhausted = False
        self._source_error: BaseException | None = None

    async def _feed(self) -> None:
        index = 0
        try:
            async for image in _aiter(self._images):
                try:
                    item = _Item(index, request=self._make(await self._client._bytes(image), str(index)))
                except ArtforgeError as error:
                    item = _Item(index, error=error)
                await self._ready.put(item)
                index += 1
        except Exception as error:  # the caller's iterable failed: end the stream, raise it afterwards
            self._source_error = error
        await self._ready.put(None)

    async def _write(self, call: grpc.aio.StreamStreamCall) -> None:
        for request in self._state.unanswered():
            await call.write(request)
        while not self._exhausted:
            while self._state.in_flight >= self._window:
                self._room.clear()
                await self._room.wait()
            item = await self._ready.get()
            if item is None:
                self._exhausted = True
                break
            # Added before the write: if this stream breaks now, the next one sends it.
            self._state.add(item)
            if item.request is not None:
                await call.write(item.request)
        await call.done_writing()

    async def results(self) -> AsyncGenerator[StylizeResult, None]:
        client = self._client
        deadline = client._deadline(self._timeout)
        failures = 0
        feeder = asyncio.ensure_future(self._feed())
        try:
            while True:
                call = client._stub.StylizeStream(timeout=client._remaining(deadline), metadata=client._metadata)
                writer = asyncio.ensure_future(self._write(call))
                try:
                    while (response := await call.read()) is not grpc.aio.EOF:
                        done = self._state.answer(response)
                        self._room.set()
                        failures = 0  # progress: the retry budget is for consecutive failures
                        for result in done:
                            yield result
                    await writer
                except grpc.RpcError as error:
                    failures += 1
                    delay = client._retry_delay(error, failures, deadline)
                    if delay is None:
                        raise client._error(error, "StylizeStream", failures, self._timeout) from None
                    log.info("StylizeStream on %s: UNAVAILABLE (%s); resuming %d unanswered item(s), retry %d of %d "
                             "in %.2f s", client.target, error.details(), len(self._state.unanswered()), failures,
                             client.retries, delay)
                    await asyncio.sleep(delay)
                    continue
                finally:
                    call.cancel()
                    await _settle(writer)
                for result in self._state.local_failures():
                    yield result
                if self._source_error is not None:
                    raise self._source_error
                if self._state.in_flight:
                    raise RemoteError(f"artforge server {client.target} ended StylizeStream with "
                                      f"{self._state.in_flight} item(s) unanswered")
                return
        finally:
            await _settle(feeder)


async def _settle(task: asyncio.Task) -> None:
    """Cancel `task` and wait for it; its own failure (a write on a broken stream) is already reported by the read."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # our caller is being cancelled, not just `task`
    except Exception:
        pass


async def _aiter(images: Iterable[ImageInput] | AsyncIterable[ImageInput]) -> AsyncIterator[ImageInput]:
    if isinstance(images, AsyncIterable):
        async for image in images:
            yield image
    else:
        for image in images:
            yield image
