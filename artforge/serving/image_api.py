"""`artforge.v1.ImageService` over gRPC: encoded images in, labels or encoded images out.

A thin adapter: every call is served by image_requests.ImageRequests (the
HTTP image endpoints call it too); this module only reads the request
messages and builds the responses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import Executor

import grpc

from artforge.proto.artforge.v1 import image_service_pb2 as api
from artforge.proto.artforge.v1 import image_service_pb2_grpc as api_grpc
from artforge.serving.calls import Calls, deadline_of, ordered_stream
from artforge.serving.image_requests import ImageRequests, ModelListing, TensorInfo, list_models
from artforge.serving.model_manager import ModelManager


def _tensor_info(tensor: TensorInfo) -> api.TensorInfo:
    return api.TensorInfo(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)


def _model_info(listing: ModelListing) -> api.ModelInfo:
    return api.ModelInfo(name=listing.name, kind=listing.kind, versions=listing.versions, ready=listing.ready,
                         reason=listing.reason, backend=listing.backend, labels=listing.labels,
                         inputs=[_tensor_info(t) for t in listing.inputs],
                         outputs=[_tensor_info(t) for t in listing.outputs])


class ImageServicer(api_grpc.ImageServiceServicer):
    def __init__(self, requests: ImageRequests, manager: ModelManager, calls: Calls, executor: Executor) -> None:
        self._requests = requests
        self._manager = manager
        self._calls = calls
        self._executor = executor

    async def Classify(self, request: api.ClassifyRequest, context: grpc.aio.ServicerContext):
        async def work() -> api.ClassifyResponse:
            result = await self._requests.classify(request.model, request.image, request.top_k,
                                                   deadline_of(context), "ClassifyRequest.image")
            return api.ClassifyResponse(
                model=result.model, model_version=str(result.version),
                labels=[api.Label(label=x.label, score=x.score, index=x.index) for x in result.labels])
        return await self._calls.unary("Classify", request.model, context, work)

    async def Generate(self, request: api.GenerateRequest, context: grpc.aio.ServicerContext):
        async def work() -> api.GenerateResponse:
            result = await self._requests.generate(
                request.model, request.count, request.seed if request.HasField("seed") else None,
                request.format, request.quality, deadline_of(context))
            return api.GenerateResponse(model=result.model, model_version=str(result.version), images=result.images,
                                        format=result.format, seed=result.seed)
        return await self._calls.unary("Generate", request.model, context, work)

    async def _stylize(self, request: api.StylizeRequest, context: grpc.aio.ServicerContext) -> api.StylizeResponse:
        result = await self._requests.stylize(request.model, request.image, request.max_side, request.format,
                                              request.quality, deadline_of(context), "StylizeRequest.image")
        return api.StylizeResponse(model=result.model, model_version=str(result.version), image=result.image,
                                   format=result.format, width=result.width, height=result.height,
                                   request_id=request.request_id)

    async def Stylize(self, request: api.StylizeRequest, context: grpc.aio.ServicerContext):
        return await self._calls.unary("Stylize", request.model, context, lambda: self._stylize(request, context))

    async def StylizeStream(self, request_iterator: AsyncIterator[api.StylizeRequest],
                            context: grpc.aio.ServicerContext):
        async def handle(request: api.StylizeRequest, index: int) -> api.StylizeResponse:
            request_id = request.request_id or str(index)
            result, code, message = await self._calls.call("StylizeStream", request.model,
                                                           lambda: self._stylize(request, context))
            if result is None:
                return api.StylizeResponse(model=request.model, request_id=request_id,
                                           error=api.Status(code=code.value[0], message=message))
            result.request_id = request_id
            return result

        async for response in ordered_stream(request_iterator, handle):
            yield response

    async def ListModels(self, request: api.ListModelsRequest, context: grpc.aio.ServicerContext):
        async def work() -> api.ListModelsResponse:
            return api.ListModelsResponse(models=[_model_info(m) for m in await list_models(self._manager,
                                                                                              self._executor)])
        return await self._calls.unary("ListModels", "", context, work, per_model=False)
