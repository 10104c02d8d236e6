"""Everything `artforge serve` can be told, as one plain dataclass.

The CLI (artforge/cli/serve.py), tests and embedding apps all build a ServerOptions;
nothing below server.py reads argparse. Per-model scheduling fields are
None when not given so that config.pbtxt can supply them (settings.py):
a flag the user typed beats the file, the file beats the built-in default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from artforge import contract, defaults
from artforge.defaults import MAX_IMAGE_PIXELS

#: largest gRPC message either way, and HTTP request body, by default; a 4K PNG is ~25 MB
DEFAULT_MAX_MESSAGE_MB = 64
#: most images one Generate call may ask for (it is split into model-sized batches)
DEFAULT_MAX_REQUEST_BATCH = 64
#: most rows per graph run when neither a flag nor config.pbtxt says: fixed-size kinds merge well,
#: stylizer batches hold large activations
DEFAULT_MAX_BATCH = {contract.CLASSIFIER: 64, contract.GENERATOR: 64, contract.STYLIZER: 8}
#: requests waiting per model before new ones get RESOURCE_EXHAUSTED
DEFAULT_QUEUE_SIZE = 128
#: seconds in-flight requests get to finish after SIGTERM
DEFAULT_GRACE_S = 10.0
#: loopback: a server reachable from the network is a decision (--host 0.0.0.0), see docs/decisions.md
DEFAULT_HOST = "127.0.0.1"
#: RepositoryModelLoad / Unload: off (the default, as in Triton), or on for the token holder / loopback (auth.py)
MODEL_CONTROL_MODES = ("none", "explicit")


@dataclass
class ServerOptions:
    repo: Path
    #: address the gRPC port listens on ("0.0.0.0": every interface, as containers need)
    host: str = DEFAULT_HOST
    #: gRPC port; 0 picks a free one (the bound port is logged and returned by Server.start)
    port: int = 8001
    #: Prometheus HTTP port; None disables the endpoint, 0 picks a free one
    metrics_port: int | None = 8002
    #: address the metrics port listens on; None = `host`
    metrics_host: str | None = None
    #: HTTP/REST port (KServe v2 REST, image endpoints, web page); None disables it, 0 picks a free one
    http_port: int | None = 8000
    backend: str = "auto"
    #: ONNX Runtime intra-op threads per model; None lets the backend decide
    threads: int | None = None
    #: threads decoding/encoding images and converting tensors; None = one per CPU
    workers: int | None = None

    # Per-model scheduling; None = from config.pbtxt, else the built-in default.
    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    preferred_batch_sizes: tuple[int, ...] | None = None
    instances: int | None = None
    queue_size: int | None = None

    # Limits
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_message_mb: float = DEFAULT_MAX_MESSAGE_MB
    max_request_batch: int = DEFAULT_MAX_REQUEST_BATCH
    #: RPCs (a stream counts once) served at the same time before gRPC answers
    #: RESOURCE_EXHAUSTED; None = no limit beyond the per-model queues
    max_concurrent_rpcs: int | None = None
    #: bytes all requests in progress may hold together (memory.py); None = half the machine's memory
    max_memory: int | None = None
    #: stylize images over this many megapixels tile by tile, in tile-pixel tiles (as the batch tool does)
    tile_above_mp: float = defaults.TILE_ABOVE_MP
    tile: int = defaults.TILE
    #: the tiles' normalisation statistics: "estimate" or "exact" (runtime/tiling.py, stylize_tiled)
    tile_stats: str = defaults.TILE_STATS

    # Security
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token: str | None = None
    #: "none": RepositoryModelLoad / Unload are refused (SIGHUP still reloads); "explicit": allowed with the
    #: token, or from loopback when no token is set (auth.py)
    model_control: str = "none"

    grace_s: float = DEFAULT_GRACE_S

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * 1024 * 1024)
