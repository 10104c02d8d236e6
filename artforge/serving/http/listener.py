"""uvicorn on the server's own event loop, on a socket bound before any model loads.

uvicorn normally owns the process (its own loop, signal handlers, logging
setup); here it is one more task on the loop grpc.aio runs on, so the HTTP
handlers await the same batchers and use the same worker pool as gRPC.
Signals stay with `artforge serve` (server.py), which stops both front ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from artforge.errors import InvalidInputError


def _whole_seconds(grace_s: float | None) -> int:
    """uvicorn's graceful-shutdown timeout: whole seconds, at least 1 (0 would time out at once even when
    nothing is in flight, and log an error about it)."""
    return max(1, math.ceil(grace_s or 0))


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGTERM / SIGINT / SIGHUP are the server's (server.py), not uvicorn's


def bind(host: str, port: int, address: str) -> socket.socket:
    """A listening TCP socket on host:port (0 = any free port); one sentence when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise InvalidInputError(f"cannot serve HTTP on {address}: the host is not known ({error.strerror})") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
        sock.listen(1024)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise InvalidInputError(f"cannot serve HTTP on {address}: the port is in use (another server?); pick "
                                    "another --http-port, 0 for any free port, or --no-http") from None
        raise InvalidInputError(f"cannot serve HTTP on {address}: {error.strerror or error}") from None
    sock.setblocking(False)
    return sock


class HttpListener:
    """An ASGI app served by uvicorn on an already bound socket: `start(app)`, then `await stop(grace)`."""

    def __init__(self, sock: socket.socket, tls_cert: Path | None = None, tls_key: Path | None = None) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self._tls = (tls_cert, tls_key) if tls_cert and tls_key else None
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task | None = None

    async def start(self, app: ASGIApp, grace_s: float, max_concurrency: int | None = None) -> None:
        """Serve `app` (returns once uvicorn listens); `max_concurrency` connections+requests before 503."""
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, server_header=False,
            http="httptools", loop="none", timeout_graceful_shutdown=_whole_seconds(grace_s),
            limit_concurrency=max_concurrency,
            ssl_certfile=str(self._tls[0]) if self._tls else None, ssl_keyfile=str(self._tls[1]) if self._tls else None)
        try:
            config.load()
        except (OSError, ssl.SSLError) as error:
            raise InvalidInputError(f"TLS certificate or key cannot be used for HTTP ({error})") from None
        server = _Uvicorn(config)
        self._server = server
        self._task = asyncio.get_running_loop().create_task(server.serve(sockets=[self.sock]), name="artforge-http")
        while not server.started:
            if self._task.done():
                self._task.result()  # re-raises why uvicorn did not start
                raise InvalidInputError("the HTTP server stopped while starting")
            await asyncio.sleep(0.005)

    async def stop(self, grace_s: float | None) -> None:
        """Stop accepting; in-flight requests get `grace_s` seconds (None or 0: they are cancelled)."""
        if self._server is None or self._task is None:
            self.sock.close()
            return
        self._server.config.timeout_graceful_shutdown = _whole_seconds(grace_s)
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.sock.close()
