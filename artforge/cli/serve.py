"""`artforge serve`: a repository over gRPC and HTTP (KServe v2, the image API, a web page) and Prometheus metrics.

Scheduling flags left out fall back to each model's config.pbtxt, then to
built-in defaults (serving/settings.py). The server itself never reads
argparse: this module turns the arguments into a ServerOptions.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from artforge.cli.args import (
    add_backend,
    add_command,
    add_repository,
    non_negative_float,
    port,
    positive_float,
    positive_int,
    repository_path,
)
from artforge.defaults import TILE_STATS_MODES, TOKEN_ENV
from artforge.serving.options import (
    DEFAULT_GRACE_S,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_MESSAGE_MB,
    DEFAULT_MAX_REQUEST_BATCH,
    DEFAULT_QUEUE_SIZE,
    MODEL_CONTROL_MODES,
    ServerOptions,
)


def add_commands(commands: argparse._SubParsersAction) -> None:
    parser = add_command(commands, "serve", "serve a repository over gRPC and HTTP (KServe v2, image API, web page)",
                         run_serve)
    add_repository(parser, "model repository folder (Triton layout: <repo>/<name>/<version>/model.onnx)")
    add_backend(parser)
    net = parser.add_argument_group("network")
    net.add_argument("--host", default=ServerOptions.host,
                     help="address to listen on: loopback reaches this machine only, 0.0.0.0 every interface "
                          "(containers, Kubernetes; set --token too, see docs/security.md)")
    net.add_argument("--port", type=port, default=ServerOptions.port,
                     help="gRPC port, both services (0 = any free port)")
    net.add_argument("--http-port", type=port, default=ServerOptions.http_port,
                     help="HTTP port: KServe v2 REST, image endpoints, the web page at / (0 = any free port)")
    net.add_argument("--no-http", action="store_true", help="do not serve HTTP (gRPC only)")
    net.add_argument("--metrics-port", type=port, default=ServerOptions.metrics_port,
                     help="Prometheus /metrics HTTP port (0 = any free port)")
    net.add_argument("--metrics-host", metavar="HOST",
                     help="address the metrics port listens on (default: --host)")
    net.add_argument("--no-metrics", action="store_true", help="do not serve Prometheus metrics")
    net.add_argument("--tls-cert", type=Path, metavar="PEM", help="PEM certificate chain; serve TLS (needs --tls-key)")
    net.add_argument("--tls-key", type=Path, metavar="PEM", help="PEM private key of --tls-cert")
    net.add_argument("--token", default=None,
                     help=f"require 'authorization: Bearer TOKEN' on every call and on /metrics, except the "
                          f"overall health check (default: ${TOKEN_ENV}; prefer the variable, command lines are "
                          f"visible to other users)")
    net.add_argument("--model-control", choices=MODEL_CONTROL_MODES, default=ServerOptions.model_control,
                     help="none: RepositoryModelLoad/Unload are refused (SIGHUP still reloads every model); "
                          "explicit: allowed with --token, or from this machine when no token is set")
    batch_defaults = ", ".join(f"{size} for {kind}s" for kind, size in DEFAULT_MAX_BATCH.items())
    sched = parser.add_argument_group("scheduling (per model; default: the model's config.pbtxt)")
    sched.add_argument("--max-batch-size", type=positive_int, metavar="N",
                       help=f"most rows per graph run and per KServe request (default: config.pbtxt, else "
                            f"{batch_defaults})")
    sched.add_argument("--max-queue-delay-ms", type=non_negative_float, metavar="MS",
                       help="how long a request may wait for others to join its batch (default: config.pbtxt, "
                            "else 0 = batch only what is already queued)")
    sched.add_argument("--preferred-batch-sizes", type=positive_int, nargs="+", metavar="N",
                       help="batch sizes sent as soon as they can be formed (default: config.pbtxt, else none)")
    sched.add_argument("--instances", type=positive_int, metavar="N",
                       help="concurrent graph runs per model (default: config.pbtxt instance_group, else 1)")
    sched.add_argument("--queue-size", type=positive_int, metavar="N",
                       help=f"requests waiting per model before RESOURCE_EXHAUSTED (default: config.pbtxt, "
                            f"else {DEFAULT_QUEUE_SIZE})")
    sched.add_argument("--threads", type=positive_int, metavar="N",
                       help="ONNX Runtime threads per model (default: the backend decides)")
    sched.add_argument("--workers", type=positive_int, metavar="N",
                       help="threads decoding and encoding images (default: one per CPU)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-image-pixels", type=positive_int, default=ServerOptions.max_image_pixels,
                        metavar="N", help="largest image accepted, checked from its header")
    limits.add_argument("--max-message-mb", type=positive_float, default=DEFAULT_MAX_MESSAGE_MB, metavar="MB",
                        help="largest gRPC message in either direction, and largest HTTP request body")
    limits.add_argument("--max-request-batch", type=positive_int, default=DEFAULT_MAX_REQUEST_BATCH, metavar="N",
                        help="most images one Generate call may ask for")
    limits.add_argument("--max-memory", type=positive_float, metavar="MB",
                        help="memory all requests in progress may hold together; a request that does not fit "
                             "waits, one that never could is refused (default: half of this machine's memory, "
                             "or of the container's limit)")
    limits.add_argument("--tile-above", type=positive_float, default=ServerOptions.tile_above_mp, metavar="MP",
                        help="stylize images over MP megapixels tile by tile, as `artforge stylize` does")
    limits.add_argument("--tile", type=positive_int, default=ServerOptions.tile, metavar="SIZE",
                        help="the side of those tiles")
    limits.add_argument("--tile-stats", choices=TILE_STATS_MODES, default=ServerOptions.tile_stats,
                        help="those tiles' normalisation statistics: estimate (from a downscale) or exact (measured "
                             "through the tiles: matches an untiled run, ~15x the time; docs/batch.md)")
    limits.add_argument("--max-concurrent-rpcs", type=positive_int, metavar="N",
                        help="RPCs in progress at once before RESOURCE_EXHAUSTED (default: no limit; the "
                             "per-model queues still apply)")
    parser.add_argument("--grace", type=non_negative_float, default=DEFAULT_GRACE_S, metavar="SECONDS",
                        help="seconds in-flight requests get to finish after SIGTERM")


def server_options(args: argparse.Namespace) -> ServerOptions:
    """The ServerOptions `artforge serve` arguments describe."""
    return ServerOptions(
        repo=repository_path(args), host=args.host, port=args.port,
        metrics_port=None if args.no_metrics else args.metrics_port, metrics_host=args.metrics_host,
        http_port=None if args.no_http else args.http_port,
        backend=args.backend, threads=args.threads, workers=args.workers,
        max_batch_size=args.max_batch_size, max_queue_delay_ms=args.max_queue_delay_ms,
        preferred_batch_sizes=tuple(args.preferred_batch_sizes) if args.preferred_batch_sizes else None,
        instances=args.instances, queue_size=args.queue_size,
        max_image_pixels=args.max_image_pixels, max_message_mb=args.max_message_mb,
        max_request_batch=args.max_request_batch, max_concurrent_rpcs=args.max_concurrent_rpcs,
        max_memory=None if args.max_memory is None else int(args.max_memory * 1024 * 1024),
        tile_above_mp=args.tile_above, tile=args.tile, tile_stats=args.tile_stats,
        tls_cert=args.tls_cert, tls_key=args.tls_key, token=args.token or os.environ.get(TOKEN_ENV) or None,
        model_control=args.model_control, grace_s=args.grace)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM / SIGINT; the process exit status."""
    from artforge.serving.server import serve

    return serve(server_options(args))
