"""`inference.GRPCInferenceService`: the KServe v2 / Open Inference Protocol.

Any Triton or KServe client works unchanged (tests use tritonclient).
Choices where the protocol leaves room:

- Outputs come back in `raw_output_contents` when the request sent raw
  inputs (tritonclient always does) or asked for `binary_data`, else in
  typed `contents`.
- Request parameters: `timeout` (microseconds) shortens the deadline,
  `priority` is accepted and ignored, `sequence_*` are refused (artforge
  models are stateless); an output's `classification: k` returns Triton's
  top-k "score:index:label" BYTES instead of the raw probabilities.
- A model that exists but failed to load or was unloaded answers
  FAILED_PRECONDITION with the reason; ModelReady says false.
- Stream responses come back in request order.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import TypeVar

import grpc
import numpy as np
from google.protobuf import json_format

import artforge
from artforge import contract
from artforge.errors import InvalidInputError, NotFoundError, ResourceExhaustedError, listed, quoted, shortened
from artforge.proto.inference import grpc_service_pb2 as pb
from artforge.proto.inference import grpc_service_pb2_grpc as pb_grpc
from artforge.proto.inference import model_config_pb2 as mc
from artforge.runtime import pipeline
from artforge.runtime.backends import TensorSpec
from artforge.runtime.models import Stylizer
from artforge.serving import memory
from artforge.serving.auth import check_model_control
from artforge.serving.calls import Calls, deadline_of, ordered_stream
from artforge.serving.model_manager import READY, ModelEntry, ModelManager, ServingModel
from artforge.serving.options import ServerOptions
from artforge.serving.settings import check_override
from artforge.serving.tensors import (
    config_type,
    convert,
    datatype_of,
    encode_output,
    has_typed_contents,
    parse_input,
)

#: Triton platform names by artifact file: the platform says what the file is (as config.pbtxt does, so the
#: folder still loads in Triton), `backend` says what runs it here (onnxruntime, openvino, tensorrt)
T = TypeVar("T")
PLATFORMS = {".onnx": "onnxruntime_onnx", ".plan": "tensorrt_plan"}
EXTENSIONS = ["model_repository", "model_configuration", "statistics", "binary_tensor_data", "classification",
              "parameters", "health", "schedule_policy"]


def platform_of(served: ServingModel) -> str:
    suffix = served.model.backend.path.suffix
    return PLATFORMS.get(suffix, suffix.lstrip("."))


def _dims(spec: TensorSpec) -> list[int]:
    return [-1 if d is None else d for d in spec.shape]


def describe_inputs(served: ServingModel) -> str:
    return ", ".join(f"{s.name} {datatype_of(s.dtype)}[{','.join(map(str, _dims(s)))}]" for s in served.model.inputs)


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=spec.name, datatype=datatype_of(spec.dtype),
                                                   shape=_dims(spec))


#: activations per image pixel of a request, by kind (memory.py)
_BYTES_PER_PIXEL = {contract.CLASSIFIER: memory.CLASSIFIER_BYTES_PER_PIXEL,
                    contract.GENERATOR: memory.GENERATOR_BYTES_PER_PIXEL,
                    contract.STYLIZER: memory.STYLIZER_BYTES_PER_PIXEL}


def _pixels(shape: Sequence[int]) -> int:
    """Image pixels of a declared NHWC shape (rows x H x W; 0 for other ranks or nonsense dims)."""
    if len(shape) != 4 or any(d < 0 for d in shape):
        return 0
    return shape[0] * shape[1] * shape[2]


def _timeout_s(parameters: Mapping[str, pb.InferParameter]) -> float | None:
    if "timeout" not in parameters:
        return None
    value = parameters["timeout"]
    micros = getattr(value, value.WhichOneof("parameter_choice") or "int64_param")
    if isinstance(micros, bool) or not isinstance(micros, (int, float)) or not math.isfinite(micros) or micros < 0:
        raise InvalidInputError(f"parameter 'timeout' must be a finite, non-negative number of microseconds, "
                                f"got {quoted(micros)}")
    return micros / 1e6 if micros else None


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, manager: ModelManager, calls: Calls, executor: Executor, options: ServerOptions,
                 is_draining: Callable[[], bool]) -> None:
        self._manager = manager
        self._calls = calls
        self._executor = executor
        self._options = options
        self._draining = is_draining

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- health and metadata ----------------------------------------------------------

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext):
        return pb.ServerReadyResponse(ready=not self._draining() and self._manager.any_ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext):
        try:
            self._manager.resolve(request.name, request.version)
        except Exception:  # unknown, not loaded or a bad version: all just "not ready"
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=not self._draining())

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext):
        return pb.ServerMetadataResponse(name="artforge", version=artforge.__version__, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext):
        async def work() -> pb.ModelMetadataResponse:
            served = self._manager.resolve(request.name, request.version)
            return pb.ModelMetadataResponse(
                name=served.name, versions=[str(served.version)], platform=platform_of(served),
                inputs=[_tensor_metadata(s) for s in served.model.inputs],
                outputs=[_tensor_metadata(s) for s in served.model.outputs])
        return await self._calls.unary("ModelMetadata", request.name, context, work, per_model=False)

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext):
        async def work() -> pb.ModelConfigResponse:
            return pb.ModelConfigResponse(config=model_config(self._manager.resolve(request.name, request.version)))
        return await self._calls.unary("ModelConfig", request.name, context, work, per_model=False)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext):
        async def work() -> pb.ModelStatisticsResponse:
            if request.name:
                models = [self._manager.resolve(request.name, request.version)]
            else:
                models = [e.served for e in self._manager.entries() if e.served is not None]
            return pb.ModelStatisticsResponse(model_stats=[m.stats.to_proto() for m in models])
        return await self._calls.unary("ModelStatistics", request.name, context, work, per_model=False)

    # -- repository -------------------------------------------------------------------

    def _check_repository(self, name: str) -> None:
        if name and name != self._manager.repository_name:
            raise NotFoundError(f"no repository named {quoted(name)}; this server serves "
                                f"{self._manager.repository_name!r} (or leave repository_name empty)")

    def _check_control(self, rpc: str, context: grpc.aio.ServicerContext) -> None:
        check_model_control(self._options.model_control, bool(self._options.token), context.peer(), rpc)

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

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext):
        async def work() -> pb.RepositoryIndexResponse:
            self._check_repository(request.repository_name)
            entries = {e.name: e for e in self._manager.entries()}
            return pb.RepositoryIndexResponse(models=await self._run(self._index_rows, entries, request.ready))
        return await self._calls.unary("RepositoryIndex", "", context, work, per_model=False)

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest,
                                  context: grpc.aio.ServicerContext):
        async def work() -> pb.RepositoryModelLoadResponse:
            self._check_control("RepositoryModelLoad", context)
            self._check_repository(request.repository_name)
            override = None
            for key, value in request.parameters.items():
                if key != "config":
                    raise InvalidInputError(f"load parameter {quoted(key)} is not supported; the only one is "
                                            "'config' (a JSON model configuration that replaces config.pbtxt)")
                try:
                    override = json_format.Parse(value.string_param, mc.ModelConfig(), ignore_unknown_fields=True)
                except (json_format.ParseError, RecursionError) as error:
                    raise InvalidInputError(f"load parameter 'config' is not a valid JSON model "
                                            f"configuration ({shortened(str(error), 200)})") from None
                check_override(override)
            await self._manager.load(request.model_name, config=override)
            return pb.RepositoryModelLoadResponse()
        return await self._calls.unary("RepositoryModelLoad", request.model_name, context, work, per_model=False)

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest,
                                    context: grpc.aio.ServicerContext):
        async def work() -> pb.RepositoryModelUnloadResponse:
            self._check_control("RepositoryModelUnload", context)
            self._check_repository(request.repository_name)
            await self._manager.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse()
        return await self._calls.unary("RepositoryModelUnload", request.model_name, context, work, per_model=False)

    # -- inference --------------------------------------------------------------------

    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext):
        return await self._calls.unary("ModelInfer", request.model_name, context,
                                       lambda: self._infer(request, context))

    async def ModelStreamInfer(self, request_iterator: AsyncIterator[pb.ModelInferRequest],
                               context: grpc.aio.ServicerContext):
        async def handle(request: pb.ModelInferRequest, index: int) -> pb.ModelStreamInferResponse:
            result, code, message = await self._calls.call("ModelStreamInfer", request.model_name,
                                                           lambda: self._infer(request, context))
            if result is None:
                return pb.ModelStreamInferResponse(error_message=f"{code.name}: {message}")
            return pb.ModelStreamInferResponse(infer_response=result)

        async for response in ordered_stream(request_iterator, handle):
            yield response

    async def _infer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        with self._manager.use(request.model_name, request.model_version) as served:
            for key in ("sequence_id", "sequence_start", "sequence_end"):
                if key in request.parameters:
                    raise InvalidInputError(f"parameter {quoted(key)}: sequence batching is not supported; "
                                            "artforge models are stateless")
            deadline = deadline_of(context, _timeout_s(request.parameters))
            served.batcher.check_room()
            # Charged from the declared shapes, before a byte is parsed; shapes that disagree with the
            # data are refused by the parser.
            pixels = sum(_pixels(tensor.shape) for tensor in request.inputs)
            cost = memory.tensor_cost(request.ByteSize(), pixels, _BYTES_PER_PIXEL[served.kind])
            async with self._manager.memory.reserve(cost, deadline, "this ModelInfer request"):
                started = time.perf_counter_ns()
                feeds = await self._run(self._parse_inputs, request, served)
                parsed = time.perf_counter_ns()
                results = await served.infer(feeds, deadline)
                inferred = time.perf_counter_ns()
                response = await self._run(self._build_response, request, served, results)
                served.stats.record_pre_post(parsed - started, time.perf_counter_ns() - inferred)
            return response

    def _parse_inputs(self, request: pb.ModelInferRequest, served: ServingModel) -> dict[str, np.ndarray]:
        """In a worker thread: the request's tensors, checked against the model and converted to its dtypes."""
        model = served.model
        specs = {s.name: s for s in model.inputs}
        names = [t.name for t in request.inputs]
        if set(names) != set(specs) or len(names) != len(set(names)):
            raise InvalidInputError(f"model {model.name} takes input(s) {describe_inputs(served)}; the request has "
                                    f"{listed([quoted(n) for n in names], most=4)}")
        raw = request.raw_input_contents
        if raw and len(raw) != len(names):
            raise InvalidInputError(f"raw_input_contents has {len(raw)} entries for {len(names)} input(s); "
                                    "send one per input, in the order of `inputs`")
        outputs = {s.name: s for s in model.outputs}
        for output in request.outputs:
            if output.name not in outputs:
                raise InvalidInputError(f"model {model.name} has no output {quoted(output.name)}; outputs: "
                                        f"{', '.join(outputs)}")
            if "classification" in output.parameters and (
                    output.parameters["classification"].int64_param < 1 or len(outputs[output.name].shape) != 2):
                raise InvalidInputError(f"output {quoted(output.name)}: classification needs a positive int64 class "
                                        "count and a [batch, classes] output")
        feeds = {}
        for i, tensor in enumerate(request.inputs):
            spec = specs[tensor.name]
            self._check_shape(served, spec, tuple(tensor.shape))
            array = parse_input(tensor, raw[i] if raw else None)
            feeds[spec.name] = convert(array, spec.dtype, f"input '{spec.name}'")
        return feeds

    def _check_shape(self, served: ServingModel, spec: TensorSpec, shape: tuple[int, ...]) -> None:
        model, settings = served.model, served.settings
        wanted = f"{spec.name} {datatype_of(spec.dtype)}[{','.join(map(str, _dims(spec)))}]"
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
                        f"multiples of {multiple} and at least {least} (pad the image, or use "
                        "artforge.v1.ImageService/Stylize, which pads for you)")

    def _build_response(self, request: pb.ModelInferRequest, served: ServingModel,
                        results: dict[str, np.ndarray]) -> pb.ModelInferResponse:
        """In a worker thread: the outputs asked for, all raw or all typed (the protocol allows no mix)."""
        model = served.model
        wanted = list(request.outputs) or [pb.ModelInferRequest.InferRequestedOutputTensor(name=s.name)
                                           for s in model.outputs]
        arrays = []
        for output in wanted:
            array = results[output.name]
            if "classification" in output.parameters:
                array = self._classification(served, output.name, array, output.parameters["classification"])
            arrays.append(array)
        default = bool(request.raw_input_contents)
        binary = any(o.parameters["binary_data"].bool_param if "binary_data" in o.parameters else default
                     for o in wanted) or not all(has_typed_contents(a.dtype) for a in arrays)
        response = pb.ModelInferResponse(model_name=model.name, model_version=str(served.version), id=request.id)
        for output, array in zip(wanted, arrays, strict=True):
            tensor, raw = encode_output(output.name, array, binary)
            response.outputs.append(tensor)
            if raw is not None:
                response.raw_output_contents.append(raw)
        return response

    @staticmethod
    def _classification(served: ServingModel, name: str, array: np.ndarray, value: pb.InferParameter) -> np.ndarray:
        """Triton's classification extension: [N, k] BYTES "score:index[:label]", best first (k checked)."""
        labels = getattr(served.model, "labels", ())
        k = min(value.int64_param, array.shape[1])
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

    def dims(spec: TensorSpec) -> list[int]:
        return _dims(spec)[1:]  # max_batch_size > 0: dims leave out the batch dimension

    image_format = mc.ModelInput.FORMAT_NHWC
    option = getattr(model.backend, "option", "")
    return mc.ModelConfig(
        name=model.name, platform=platform_of(served), backend=model.backend.name,
        version_policy=mc.ModelVersionPolicy(latest=mc.ModelVersionPolicy.Latest(num_versions=1)),
        max_batch_size=settings.max_batch_size,
        input=[mc.ModelInput(name=s.name, data_type=config_type(s.dtype), dims=dims(s),
                             format=image_format if len(s.shape) == 4 else mc.ModelInput.FORMAT_NONE)
               for s in model.inputs],
        output=[mc.ModelOutput(name=s.name, data_type=config_type(s.dtype), dims=dims(s)) for s in model.outputs],
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

