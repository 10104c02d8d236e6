"""Prometheus metrics, served over HTTP on their own port by prometheus_client.

Each Server gets its own CollectorRegistry, so several servers in one
process (tests, an app embedding two) never clash over metric names.
The `model` label only ever holds names of the repository's models (a
client asking for an unknown name is counted under ""), which keeps label
cardinality bounded by the repository, not by what clients send.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Latencies from sub-millisecond (tiny models) to tens of seconds (big stylizations).
_SECONDS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)
_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's metrics; update methods are cheap and thread-safe (prometheus_client locks)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "method")
        self.requests = Counter("artforge_requests", "RPCs (and stream items) handled", labels,
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

    def observe_request(self, model: str, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.requests.labels(model, method).inc()
        self.latency.labels(model, method).observe(seconds)
        if code is not grpc.StatusCode.OK:
            self.failures.labels(model, method, code.name).inc()

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

    def start_http(self, host: str, port: int) -> int:
        """Serve /metrics in a daemon thread; returns the bound port (port 0 picks one)."""
        self._http, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return self._http.server_port

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
