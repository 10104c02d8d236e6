"""Prometheus metrics, served over HTTP on their own port, at /metrics only.

Each Server gets its own CollectorRegistry, so several servers in one
process (tests, an app embedding two) never clash over metric names.
The `model` label only ever holds names of the repository's models (a
client asking for an unknown name is counted under ""), which keeps label
cardinality bounded by the repository, not by what clients send; requests
carry a `protocol` label (grpc or http) beside their method.

Beside artforge's own metrics, Triton's per-model counters
(`nv_inference_request_success`, `nv_inference_queue_duration_us`, ...) are
read from each model's KServe statistics at scrape time, so dashboards
built for Triton work unchanged.

The endpoint follows the gRPC port's rules: with a token it answers 401
unless the scrape sends `Authorization: Bearer <token>` (Prometheus:
`authorization: {credentials_file: ...}`), and with TLS it is HTTPS with
the same certificate. prometheus_client's own start_http_server can do
neither check (and answers the metrics on every path, so an HTTP readiness
probe aimed at this port by mistake would always read "ready"), so this
module serves its WSGI app itself, at /metrics only (404 elsewhere).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.metrics_core import Metric

from artforge.serving.auth import BearerToken
from artforge.serving.statistics import ModelStats

log = logging.getLogger("artforge.serving")

# Latencies from sub-millisecond (tiny models) to tens of seconds (big stylizations).
_SECONDS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)
_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's metrics; update methods are cheap and thread-safe (prometheus_client locks)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "method", "protocol")
        self.requests = Counter("artforge_requests", "Requests (and stream items) handled", labels,
                                registry=self.registry)
        self.failures = Counter("artforge_request_failures", "Requests that ended with an error, by gRPC code",
                                (*labels, "code"), registry=self.registry)
        self.latency = Histogram("artforge_request_duration_seconds", "End-to-end request time", labels,
                                 buckets=_SECONDS, registry=self.registry)
        self.queue_time = Histogram("artforge_queue_duration_seconds", "Time a request waited for its batch",
                                    ("model",), buckets=_SECONDS, registry=self.registry)
        self.infer_time = Histogram("artforge_inference_duration_seconds", "Time of one graph run (a batch)",
                                    ("model",), buckets=_SECONDS, registry=self.registry)
        self.batch_size = Histogram("artforge_batch_size", "Rows per graph run", ("model",),
                                    buckets=_BATCH_SIZES, registry=self.registry)
        self.queue_depth = Gauge("artforge_queue_depth", "Requests waiting for a batch", ("model",),
                                 registry=self.registry)
        self.model_ready = Gauge("artforge_model_ready", "1 when the model can serve", ("model",),
                                 registry=self.registry)
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def observe_request(self, model: str, method: str, code: grpc.StatusCode, seconds: float,
                        protocol: str = "grpc") -> None:
        self.requests.labels(model, method, protocol).inc()
        self.latency.labels(model, method, protocol).observe(seconds)
        if code is not grpc.StatusCode.OK:
            self.failures.labels(model, method, protocol, code.name).inc()

    def track_models(self, models: Callable[[], Iterable[ModelStats]]) -> None:
        """Offer Triton's per-model metric names, read from `models()` (the loaded models' statistics)."""
        self.registry.register(_TritonMetrics(models))

    def observe_batch(self, model: str, size: int, infer_s: float, queue_s: list[float]) -> None:
        self.batch_size.labels(model).observe(size)
        self.infer_time.labels(model).observe(infer_s)
        histogram = self.queue_time.labels(model)
        for waited in queue_s:
            histogram.observe(waited)

    def set_queue_depth(self, model: str, depth: int) -> None:
        self.queue_depth.labels(model).set(depth)

    def set_ready(self, model: str, ready: bool) -> None:
        self.model_ready.labels(model).set(1 if ready else 0)

    def forget(self, model: str) -> None:
        """Drop a model's ready and queue gauges (it left the repository); counters stay."""
        for gauge in (self.queue_depth, self.model_ready):
            try:
                gauge.remove(model)
            except KeyError:
                pass

    def start_http(self, host: str, port: int, token: BearerToken | None = None,
                   tls: ssl.SSLContext | None = None) -> int:
        """Serve /metrics in a daemon thread; returns the bound port (port 0 picks one).

        With `token`, a scrape must send it; with `tls`, the endpoint is HTTPS.
        """
        family, _, _, _, address = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]

        class Server(_MetricsHTTPServer):
            address_family = family

        app = _metrics_path_only(make_wsgi_app(self.registry))
        httpd = make_server(str(address[0]), port, app if token is None else _guarded(app, token), Server,
                            handler_class=_QuietHandler)
        if tls is not None:
            # The handshake happens on the first read, in the request's thread: a client that never
            # finishes it holds one thread, not the accepting loop.
            httpd.socket = tls.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._http = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="artforge-metrics", daemon=True)
        self._thread.start()
        return httpd.server_port

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is no news


class _MetricsHTTPServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that is not speaking TLS to an HTTPS port, or that hangs up: not worth a traceback.
        log.debug("metrics request from %s failed", client_address, exc_info=True)


def _guarded(app: Callable, token: BearerToken) -> Callable:
    """The WSGI app behind a bearer-token check (401 with WWW-Authenticate without it)."""

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not token.accepts(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                                ("WWW-Authenticate", 'Bearer realm="artforge metrics"')])
            return [b"missing or wrong credentials: send the header 'Authorization: Bearer <token>'\n"]
        return app(environ, start_response)

    return guarded


def _metrics_path_only(app: Callable) -> Callable:
    """The WSGI app at /metrics; 404 on every other path."""

    def only(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") not in ("/metrics", "/metrics/"):
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: Prometheus metrics are at /metrics\n"]
        return app(environ, start_response)

    return only


#: Triton's per-model metrics: (name, help, value of a model's statistics)
_TRITON: tuple[tuple[str, str, Callable[[ModelStats], float]], ...] = (
    ("nv_inference_request_success", "Number of successful inference requests, all batch sizes",
     lambda s: s.success.count),
    ("nv_inference_request_failure", "Number of failed inference requests, all batch sizes", lambda s: s.fail.count),
    ("nv_inference_count", "Number of inferences performed (a batch of n counts n)", lambda s: s.inference_count),
    ("nv_inference_exec_count", "Number of model executions performed (batches)", lambda s: s.execution_count),
    ("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds",
     lambda s: (s.success.ns + s.fail.ns) // 1000),
    ("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds",
     lambda s: s.queue.ns // 1000),
    ("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds",
     lambda s: s.compute_input.ns // 1000),
    ("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds",
     lambda s: s.compute_infer.ns // 1000),
    ("nv_inference_compute_output_duration_us", "Cumulative inference compute output duration in microseconds",
     lambda s: s.compute_output.ns // 1000),
)


class _TritonMetrics:
    """A collector giving Triton's metric names at scrape time (untyped: prometheus_client would add `_total`
    to a counter's name, and dashboards ask for Triton's exact names)."""

    def __init__(self, models: Callable[[], Iterable[ModelStats]]) -> None:
        self._models = models

    def collect(self) -> Iterator[Metric]:
        stats = list(self._models())
        for name, text, value in _TRITON:
            metric = Metric(name, text, "unknown")
            for s in stats:
                metric.add_sample(name, {"model": s.name, "version": str(s.version)}, value(s))
            yield metric
