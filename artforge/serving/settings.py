"""Per-model scheduling settings: config.pbtxt, overridden by command-line flags.

The keys read from `<repo>/<name>/config.pbtxt` are Triton's, so one file
configures both servers:

    max_batch_size: 16
    dynamic_batching {
      preferred_batch_size: [4, 8]
      max_queue_delay_microseconds: 2000
      default_queue_policy { max_queue_size: 64 }
    }
    instance_group [{ count: 2 }]

Unlike Triton, artforge batches every model, stylizers included (requests
of equal H, W merge): a missing `dynamic_batching` block only means the
defaults below, so exported stylizers, which carry no block, batch too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format

from artforge import defaults
from artforge.errors import InvalidInputError, ModelLoadError
from artforge.proto.inference import model_config_pb2
from artforge.runtime.models import Model
from artforge.serving.options import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE, ServerOptions

CONFIG_FILE = "config.pbtxt"

# Bounds on the configuration a RepositoryModelLoad request sends: config.pbtxt is the operator's, this
# one comes over the network, and one number (a queue delay of an hour) can stall every request.
#: most rows per graph run
MAX_OVERRIDE_BATCH = 1024
#: longest wait for a batch to fill (1 s; online serving waits milliseconds)
MAX_OVERRIDE_QUEUE_DELAY_US = 1_000_000
#: most requests waiting per model
MAX_OVERRIDE_QUEUE_SIZE = 4096
#: most concurrent graph runs per model, all instance groups together
MAX_OVERRIDE_INSTANCES = 32


@dataclass(frozen=True)
class ModelSettings:
    """How the server schedules one model."""

    #: most rows in one graph run (and in one KServe request)
    max_batch_size: int
    #: sizes the batcher sends as soon as it can form them
    preferred_batch_sizes: tuple[int, ...]
    #: how long the oldest request may wait for others to join its batch
    max_queue_delay_s: float
    #: requests waiting for a batch before new ones are refused
    queue_size: int
    #: concurrent graph runs (threads calling the backend)
    instances: int
    #: image pixels (rows x height x width) one merged batch may hold; a single request may exceed it alone
    max_batch_pixels: int = int(defaults.TILE_ABOVE_MP * 1e6)


def read_config(folder: Path) -> model_config_pb2.ModelConfig | None:
    """The model's config.pbtxt, or None when it has none.

    Fields this server does not know (a Triton-written `optimization`
    block, say) are skipped rather than refused.
    """
    path = folder / CONFIG_FILE
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ModelLoadError(f"{path} cannot be read ({error.strerror})") from None
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig(), allow_unknown_field=True)
    except text_format.ParseError as error:
        raise ModelLoadError(f"{path} is not a valid Triton model configuration ({error})") from None


def _check_bound(value: int, low: int, high: int, field: str, meaning: str) -> None:
    if not low <= value <= high:
        raise InvalidInputError(f"load parameter 'config': {field} is {value}; it must be from {low} to {high} "
                                f"({meaning})")


def check_override(config: model_config_pb2.ModelConfig) -> None:
    """Refuse a RepositoryModelLoad configuration whose scheduling fields are out of bounds (InvalidInputError,
    one sentence naming the field and its range)."""
    _check_bound(config.max_batch_size, 0, MAX_OVERRIDE_BATCH, "max_batch_size", "0 = the default")
    batching = config.dynamic_batching
    for size in batching.preferred_batch_size:
        _check_bound(size, 1, MAX_OVERRIDE_BATCH, "dynamic_batching.preferred_batch_size", "rows")
    _check_bound(batching.max_queue_delay_microseconds, 0, MAX_OVERRIDE_QUEUE_DELAY_US,
                 "dynamic_batching.max_queue_delay_microseconds", "at most one second")
    _check_bound(batching.default_queue_policy.max_queue_size, 0, MAX_OVERRIDE_QUEUE_SIZE,
                 "dynamic_batching.default_queue_policy.max_queue_size", "0 = the default")
    for group in config.instance_group:
        _check_bound(group.count, 0, MAX_OVERRIDE_INSTANCES, "instance_group.count", "0 = 1")
    _check_bound(sum(max(group.count, 1) for group in config.instance_group), 0, MAX_OVERRIDE_INSTANCES,
                 "the sum of instance_group counts", "concurrent graph runs")


def _positive(value: float | None, what: str) -> None:
    if value is not None and value <= 0:
        raise ModelLoadError(f"{what} must be positive, got {value}")


def resolve_settings(model: Model, config: model_config_pb2.ModelConfig | None,
                     options: ServerOptions) -> ModelSettings:
    """Flags beat config.pbtxt, which beats the defaults; a fixed graph batch beats everything."""
    config = config or model_config_pb2.ModelConfig()
    batching = config.dynamic_batching if config.HasField("dynamic_batching") else None
    source = f"model {model.name} (config.pbtxt)"

    batch_dim = next(s for s in model.inputs if s.name == model.metadata.input_name).shape[0]
    max_batch = options.max_batch_size or config.max_batch_size or DEFAULT_MAX_BATCH[model.kind]
    if batch_dim is not None:
        # A graph exported with a fixed batch runs exactly that many rows (padded).
        max_batch = batch_dim
    _positive(max_batch, f"{source}: max_batch_size")

    if options.preferred_batch_sizes is not None:
        preferred = options.preferred_batch_sizes
    else:
        preferred = tuple(batching.preferred_batch_size) if batching else ()
    # A preferred size the model cannot run would never be formed; dropping
    # it beats refusing the model over a server-wide flag.
    preferred = tuple(sorted({p for p in preferred if 0 < p <= max_batch}))

    if options.max_queue_delay_ms is not None:
        delay_s = options.max_queue_delay_ms / 1000
    else:
        delay_s = batching.max_queue_delay_microseconds / 1e6 if batching else 0.0
    if delay_s < 0:
        raise ModelLoadError(f"{source}: max queue delay must not be negative, got {delay_s * 1000} ms")

    queue_size = options.queue_size
    if queue_size is None and batching and batching.default_queue_policy.max_queue_size:
        queue_size = batching.default_queue_policy.max_queue_size
    queue_size = queue_size or DEFAULT_QUEUE_SIZE
    _positive(queue_size, f"{source}: queue size")

    instances = options.instances
    if instances is None and config.instance_group:
        instances = sum(max(group.count, 1) for group in config.instance_group)
    instances = instances or 1
    _positive(instances, f"{source}: instance count")

    return ModelSettings(max_batch_size=max_batch, preferred_batch_sizes=preferred, max_queue_delay_s=delay_s,
                         queue_size=queue_size, instances=instances,
                         max_batch_pixels=max(int(options.tile_above_mp * 1e6), 1))
