"""`inference.GRPCInferenceService`: the KServe v2 / Open Inference Protocol over gRPC.

Any Triton or KServe client works unchanged (tests use tritonclient). This
servicer only translates messages: every request is served by
kserve_requests.KServeRequests, which the HTTP/REST front end calls too.
Choices of the gRPC wire where the protocol leaves room:

- Outputs come back in `raw_output_contents` when the request sent raw
  inputs (tritonclient always does) or asked for `binary_data`, else in
  typed `contents` (all raw or all typed: the message allows no mix).
- `raw_input_contents` must hold one entry per input when it is used.
- Stream responses come back in request order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

import grpc
import numpy as np

from artforge.errors import InvalidInputError
from artforge.proto.inference import grpc_service_pb2 as pb
from artforge.proto.inference import grpc_service_pb2_grpc as pb_grpc
from artforge.serving.calls import Calls, ordered_stream
from artforge.serving.kserve_requests import (
    InputTensor,
    KServeRequests,
    Param,
    RequestedOutput,
    TensorRequest,
    TensorResult,
)
from artforge.serving.tensors import encode_output, has_typed_contents, parse_input


def _params(parameters: Mapping[str, pb.InferParameter | pb.ModelRepositoryParameter]) -> dict[str, Param]:
    """Protobuf parameter maps as plain values (an unset oneof reads as 0)."""
    return {key: getattr(value, value.WhichOneof("parameter_choice") or "int64_param")
            for key, value in parameters.items()}


def tensor_request(request: pb.ModelInferRequest) -> TensorRequest:
    """The protocol-neutral form of a ModelInferRequest (values are read later, in a worker thread)."""
    raw = request.raw_input_contents

    def decoder(tensor: pb.ModelInferRequest.InferInputTensor, index: int) -> Callable[[], np.ndarray]:
        def decode() -> np.ndarray:
            # Checked here, after the model's input names (KServeRequests), so a request with wrong names
            # hears about its names first.
            if raw and len(raw) != len(request.inputs):
                raise InvalidInputError(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} "
                                        "input(s); send one per input, in the order of `inputs`")
            return parse_input(tensor, raw[index] if raw else None)
        return decode

    return TensorRequest(
        model=request.model_name, version=request.model_version, id=request.id,
        parameters=_params(request.parameters), size=request.ByteSize(),
        inputs=[InputTensor(t.name, t.datatype, tuple(t.shape), decoder(t, i)) for i, t in enumerate(request.inputs)],
        outputs=[RequestedOutput(o.name, _params(o.parameters)) for o in request.outputs])


def infer_response(result: TensorResult, raw_default: bool) -> pb.ModelInferResponse:
    """The response message: raw outputs when any output asked for binary data (or, unasked, when the request
    sent raw inputs), or when a datatype has no typed contents field (FP16)."""
    binary = any(raw_default if o.binary is None else o.binary for o in result.outputs) \
        or not all(has_typed_contents(o.array.dtype) for o in result.outputs)
    response = pb.ModelInferResponse(model_name=result.model, model_version=result.version, id=result.id)
    for output in result.outputs:
        tensor, raw = encode_output(output.name, output.array, binary)
        response.outputs.append(tensor)
        if raw is not None:
            response.raw_output_contents.append(raw)
    return response


class KServeServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, requests: KServeRequests, calls: Calls) -> None:
        self._requests = requests
        self._calls = calls

    # -- health and metadata ----------------------------------------------------------

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext):
        return pb.ServerReadyResponse(ready=self._requests.server_ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext):
        return pb.ModelReadyResponse(ready=self._requests.model_ready(request.name, request.version))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext):
        return self._requests.server_metadata()

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext):
        async def work() -> pb.ModelMetadataResponse:
            return self._requests.model_metadata(request.name, request.version)
        return await self._calls.unary("ModelMetadata", request.name, context, work, per_model=False)

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext):
        async def work() -> pb.ModelConfigResponse:
            return pb.ModelConfigResponse(config=self._requests.model_config(request.name, request.version))
        return await self._calls.unary("ModelConfig", request.name, context, work, per_model=False)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext):
        async def work() -> pb.ModelStatisticsResponse:
            return pb.ModelStatisticsResponse(model_stats=self._requests.statistics(request.name, request.version))
        return await self._calls.unary("ModelStatistics", request.name, context, work, per_model=False)

    # -- repository -------------------------------------------------------------------

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext):
        async def work() -> pb.RepositoryIndexResponse:
            return pb.RepositoryIndexResponse(
                models=await self._requests.repository_index(request.repository_name, request.ready))
        return await self._calls.unary("RepositoryIndex", "", context, work, per_model=False)

    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest,
                                  context: grpc.aio.ServicerContext):
        async def work() -> pb.RepositoryModelLoadResponse:
            await self._requests.load(request.model_name, _params(request.parameters), context.peer(),
                                      request.repository_name)
            return pb.RepositoryModelLoadResponse()
        return await self._calls.unary("RepositoryModelLoad", request.model_name, context, work, per_model=False)

    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest,
                                    context: grpc.aio.ServicerContext):
        async def work() -> pb.RepositoryModelUnloadResponse:
            await self._requests.unload(request.model_name, context.peer(), request.repository_name)
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
        raw_default = bool(request.raw_input_contents)
        return await self._requests.infer(tensor_request(request), lambda result: infer_response(result, raw_default),
                                          context.time_remaining())
