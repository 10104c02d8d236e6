"""`artforge serve` flags: add_arguments(parser) and run_from_args(args).

artforge/cli.py adds these to its `serve` sub-command and passes the shipped
zoo as --repo when the user gives none. Scheduling flags left out fall back
to each model's config.pbtxt, then to built-in defaults (settings.py).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from artforge.runtime.imageio import DEFAULT_MAX_PIXELS
from artforge.serving.options import (
    DEFAULT_GRACE_S,
    DEFAULT_MAX_MESSAGE_MB,
    DEFAULT_MAX_REQUEST_BATCH,
    DEFAULT_QUEUE_SIZE,
    ServerOptions,
)

TOKEN_ENV = "ARTFORGE_TOKEN"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535 (0 = any free port), got {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def add_arguments(parser: argparse.ArgumentParser, require_repo: bool = False, include_repo: bool = True) -> None:
    """Add the server's flags to `parser` (the `artforge serve` sub-command).

    include_repo=False leaves out --repo and --backend, for a CLI that adds
    its own (artforge/cli.py's shared repository options); run_from_args
    only needs `args.repo` and `args.backend` to exist.
    """
    if include_repo:
        parser.add_argument("--repo", type=Path, required=require_repo, default=None,
                            help="model repository folder (Triton layout: <repo>/<name>/<version>/model.onnx)")
        parser.add_argument("--backend", default="auto", help="runtime backend for every model (default: auto)")
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0, every interface)")
    net.add_argument("--port", type=_port, default=8001, help="gRPC port, both services (default: 8001; 0 = any)")
    net.add_argument("--metrics-port", type=_port, default=8002,
                     help="Prometheus /metrics HTTP port (default: 8002; 0 = any)")
    net.add_argument("--no-metrics", action="store_true", help="do not serve Prometheus metrics")
    net.add_argument("--tls-cert", type=Path, help="PEM certificate chain; serve TLS (needs --tls-key)")
    net.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    net.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                     help=f"require 'authorization: Bearer TOKEN' on every call except health "
                          f"(default: ${TOKEN_ENV}; prefer the variable, command lines are visible to other users)")
    sched = parser.add_argument_group("scheduling (per model; default: the model's config.pbtxt)")
    sched.add_argument("--max-batch-size", type=_positive_int,
                       help="most rows per graph run and per KServe request (default: config.pbtxt, else 64, "
                            "8 for stylizers)")
    sched.add_argument("--max-queue-delay-ms", type=_non_negative,
                       help="how long a request may wait for others to join its batch (default: config.pbtxt, "
                            "else 0 = batch only what is already queued)")
    sched.add_argument("--preferred-batch-sizes", type=_positive_int, nargs="+", metavar="N",
                       help="batch sizes sent as soon as they can be formed")
    sched.add_argument("--instances", type=_positive_int,
                       help="concurrent graph runs per model (default: config.pbtxt instance_group, else 1)")
    sched.add_argument("--queue-size", type=_positive_int,
                       help=f"requests waiting per model before RESOURCE_EXHAUSTED (default: config.pbtxt, "
                            f"else {DEFAULT_QUEUE_SIZE})")
    sched.add_argument("--threads", type=_positive_int, help="ONNX Runtime threads per model (default: auto)")
    sched.add_argument("--workers", type=_positive_int,
                       help="threads decoding and encoding images (default: one per CPU)")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-image-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS,
                        help=f"largest image accepted, checked from its header (default: {DEFAULT_MAX_PIXELS})")
    limits.add_argument("--max-message-mb", type=_positive, default=DEFAULT_MAX_MESSAGE_MB,
                        help=f"largest gRPC message in either direction (default: {DEFAULT_MAX_MESSAGE_MB})")
    limits.add_argument("--max-request-batch", type=_positive_int, default=DEFAULT_MAX_REQUEST_BATCH,
                        help=f"most images one Generate call may ask for (default: {DEFAULT_MAX_REQUEST_BATCH})")
    limits.add_argument("--max-concurrent-rpcs", type=_positive_int,
                        help="RPCs in progress at once before RESOURCE_EXHAUSTED (default: no limit; the "
                             "per-model queues still apply)")
    parser.add_argument("--grace", type=_non_negative, default=DEFAULT_GRACE_S,
                        help=f"seconds in-flight requests get to finish after SIGTERM (default: {DEFAULT_GRACE_S:g})")


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    if args.repo is None:
        raise ValueError("options_from_args needs args.repo; artforge/cli.py fills in the shipped zoo")
    return ServerOptions(
        repo=args.repo, host=args.host, port=args.port,
        metrics_port=None if args.no_metrics else args.metrics_port,
        backend=args.backend, threads=args.threads, workers=args.workers,
        max_batch_size=args.max_batch_size, max_queue_delay_ms=args.max_queue_delay_ms,
        preferred_batch_sizes=tuple(args.preferred_batch_sizes) if args.preferred_batch_sizes else None,
        instances=args.instances, queue_size=args.queue_size,
        max_image_pixels=args.max_image_pixels, max_message_mb=args.max_message_mb,
        max_request_batch=args.max_request_batch, max_concurrent_rpcs=args.max_concurrent_rpcs,
        tls_cert=args.tls_cert, tls_key=args.tls_key, token=args.token or None, grace_s=args.grace)


def run_from_args(args: argparse.Namespace) -> int:
    """Serve until SIGTERM / SIGINT; the process exit status."""
    from artforge.serving.server import serve

    return serve(options_from_args(args))
