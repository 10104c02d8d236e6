"""The KServe v2 / Open Inference Protocol requests every front end serves: metadata, repository, inference.

The gRPC servicer (kserve.py) and the HTTP/REST routes (http/kserve_routes.py)
translate their wire forms (protobuf messages; JSON with Triton's binary
tensor extension) into the plain objects here and back, so model lookup,
tensor validation and conversion, memory admission, batching, the
classification extension and statistics exist once. Metadata, configuration,
statistics and the repository index are built as the protocol's own
protobuf messages, which both front ends send (gRPC as is, REST as JSON).

Choices where the protocol leaves room:

- Request parameters: `timeout` (microseconds) shortens the deadline,
  `priority` is accepted and ignored, `sequence_*` are refused (artforge
  models are stateless); an output's `classification: k` returns Triton's
  top-k "score:index:label" BYTES instead of the raw probabilities.
- A model that exists but failed to load or was unloaded answers
  FAILED_PRECONDITION with the reason; model ready says false.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from google.protobuf import json_format

import artforge
from artforge import contract
from artforge.errors import InvalidInputError, NotFoundError, ResourceExhaustedError, listed, quoted, shortened
from artforge.proto.inference import grpc_service_pb2 as pb
from artforge.proto.inference import model_config_pb2 as mc
from artforge.runtime import pipeline
from artforge.runtime.backends import TensorSpec
from artforge.runtime.models import Stylizer
from artforge.serving import memory
from artforge.serving.auth import check_model_control
from artforge.serving.calls import deadline_in
from artforge.serving.model_manager import READY, ModelEntry, ModelManager, ServingModel
from artforge.serving.options import ServerOptions
from artforge.serving.settings import check_override
from artforge.serving.tensors import config_type, convert, datatype_of

T = TypeVar("T")
#: a request, input or output parameter's value, as both wire forms carry it
Param = bool | int | float | str | bytes
#: Triton platform names by artifact file: the platform says what the file is (as config.pbtxt does, so the
#: folder still loads in Triton), `backend` says what runs it here (onnxruntime, openvino, tensorrt)
PLATFORMS = {".onnx": "onnxruntime_onnx", ".plan": "tensorrt_plan"}
EXTENSIONS = ["model_repository", "model_configuration", "statistics", "binary_tensor_data", "classification",
              "parameters", "health", "schedule_policy"]
#: activations per image pixel of a request, by kind (memory.py)
_BYTES_PER_PIXEL = {contract.CLASSIFIER: memory.CLASSIFIER_BYTES_PER_PIXEL,
                    contract.GENERATOR: memory.GENERATOR_BYTES_PER_PIXEL,
                    contract.STYLIZER: memory.STYLIZER_BYTES_PER_PIXEL}


def platform_of(served: ServingModel) -> str:
    suffix = served.model.backend.path.suffix
    return PLATFORMS.get(suffix, suffix.lstrip("."))


def dims(spec: TensorSpec) -> list[int]:
    """The spec's shape with -1 for dynamic dimensions, as KServe writes it."""
    return [-1 if d is None else d for d in spec.shape]


def describe_inputs(served: ServingModel) -> str:
    return ", ".join(f"{s.name} {datatype_of(s.dtype)}[{','.join(map(str, dims(s)))}]" for s in served.model.inputs)


def _pixels(shape: Sequence[int]) -> int:
    """Image pixels of a declared NHWC shape (rows x H x W; 0 for other ranks or nonsense dims)."""
    if len(shape) != 4 or any(d < 0 for d in shape):
        return 0
    return shape[0] * shape[1] * shape[2]


def timeout_s(parameters: Mapping[str, Param]) -> float | None:
    """The `timeout` request parameter (microseconds) in seconds; None when absent or 0."""
    if "timeout" not in parameters:
        return None
    micros = parameters["timeout"]
    if isinstance(micros, bool) or not isinstance(micros, (int, float)) or not math.isfinite(micros) or micros < 0:
        raise InvalidInputError(f"parameter 'timeout' must be a finite, non-negative number of microseconds, "
                                f"got {quoted(micros)}")
    return micros / 1e6 if micros else None


# ------------------------------------------------------------------ inference requests and results

@dataclass
class InputTensor:
    """One request input as its wire form declares it; `decode` reads its values (in a worker thread, after
    the declared shape has been checked against the model) as a numpy array of the declared datatype."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    decode: Callable[[], np.ndarray]


@dataclass
class RequestedOutput:
    name: str
    parameters: Mapping[str, Param] = field(default_factory=dict)

    @property
    def binary(self) -> bool | None:
        """The output's `binary_data` parameter (None when not given)."""
        value = self.parameters.get("binary_data")
        return None if value is None else value is True


@dataclass
class TensorRequest:
    """One inference request, whatever the wire."""

    model: str
    version: str
    inputs: list[InputTensor]
    #: empty = every output of the model, with default settings
    outputs: list[RequestedOutput]
    id: str = ""
    parameters: Mapping[str, Param] = field(default_factory=dict)
    #: bytes the request took on the wire (memory admission charges them before a byte is parsed)
    size: int = 0


@dataclass
class OutputTensor:
    name: str
    array: np.ndarray
    #: the `binary_data` parameter the request gave this output (None when not given)
    binary: bool | None


@dataclass
class TensorResult:
    model: str
    version: str
    id: str
    outputs: list[OutputTensor]


# ------------------------------------------------------------------ the requests

class KServeRequests:
    """KServe v2 over the shared models; use it on the event loop, blocking work goes to `executor`."""

    def __init__(self, manager: ModelManager, executor: Executor, options: ServerOptions,
                 is_draining: Callable[[], bool]) -> None:
        self._manager = manager
        self._executor = executor
        self._options = options
        self._draining = is_draining

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- health and metadata ----------------------------------------------------------

    def server_ready(self) -> bool:
        return not self._draining() and self._manager.any_ready()

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self._manager.resolve(name, version)
        except Exception:  # unknown, not loaded or a bad version: all just "not ready"
            return False
        return not self._draining()

    @staticmethod
    def server_metadata() -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="artforge", version=artforge.__version__, extensions=EXTENSIONS)

    def model_metadata(self, name: str, version: str = "") -> pb.ModelMetadataResponse:
        served = self._manager.resolve(name, version)

        def tensor(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
            return pb.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=datatype_of(spec.dtype),
                                                           shape=dims(spec))
        return pb.ModelMetadataResponse(
            name=served.name, versions=[str(served.version)], platform=platform_of(served),
            inputs=[tensor(s) for s in served.model.inputs], outputs=[tensor(s) for s in served.model.outputs])

    def model_config(self, name: str, version: str = "") -> mc.ModelConfig:
        return model_config(self._manager.resolve(name, version))

    def statistics(self, name: str = "", version: str = "") -> list[pb.ModelStatistics]:
        """One model's statistics, or every loaded model's when `name` is empty."""
        if name:
            models = [self._manager.resolve(name, version)]
        else:
            models = [e.served for e in self._manager.entries() if e.served is not None]
        return [m.stats.to_proto() for m in models]

    # -- repository -------------------------------------------------------------------

    def _check_repository(self, name: str) -> None:
        if name and name != self._manager.repository_name:
            raise NotFoundError(f"no repository named {quoted(name)}; this server serves "
                                f"{self._manager.repository_name!r} (or leave repository_name empty)")

    def _check_control(self, call: str, peer: str) -> None:
        check_model_control(self._options.model_control, bool(self._options.token), peer, call)

    def _index_rows(self, entries: dict[str, ModelEntry], ready_only: bool,
                    ) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        """In a worker thread (the listing touches the disk); `entries` is a snapshot taken on the loop."""
        repo = self._manager.repo
        rows = []
        for name in sorted(set(repo.names()) | set(entries)):
            entry = entries.get(name)
            state, reason = (entry.state, entry.reason) if entry else ("", "")
            if ready_only and state != READY:
                continue
            if entry is not None and entry.served is not None:
                version = str(entry.served.version)
            else:
                try:
                    versions = repo.versions(name)
                except NotFoundError:  # deleted from disk since the last reload
                    versions = []
                version = str(versions[-1]) if versions else ""
            rows.append(pb.RepositoryIndexResponse.ModelIndex(name=name, version=version, state=state,
                                                              reason=reason))
        return rows

    async def repository_index(self, repository: str = "", ready_only: bool = False,
                               ) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        self._check_repository(repository)
        entries = {e.name: e for e in self._manager.entries()}
        return await self._run(self._index_rows, entries, ready_only)

    async def load(self, name: str, parameters: Mapping[str, Param], peer: str, repository: str = "",
                   call: str = "RepositoryModelLoad") -> None:
        """Load (or reload) a model when model control allows it to `peer` (auth.check_model_control); the only
        parameter is `config`, a JSON configuration replacing config.pbtxt."""
        self._check_control(call, peer)
        self._check_repository(repository)
        override = None
        for key, value in parameters.items():
            if key != "config":
                raise InvalidInputError(f"load parameter {quoted(key)} is not supported; the only one is "
                                        "'config' (a JSON model configuration that replaces config.pbtxt)")
            try:
                if not isinstance(value, str):
                    raise json_format.ParseError("it must be a string holding JSON")
                override = json_format.Parse(value, mc.ModelConfig(), ignore_unknown_fields=True)
            except (json_format.ParseError, RecursionError) as error:
                raise InvalidInputError(f"load parameter 'config' is not a valid JSON model "
                                        f"configuration ({shortened(str(error), 200)})") from None
            check_override(override)
        await self._manager.load(name, config=override)

    async def unload(self, name: str, peer: str, repository: str = "", call: str = "RepositoryModelUnload") -> None:
        self._check_control(call, peer)
        self._check_repository(repository)
        await self._manager.unload(name)

    # -- inference --------------------------------------------------------------------

    async def infer(self, request: TensorRequest, encode: Callable[[TensorResult], T],
                    transport_timeout_s: float | None = None, call: str = "ModelInfer") -> T:
        """Run one request; `encode` turns the result into the front end's response (in a worker thread, while
        the request's memory is still held). `transport_timeout_s`: the wire's own deadline (gRPC's)."""
        with self._manager.use(request.model, request.version) as served:
            for key in ("sequence_id", "sequence_start", "sequence_end"):
                if key in request.parameters:
                    raise InvalidInputError(f"parameter {quoted(key)}: sequence batching is not supported; "
                                            "artforge models are stateless")
            deadline = deadline_in(transport_timeout_s, timeout_s(request.parameters))
            served.batcher.check_room()
            # Charged from the declared shapes, before a byte is parsed; shapes that disagree with the
            # data are refused by the parser.
            pixels = sum(_pixels(tensor.shape) for tensor in request.inputs)
            cost = memory.tensor_cost(request.size, pixels, _BYTES_PER_PIXEL[served.kind])
            async with self._manager.memory.reserve(cost, deadline, f"this {call} request"):
                started = time.perf_counter_ns()
                feeds = await self._run(self._parse_inputs, request, served)
                parsed = time.perf_counter_ns()
                results = await served.infer(feeds, deadline)
                inferred = time.perf_counter_ns()
                response = await self._run(self._respond, request, served, results, encode)
                served.stats.record_pre_post(parsed - started, time.perf_counter_ns() - inferred)
            return response

    def _parse_inputs(self, request: TensorRequest, served: ServingModel) -> dict[str, np.ndarray]:
        """In a worker thread: the request's tensors, checked against the model and converted to its dtypes."""
        model = served.model
        specs = {s.name: s for s in model.inputs}
        names = [t.name for t in request.inputs]
        if set(names) != set(specs) or len(names) != len(set(names)):
            raise InvalidInputError(f"model {model.name} takes input(s) {describe_inputs(served)}; the request has "
                                    f"{listed([quoted(n) for n in names], most=4)}")
        outputs = {s.name: s for s in model.outputs}
        for output in request.outputs:
            if output.name not in outputs:
                raise InvalidInputError(f"model {model.name} has no output {quoted(output.name)}; outputs: "
                                        f"{', '.join(outputs)}")
            if "classification" in output.parameters:
                count = output.parameters["classification"]
                if isinstance(count, bool) or not isinstance(count, int) or count < 1 \
                        or len(outputs[output.name].shape) != 2:
                    raise InvalidInputError(f"output {quoted(output.name)}: classification needs a positive int64 "
                                            "class count and a [batch, classes] output")
        feeds = {}
        for tensor in request.inputs:
            spec = specs[tensor.name]
            self._check_shape(served, spec, tensor.shape)
            feeds[spec.name] = convert(tensor.decode(), spec.dtype, f"input '{spec.name}'")
        return feeds

    def _check_shape(self, served: ServingModel, spec: TensorSpec, shape: tuple[int, ...]) -> None:
        model, settings = served.model, served.settings
        wanted = f"{spec.name} {datatype_of(spec.dtype)}[{','.join(map(str, dims(spec)))}]"
        got = "[" + ",".join(map(str, shape)) + "]"
        if len(shape) != len(spec.shape) or any(d is not None and d != n for d, n in zip(spec.shape[1:], shape[1:],
                                                                                          strict=True)):
            raise InvalidInputError(f"model {model.name}: input '{spec.name}' has shape {got}; the model takes "
                                    f"{wanted}")
        rows = shape[0]
        if rows < 1:
            raise InvalidInputError(f"model {model.name}: input '{spec.name}' has shape {got}, an empty batch; "
                                    "send at least one row")
        if rows > settings.max_batch_size:
            raise InvalidInputError(f"model {model.name}: a batch of {rows} is over its max_batch_size of "
                                    f"{settings.max_batch_size}; split the request")
        if spec.dtype == np.uint8 and len(shape) == 4:  # an image batch [N,H,W,C]
            height, width = shape[1], shape[2]
            if height * width > self._options.max_image_pixels:
                raise ResourceExhaustedError(
                    f"input '{spec.name}' images are {width}x{height}, over the server's limit of "
                    f"{self._options.max_image_pixels} pixels")
            if isinstance(model, Stylizer):
                multiple, least = model.size_multiple, model.min_size
                if height % multiple or width % multiple or min(height, width) < least:
                    raise InvalidInputError(
                        f"model {model.name}: input '{spec.name}' is {width}x{height}; height and width must be "
                        f"multiples of {multiple} and at least {least} (pad the image, or send it encoded to "
                        "artforge.v1.ImageService/Stylize or POST /v1/models/{name}/stylize, which pad for you)")

    def _respond(self, request: TensorRequest, served: ServingModel, results: dict[str, np.ndarray],
                 encode: Callable[[TensorResult], T]) -> T:
        """In a worker thread: the outputs asked for (every output when none was named), then the wire form."""
        model = served.model
        wanted = request.outputs or [RequestedOutput(s.name) for s in model.outputs]
        outputs = []
        for output in wanted:
            array = results[output.name]
            if "classification" in output.parameters:
                array = _classification(served, array, int(output.parameters["classification"]))
            outputs.append(OutputTensor(output.name, array, output.binary))
        return encode(TensorResult(model.name, str(served.version), request.id, outputs))


def _classification(served: ServingModel, array: np.ndarray, count: int) -> np.ndarray:
    """Triton's classification extension: [N, k] BYTES "score:index[:label]", best first (k checked)."""
    labels = getattr(served.model, "labels", ())
    k = min(count, array.shape[1])
    rows = []
    for row in array:
        rows.append([f"{row[i]:f}:{i}" + (f":{labels[i]}" if i < len(labels) else "")
                     for i in pipeline.top_k(row, k)])
    out = np.empty((array.shape[0], k), dtype=object)
    out[:] = [[s.encode() for s in r] for r in rows]
    return out


def model_config(served: ServingModel) -> mc.ModelConfig:
    """The model's configuration as this server runs it (model I/O plus the effective scheduling settings)."""
    model, settings = served.model, served.settings

    def batchless(spec: TensorSpec) -> list[int]:
        return dims(spec)[1:]  # max_batch_size > 0: dims leave out the batch dimension

    image_format = mc.ModelInput.FORMAT_NHWC
    option = getattr(model.backend, "option", "")
    return mc.ModelConfig(
        name=model.name, platform=platform_of(served), backend=model.backend.name,
        version_policy=mc.ModelVersionPolicy(latest=mc.ModelVersionPolicy.Latest(num_versions=1)),
        max_batch_size=settings.max_batch_size,
        input=[mc.ModelInput(name=s.name, data_type=config_type(s.dtype), dims=batchless(s),
                             format=image_format if len(s.shape) == 4 else mc.ModelInput.FORMAT_NONE)
               for s in model.inputs],
        output=[mc.ModelOutput(name=s.name, data_type=config_type(s.dtype), dims=batchless(s))
                for s in model.outputs],
        dynamic_batching=mc.ModelDynamicBatching(
            preferred_batch_size=settings.preferred_batch_sizes,
            max_queue_delay_microseconds=round(settings.max_queue_delay_s * 1e6),
            default_queue_policy=mc.ModelQueuePolicy(max_queue_size=settings.queue_size)),
        instance_group=[mc.ModelInstanceGroup(
            name=f"{model.name}_0", count=settings.instances,
            kind=mc.ModelInstanceGroup.KIND_GPU if option in ("cuda", "tensorrt") else mc.ModelInstanceGroup.KIND_CPU)],
        default_model_filename=model.backend.path.name,
        parameters={key: mc.ModelParameter(string_value=value) for key, value in model.backend.metadata_props.items()
                    if key.startswith("artforge.")},
    )
