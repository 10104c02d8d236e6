"""The artforge server: gRPC (KServe v2 + artforge.v1.ImageService) and HTTP front ends over one core.

    artforge serve --repo zoo/repository --http-port 8000 --port 8001 --metrics-port 8002   (artforge/cli/serve.py)

Threading model, and why: the server is a `grpc.aio` (asyncio) server. One
event loop thread accepts RPCs, parses small messages and schedules work;
everything that takes CPU time runs in threads that release the GIL:

- a shared worker pool (one thread per core) for image decode/encode with
  OpenCV and for converting KServe tensors to and from numpy;
- per model, `instances` threads calling the backend (ONNX Runtime), fed by
  that model's dynamic batcher (batcher.py).

Compared with grpc's thread-per-RPC server, the aio server holds thousands
of waiting RPCs (queued for a batch, streaming) without a thread each, and
the batcher, deadlines, cancellation and bounded queues are plain asyncio.
Because the heavy work releases the GIL, the process still uses every core.

Also on the gRPC port: grpc.health.v1 (overall "" and one entry per model)
and server reflection. The HTTP front end (serving/http: KServe v2 REST,
image endpoints, the web page) is uvicorn on the same event loop, calling
the same request objects, so both protocols share the models, batchers,
memory budget and worker pool. Prometheus metrics are served over HTTP on
their own port. Who may call what (token, model control, open health) is
auth.py's; docs/security.md has the whole picture. SIGTERM / SIGINT drain
both front ends gracefully (health goes NOT_SERVING, no new requests,
in-flight ones get `grace_s` to finish, exit 0); SIGHUP reloads every model
from the repository.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from artforge.errors import InvalidInputError
from artforge.proto.artforge.v1 import image_service_pb2, image_service_pb2_grpc
from artforge.proto.inference import grpc_service_pb2, grpc_service_pb2_grpc, model_config_pb2
from artforge.runtime.repository import Repository
from artforge.serving.auth import BearerToken, BearerTokenInterceptor, is_loopback
from artforge.serving.calls import Calls
from artforge.serving.health import HealthServicer
from artforge.serving.http.app import Services, build_app
from artforge.serving.http.listener import HttpListener
from artforge.serving.http.listener import bind as bind_http
from artforge.serving.image_api import ImageServicer
from artforge.serving.image_requests import ImageRequests
from artforge.serving.kserve import KServeServicer
from artforge.serving.kserve_requests import KServeRequests
from artforge.serving.metrics import Metrics
from artforge.serving.model_manager import ModelManager
from artforge.serving.options import ServerOptions
from artforge.serving.request_decoding import RequestDecodingInterceptor

log = logging.getLogger("artforge.serving")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
_FILES = (model_config_pb2, grpc_service_pb2, image_service_pb2, health_pb2, reflection_pb2)


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """A pool holding every service this server offers, for the reflection service.

    artforge's stubs live in the private artforge.proto.POOL (tritonclient
    owns the `inference.*` names in the default pool) and health/reflection
    live in the default pool; reflection looks up one pool, so this one gets
    the same file descriptors of both, dependencies first.
    """
    pool = descriptor_pool.DescriptorPool()
    for module in _FILES:
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    return pool


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InvalidInputError(f"{what} {path} cannot be read ({error.strerror})") from None


class _EncryptedKeyError(Exception):
    pass


def _no_password() -> bytes:
    raise _EncryptedKeyError  # instead of OpenSSL prompting for a passphrase on the terminal


def _tls(cert: Path, key: Path) -> tuple[grpc.ServerCredentials, ssl.SSLContext]:
    """gRPC credentials and an ssl context (for the metrics port) from a PEM certificate chain and its key.

    The pair is checked here: gRPC reports a key that does not match its
    certificate only as a failed bind.
    """
    cert_pem, key_pem = _read(cert, "TLS certificate"), _read(key, "TLS key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cadata=cert_pem.decode("ascii", errors="replace"))
    except (ssl.SSLError, ValueError):
        raise InvalidInputError(f"TLS certificate {cert} holds no PEM certificate (--tls-cert)") from None
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except _EncryptedKeyError:
        raise InvalidInputError(f"TLS key {key} is encrypted; the server needs it unencrypted (--tls-key)") from None
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise InvalidInputError(f"TLS key {key} does not belong to the certificate {cert} (--tls-key, "
                                    "--tls-cert)") from None
        raise InvalidInputError(f"TLS key {key} holds no PEM private key, or its certificate chain {cert} is "
                                f"malformed (--tls-key, --tls-cert: {error.reason or error})") from None
    return grpc.ssl_server_credentials([(key_pem, cert_pem)]), context


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _port_problem(host: str, port: int) -> str | None:
    """Why HOST:PORT cannot be listened on, found by binding it once; None when it can.

    gRPC reports a failed bind only as "Failed to bind" (and logs a core
    error line), so the reason is found out here, before gRPC tries.
    """
    if port == 0:
        return None
    try:
        addresses = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        return f"the host is not known ({error.strerror})"
    failures = []
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC and http.server bind
                probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return "the port is in use"
            failures.append(error.strerror or str(error))
    # gRPC listens when any address of the host binds (localhost: 127.0.0.1 and perhaps ::1).
    return failures[0] if failures and len(failures) == len(addresses) else None


def _bind_grpc(server: grpc.aio.Server, host: str, port: int, credentials: grpc.ServerCredentials | None) -> int:
    address = _address(host, port)
    problem = _port_problem(host, port)
    if problem is None:
        try:
            return server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        except RuntimeError:
            problem = "gRPC could not bind it"
    hint = " (another server?); pick another --port, or 0 for any free port" if problem == "the port is in use" else ""
    raise InvalidInputError(f"cannot listen on {address}: {problem}{hint}")


def _bind_metrics(metrics: Metrics, host: str, port: int, token: BearerToken | None,
                  tls: ssl.SSLContext | None) -> int:
    address = _address(host, port)
    try:
        return metrics.start_http(host, port, token, tls)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise InvalidInputError(f"cannot serve metrics on {address}: the port is in use (another server?); "
                                    "pick another --metrics-port, 0 for any free port, or --no-metrics") from None
        raise InvalidInputError(f"cannot serve metrics on {address}: {error.strerror or error}") from None


def _is_loopback_host(host: str) -> bool:
    """Whether a listen address reaches only this machine ("localhost", 127.0.0.1, ::1)."""
    if host.strip("[]") == "localhost":
        return True
    return is_loopback(f"ipv6:[{host.strip('[]')}]:0" if ":" in host else f"ipv4:{host}:0")


def exposure_warning(options: ServerOptions) -> str | None:
    """What to warn about when the network can reach the server without a token, or see the token in the clear
    (None when it listens on loopback only, or has both)."""
    hosts = {options.host} | ({options.metrics_host or options.host} if options.metrics_port is not None else set())
    exposed = sorted(host for host in hosts if not _is_loopback_host(host))
    if not exposed:
        return None
    where = " and ".join(exposed)
    if not options.token:
        return (f"listening on {where} without --token: anyone who can reach the port can run the models and read "
                "their metadata and metrics (docs/security.md)")
    if options.tls_cert is None:
        return (f"listening on {where} without TLS: the token crosses the network in the clear; add "
                "--tls-cert/--tls-key or put a TLS proxy in front (docs/security.md)")
    return None


class AsyncServer:
    """The server on the current event loop: `await start()`, then `await stop(grace)`."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.http_port: int | None = None
        self.metrics = Metrics()
        self._http: HttpListener | None = None
        self._draining = False
        self._server: grpc.aio.Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.manager: ModelManager | None = None
        self.token = BearerToken(options.token) if options.token else None
        self.health = HealthServicer(self.token)

    def _tls(self) -> tuple[grpc.ServerCredentials, ssl.SSLContext] | None:
        cert, key = self.options.tls_cert, self.options.tls_key
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise InvalidInputError("TLS needs both --tls-cert and --tls-key (PEM files)")
        return _tls(cert, key)

    async def _health_changed(self, name: str, ready: bool | None) -> None:
        status = SERVICE_UNKNOWN if ready is None else SERVING if ready and not self._draining else NOT_SERVING
        await self.health.set(name, status)
        overall = not self._draining and self.manager is not None and self.manager.any_ready()
        await self.health.set("", SERVING if overall else NOT_SERVING)

    async def start(self) -> int:
        """Bind the ports, load the models, serve; returns the bound gRPC port.

        The ports are bound before any model loads, so that a taken port is
        one sentence at once, not after minutes of loading.
        """
        options = self.options
        repo = Repository(options.repo)
        tls = self._tls()
        # The token is checked first, so an unauthenticated client's bytes are never parsed.
        interceptors: list[grpc.aio.ServerInterceptor] = [BearerTokenInterceptor(self.token)] if self.token else []
        interceptors.append(RequestDecodingInterceptor(self.metrics))
        await self.health.set("", NOT_SERVING)

        limit = options.max_message_bytes
        channel_options = [
            ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it
        ]
        server = grpc.aio.server(interceptors=interceptors, options=channel_options,
                                 maximum_concurrent_rpcs=options.max_concurrent_rpcs)
        self._server = server
        port = _bind_grpc(server, options.host, options.port, tls[0] if tls else None)
        if options.metrics_port is not None:
            self.metrics_port = _bind_metrics(self.metrics, self._metrics_host, options.metrics_port, self.token,
                                              tls[1] if tls else None)
        if options.http_port is not None:
            self._http = HttpListener(bind_http(options.host, options.http_port,
                                                _address(options.host, options.http_port)),
                                      options.tls_cert, options.tls_key)

        self._executor = ThreadPoolExecutor(options.workers or os.cpu_count() or 2,
                                            thread_name_prefix="artforge-worker")
        self.manager = ModelManager(repo, options, self.metrics, self._executor, on_change=self._health_changed)
        manager = self.manager
        self.metrics.track_models(lambda: [e.served.stats for e in manager.entries() if e.served is not None])
        await self.manager.load_all()

        calls = Calls(self.manager, self.metrics)
        kserve = KServeRequests(self.manager, self._executor, options, lambda: self._draining)
        images = ImageRequests(self.manager, self._executor, options)
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(KServeServicer(kserve, calls), server)
        image_service_pb2_grpc.add_ImageServiceServicer_to_server(
            ImageServicer(images, self.manager, calls, self._executor), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        services = [grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
                    image_service_pb2.DESCRIPTOR.services_by_name["ImageService"].full_name,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(services, server, pool=reflection_pool())
        await server.start()
        self.port = port
        if self._http is not None:
            app = build_app(Services(kserve, images, Calls(self.manager, self.metrics, "http"), self.manager,
                                     self._executor, options, self.token))
            await self._http.start(app, options.grace_s, options.max_concurrent_rpcs)
            self.http_port = self._http.port
        await self.health.set("", SERVING if self.manager.any_ready() else NOT_SERVING)
        self._log_started()
        self._warn_if_exposed()
        return port

    @property
    def _metrics_host(self) -> str:
        return self.options.metrics_host or self.options.host

    def _warn_if_exposed(self) -> None:
        warning = exposure_warning(self.options)
        if warning:
            log.warning("%s", warning)

    def _log_started(self) -> None:
        assert self.manager is not None
        models = []
        for entry in self.manager.entries():
            if entry.served is not None:
                models.append(f"{entry.name} v{entry.served.version} ({entry.served.model.backend_name})")
            else:
                models.append(f"{entry.name} (NOT READY: {entry.reason})")
        metrics = f"{_address(self._metrics_host, self.metrics_port)}" if self.metrics_port is not None else "off"
        http = f"{_address(self.options.host, self.http_port)}" if self.http_port is not None else "off"
        tls = " (TLS)" if self.options.tls_cert else ""
        log.info("artforge serving %d model(s): %s | grpc %s%s | metrics %s | http %s%s | model control %s",
                 len(models), "; ".join(models) or "none", _address(self.options.host, self.port or 0), tls, metrics,
                 http, tls if self.http_port is not None else "", self.options.model_control)

    async def reload(self) -> None:
        """Reload every model (SIGHUP)."""
        assert self.manager is not None
        log.info("reloading every model from %s", self.manager.repo.path)
        await self.manager.reload_all()

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new requests on both front ends, give in-flight ones `grace` seconds (None: cancel them),
        release everything."""
        self._draining = True
        await self.health.enter_graceful_shutdown()
        if self.manager is not None:
            self.manager.hurry()
        stopping = []
        if self._server is not None:
            stopping.append(self._server.stop(grace))
        if self._http is not None:
            stopping.append(self._http.stop(grace))
        await asyncio.gather(*stopping)
        if self.manager is not None:
            await self.manager.close()
        self.metrics.stop_http()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


class Server:
    """An AsyncServer on its own event-loop thread, for tests and apps that are not asyncio.

        server = Server(ServerOptions(repo=path, host="127.0.0.1", port=0, metrics_port=None))
        port = server.start()          # server.http_port: the HTTP port (options.http_port=None: off)
        ...
        server.stop(grace=1)
    """

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self._core = AsyncServer(options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        return self._core.port

    @property
    def metrics_port(self) -> int | None:
        return self._core.metrics_port

    @property
    def http_port(self) -> int | None:
        return self._core.http_port

    @property
    def metrics(self) -> Metrics:
        return self._core.metrics

    def start(self, timeout: float = 60) -> int:
        """Start serving in a background thread; returns the bound gRPC port (raises why it cannot start)."""
        started: concurrent.futures.Future[int] = concurrent.futures.Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                port = loop.run_until_complete(self._core.start())
            except BaseException as error:  # handed to the caller of start()
                loop.run_until_complete(self._core.stop(None))
                loop.close()
                started.set_exception(error)
                return
            started.set_result(port)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="artforge-server", daemon=True)
        self._thread.start()
        return started.result(timeout)

    def _call(self, coroutine: Coroutine, timeout: float | None = None) -> object:
        assert self._loop is not None, "the server is not running"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def reload(self) -> None:
        """Reload every model, as SIGHUP does."""
        self._call(self._core.reload())

    def stop(self, grace: float | None = None) -> None:
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            return
        self._call(self._core.stop(grace))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(grace=0)


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            stream=sys.stderr)


async def _serve(options: ServerOptions) -> int:
    server = AsyncServer(options)
    try:
        await server.start()
    except BaseException:
        await server.stop(None)
        raise
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reloads: set[asyncio.Task] = set()

    def reload() -> None:
        task = loop.create_task(server.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if hasattr(signal, "SIGHUP"):
        loop.add_signal_handler(signal.SIGHUP, reload)
    await stop.wait()
    log.info("shutting down: no new requests; in-flight ones get %.1f s to finish", options.grace_s)
    await server.stop(options.grace_s)
    log.info("stopped")
    return 0


def serve(options: ServerOptions) -> int:
    """Run the server until SIGTERM or SIGINT; returns the process exit status (0 after a clean drain).

    A server that cannot start (a missing repository, a taken port, unreadable
    TLS files) raises an artforge error whose message is one sentence.
    """
    _configure_logging()
    return asyncio.run(_serve(options))
