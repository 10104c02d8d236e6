"""`artforge.v1.ImageService`: encoded images in, labels or encoded images out.

The pixel work (decode, resize/crop/pad, encode) runs in the server's
worker threads: OpenCV releases the GIL, so it spreads over the cores while
the event loop keeps accepting requests. Each request's tensor then goes
through the model's batcher like a KServe request, so Classify calls and
same-size Stylize calls from different clients share graph runs.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import TypeVar

import grpc
import numpy as np

from artforge import defaults
from artforge.errors import InvalidInputError, ResourceExhaustedError, WrongKindError, quoted
from artforge.proto.artforge.v1 import image_service_pb2 as api
from artforge.proto.artforge.v1 import image_service_pb2_grpc as api_grpc
from artforge.runtime import pipeline, tiling
from artforge.runtime.imageio import ImageInfo, decode_cost_bytes, encode_image, probe_image
from artforge.runtime.models import Classifier, Generator, Model, Stylizer
from artforge.runtime.pipeline import StylizeInput
from artforge.serving import memory
from artforge.serving.calls import Calls, deadline_of, ordered_stream
from artforge.serving.model_manager import ModelManager, ServingModel
from artforge.serving.options import ServerOptions
from artforge.serving.tensors import datatype_of

T = TypeVar("T")
M = TypeVar("M", bound=Model)
_FORMATS = ("png", "jpeg", "webp")
#: EXIF orientations that swap width and height
_TRANSPOSING = (5, 6, 7, 8)


def _output_format(fmt: str, quality: int) -> tuple[str, int | None]:
    """Validated (format, encoder quality); format "" stays "" (the caller picks a default)."""
    fmt = fmt.lower().lstrip(".")
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt and fmt not in _FORMATS:
        raise InvalidInputError(f"format {quoted(fmt)} is not supported; use png, jpeg or webp (or leave it empty)")
    if not 0 <= quality <= 100:
        raise InvalidInputError(f"quality must be from 1 to 100 (0 = {defaults.QUALITY}), got {quality}")
    return fmt, quality or defaults.QUALITY


def _decode_bytes(info: ImageInfo | None, max_pixels: int, short_side: int | None = None,
                  long_side: int | None = None) -> int:
    """The peak bytes decoding this image takes (imageio.decode_cost_bytes, with the same size hints). Images
    the decoder refuses (no readable header, over max_pixels) cost nothing here: they are refused at decode
    with the decoder's own message, before a pixel is allocated."""
    if info is None or info.width * info.height > max_pixels:
        return 0
    return decode_cost_bytes(info, short_side=short_side, long_side=long_side)


def _fitted(info: ImageInfo | None, max_side: int | None, max_pixels: int) -> tuple[int, int]:
    """(height, width) of the image after the max_side fit, from its header (pipeline.fit_max_side's rule);
    (0, 0) when decoding will refuse it anyway."""
    if info is None or info.width * info.height > max_pixels:
        return 0, 0
    height, width = (info.width, info.height) if info.orientation in _TRANSPOSING else (info.height, info.width)
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _encode(image: np.ndarray, fmt: str, quality: int) -> bytes:
    return encode_image(image, fmt, None if fmt == "png" else quality)


async def _gather(awaitables: list[Awaitable[T]]) -> list[T]:
    """All results in order; on the first failure the rest are cancelled (freeing their queue places)."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def _tensor_info(spec) -> api.TensorInfo:
    return api.TensorInfo(name=spec.name, datatype=datatype_of(spec.dtype),
                          shape=[-1 if d is None else d for d in spec.shape])


class ImageServicer(api_grpc.ImageServiceServicer):
    def __init__(self, manager: ModelManager, calls: Calls, executor: Executor, options: ServerOptions) -> None:
        self._manager = manager
        self._calls = calls
        self._executor = executor
        self._options = options

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _model(self, served: ServingModel, cls: type[M], rpc: str) -> M:
        """The served model as the kind the RPC needs (FAILED_PRECONDITION naming the models that fit)."""
        if not isinstance(served.model, cls):
            others = [e.name for e in self._manager.entries() if e.served is not None and e.served.kind == cls.kind]
            raise WrongKindError(f"model {served.name} is a {served.kind}; {rpc} needs a {cls.kind} "
                                 f"({cls.kind}s here: {', '.join(others) or 'none'})")
        return served.model

    async def _infer(self, served: ServingModel, batch: np.ndarray, deadline: float | None) -> np.ndarray:
        meta = served.model.metadata
        outputs = await served.infer({meta.input_name: batch}, deadline)
        return outputs[meta.output_name]

    # -- Classify ---------------------------------------------------------------------

    async def Classify(self, request: api.ClassifyRequest, context: grpc.aio.ServicerContext):
        return await self._calls.unary("Classify", request.model, context, lambda: self._classify(request, context))

    async def _classify(self, request: api.ClassifyRequest, context: grpc.aio.ServicerContext) -> api.ClassifyResponse:
        if request.top_k < 0:
            raise InvalidInputError(f"top_k must be positive (0 = {defaults.TOP_K}), got {request.top_k}")
        with self._manager.use(request.model) as served:
            model = self._model(served, Classifier, "Classify")
            deadline = deadline_of(context)
            served.batcher.check_room()
            decode = _decode_bytes(probe_image(request.image), self._options.max_image_pixels, model.input_size)
            cost = memory.classify_cost(decode, model.input_size)
            async with self._manager.memory.reserve(cost, deadline, "this Classify request"):
                started = time.perf_counter_ns()
                batch = await self._run(model.prepare, [request.image], "ClassifyRequest.image")
                served.stats.record_pre_post(input_ns=time.perf_counter_ns() - started)
                probabilities = (await self._infer(served, batch, deadline))[0]
            labels = model.labels
            best = model.best(probabilities, request.top_k or defaults.TOP_K)
            return api.ClassifyResponse(
                model=served.name, model_version=str(served.version),
                labels=[api.Label(label=labels[i], score=float(probabilities[i]), index=int(i)) for i in best])

    # -- Generate ---------------------------------------------------------------------

    async def Generate(self, request: api.GenerateRequest, context: grpc.aio.ServicerContext):
        return await self._calls.unary("Generate", request.model, context, lambda: self._generate(request, context))

    async def _generate(self, request: api.GenerateRequest, context: grpc.aio.ServicerContext) -> api.GenerateResponse:
        count = request.count or 1
        if count < 0:
            raise InvalidInputError(f"count must be positive (0 = 1), got {request.count}")
        if count > self._options.max_request_batch:
            raise ResourceExhaustedError(f"count is {count}; this server generates at most "
                                         f"{self._options.max_request_batch} images per request")
        if request.HasField("seed") and request.seed < 0:
            raise InvalidInputError(f"seed must not be negative, got {request.seed}")
        fmt, quality = _output_format(request.format, request.quality)
        fmt = fmt or "png"
        seed = request.seed if request.HasField("seed") else secrets.randbits(63)
        with self._manager.use(request.model) as served:
            model = self._model(served, Generator, "Generate")
            deadline = deadline_of(context)
            served.batcher.check_room()
            latents = model.latents(count, seed)
            step = served.settings.max_batch_size
            parts = await _gather([self._infer(served, latents[i:i + step], deadline)
                                   for i in range(0, count, step)])
            images = np.concatenate(parts)
            started = time.perf_counter_ns()
            encoded = await _gather([self._run(_encode, image, fmt, quality) for image in images])
            served.stats.record_pre_post(output_ns=time.perf_counter_ns() - started)
            return api.GenerateResponse(model=served.name, model_version=str(served.version), images=encoded,
                                        format=fmt, seed=seed)

    # -- Stylize ----------------------------------------------------------------------

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

    async def _stylize_tiled(self, served: ServingModel, model: Stylizer, prepared: StylizeInput,
                             deadline: float | None) -> np.ndarray:
        """The batch tool's tiling (runtime/tiling.py), each tile a request to the model's batcher.

        The tiling loop blocks on each tile's result, so it runs in its own thread (the loop's default
        executor), not in the worker pool that decodes other requests' images; a cancelled request stops it
        at the next tile.
        """
        loop = asyncio.get_running_loop()
        cancelled = threading.Event()

        def run(batch: np.ndarray) -> np.ndarray:
            if cancelled.is_set():
                raise asyncio.CancelledError
            return asyncio.run_coroutine_threadsafe(self._infer(served, batch, deadline), loop).result()

        def tiled() -> np.ndarray:
            return tiling.stylize_tiled(prepared.rgb, run, tile=self._options.tile,
                                        multiple=model.size_multiple, min_size=model.min_size)
        try:
            return await loop.run_in_executor(None, tiled)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @staticmethod
    def _stylizer_input(model: Stylizer, data: bytes, max_side: int | None) -> tuple[StylizeInput, np.ndarray]:
        prepared = model.prepare(data, max_side, "StylizeRequest.image")
        return prepared, model.padded(prepared)[np.newaxis]

    @staticmethod
    def _stylizer_output(row: np.ndarray, prepared: StylizeInput, fmt: str, quality: int) -> bytes:
        return _encode(pipeline.stylize_output(row, prepared), fmt, quality)

    async def _stylize(self, request: api.StylizeRequest, context: grpc.aio.ServicerContext) -> api.StylizeResponse:
        if request.max_side < 0:
            raise InvalidInputError(f"max_side must be positive (0 = no downscale), got {request.max_side}")
        fmt, quality = _output_format(request.format, request.quality)
        with self._manager.use(request.model) as served:
            model = self._model(served, Stylizer, "Stylize")
            deadline = deadline_of(context)
            served.batcher.check_room()
            info = probe_image(request.image)
            max_side = request.max_side or None
            height, width = _fitted(info, max_side, self._options.max_image_pixels)
            tiled = tiling.needs_tiling(height, width, None, self._options.tile_above_mp)
            graph_pixels = self._options.tile ** 2 if tiled else height * width
            decode = _decode_bytes(info, self._options.max_image_pixels, long_side=max_side)
            cost = memory.stylize_cost(decode, height * width, graph_pixels)
            async with self._manager.memory.reserve(cost, deadline, "this Stylize request"):
                started = time.perf_counter_ns()
                if tiled:
                    prepared = await self._run(model.prepare, request.image, max_side, "StylizeRequest.image")
                    served.stats.record_pre_post(input_ns=time.perf_counter_ns() - started)
                    row = await self._stylize_tiled(served, model, prepared, deadline)
                else:
                    prepared, batch = await self._run(self._stylizer_input, model, request.image, max_side)
                    served.stats.record_pre_post(input_ns=time.perf_counter_ns() - started)
                    row = (await self._infer(served, batch, deadline))[0]
                if not fmt:  # the input's own format when the server can write it
                    fmt = info.format if info is not None and info.format in _FORMATS else "png"
                started = time.perf_counter_ns()
                encoded = await self._run(self._stylizer_output, row, prepared, fmt, quality)
                served.stats.record_pre_post(output_ns=time.perf_counter_ns() - started)
            return api.StylizeResponse(model=served.name, model_version=str(served.version), image=encoded,
                                       format=fmt, width=prepared.width, height=prepared.height,
                                       request_id=request.request_id)

    # -- ListModels -------------------------------------------------------------------

    def _disk_versions(self) -> dict[str, list[int]]:
        """In a worker thread: the versions on disk of every model folder."""
        repo = self._manager.repo
        found = {}
        for name in repo.names():
            try:
                found[name] = repo.versions(name)
            except Exception:  # deleted while listing
                continue
        return found

    async def ListModels(self, request: api.ListModelsRequest, context: grpc.aio.ServicerContext):
        async def work() -> api.ListModelsResponse:
            disk = await self._run(self._disk_versions)
            entries = {e.name: e for e in self._manager.entries()}
            models = []
            for name in sorted(set(disk) | set(entries)):
                entry = entries.get(name)
                info = api.ModelInfo(name=name, versions=[str(v) for v in disk.get(name, [])])
                if entry is None:
                    info.reason = ("added to the repository after the server started; load it with "
                                   "RepositoryModelLoad or send the server SIGHUP")
                elif entry.served is None:
                    info.kind = entry.kind
                    info.reason = entry.reason or "not loaded"
                else:
                    model = entry.served.model
                    info.kind, info.ready, info.backend = model.kind, True, model.backend_name
                    info.inputs.extend(_tensor_info(s) for s in model.inputs)
                    info.outputs.extend(_tensor_info(s) for s in model.outputs)
                    info.labels.extend(getattr(model, "labels", ()))
                models.append(info)
            return api.ListModelsResponse(models=models)
        return await self._calls.unary("ListModels", "", context, work, per_model=False)

