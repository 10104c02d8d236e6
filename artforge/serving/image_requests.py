"""Encoded images in, labels or encoded images out: the image requests every front end serves.

The gRPC ImageService (image_api.py) and the HTTP image endpoints
(http/image_routes.py) both call `ImageRequests`: plain Python arguments in
(model name, image bytes, options, deadline), plain results out, so the kind
check, memory admission, tiling, pipeline calls and statistics exist once.

The pixel work (decode, resize/crop/pad, encode) runs in the server's
worker threads: OpenCV releases the GIL, so it spreads over the cores while
the event loop keeps accepting requests. Each request's tensor then goes
through the model's batcher like a KServe request, so Classify calls and
same-size Stylize calls from different clients (and front ends) share graph
runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from artforge import defaults
from artforge.errors import InvalidInputError, ResourceExhaustedError, WrongKindError, quoted
from artforge.runtime import pipeline, tiling
from artforge.runtime.backends import TensorSpec
from artforge.runtime.grid import tile_grid
from artforge.runtime.imageio import ImageInfo, decode_cost_bytes, encode_image, probe_image
from artforge.runtime.models import Classifier, Generator, Model, Stylizer
from artforge.runtime.pipeline import StylizeInput
from artforge.runtime.repository import Repository
from artforge.serving import memory
from artforge.serving.model_manager import ModelManager, ServingModel
from artforge.serving.options import ServerOptions
from artforge.serving.tensors import datatype_of

T = TypeVar("T")
M = TypeVar("M", bound=Model)
#: the formats the server writes
FORMATS = ("png", "jpeg", "webp")

#: the side charged for a generator whose metadata does not give its output size (larger than any DCGAN's)
_GENERATOR_SIDE_UNKNOWN = 512


@dataclass(frozen=True)
class Label:
    label: str
    score: float
    index: int


@dataclass(frozen=True)
class Classified:
    model: str
    version: int
    #: best first
    labels: list[Label]


@dataclass(frozen=True)
class Generated:
    model: str
    version: int
    images: list[bytes]
    format: str
    seed: int


@dataclass(frozen=True)
class Stylized:
    model: str
    version: int
    image: bytes
    format: str
    width: int
    height: int


def output_format(fmt: str, quality: int) -> tuple[str, int]:
    """Validated (format, encoder quality); format "" stays "" (the caller picks a default)."""
    fmt = fmt.lower().lstrip(".")
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt and fmt not in FORMATS:
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
    """The image's size after the max_side fit, from its header; (0, 0) when decoding will refuse it anyway.
    (EXIF orientation may swap the two, which changes neither the pixels nor the tiling decision.)"""
    if info is None or info.width * info.height > max_pixels:
        return 0, 0
    return pipeline.fitted_size(info.height, info.width, max_side)


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


class ImageRequests:
    """Classify, Generate and Stylize over the shared models; use it on the event loop."""

    def __init__(self, manager: ModelManager, executor: Executor, options: ServerOptions) -> None:
        self._manager = manager
        self._executor = executor
        self._options = options

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _model(self, served: ServingModel, cls: type[M], call: str) -> M:
        """The served model as the kind the call needs (FAILED_PRECONDITION naming the models that fit)."""
        if not isinstance(served.model, cls):
            others = [e.name for e in self._manager.entries() if e.served is not None and e.served.kind == cls.kind]
            raise WrongKindError(f"model {served.name} is a {served.kind}; {call} needs a {cls.kind} "
                                 f"({cls.kind}s here: {', '.join(others) or 'none'})")
        return served.model

    async def _infer(self, served: ServingModel, batch: np.ndarray, deadline: float | None) -> np.ndarray:
        meta = served.model.metadata
        outputs = await served.infer({meta.input_name: batch}, deadline)
        return outputs[meta.output_name]

    # -- classify ---------------------------------------------------------------------

    async def classify(self, model_name: str, image: bytes, top_k: int, deadline: float | None,
                       source: str = "the image", call: str = "Classify") -> Classified:
        """The top_k labels (0 = the default) of one encoded image; `source` names the image in errors."""
        if top_k < 0:
            raise InvalidInputError(f"top_k must be positive (0 = {defaults.TOP_K}), got {top_k}")
        with self._manager.use(model_name) as served:
            model = self._model(served, Classifier, call)
            served.batcher.check_room()
            decode = _decode_bytes(probe_image(image), self._options.max_image_pixels, model.input_size)
            cost = memory.classify_cost(decode, model.input_size)
            async with self._manager.memory.reserve(cost, deadline, f"this {call} request"):
                started = time.perf_counter_ns()
                batch = await self._run(model.prepare, [image], source)
                served.stats.record_pre_post(input_ns=time.perf_counter_ns() - started)
                probabilities = (await self._infer(served, batch, deadline))[0]
            labels = model.labels
            best = model.best(probabilities, top_k or defaults.TOP_K)
            return Classified(served.name, served.version,
                              [Label(labels[i], float(probabilities[i]), int(i)) for i in best])

    # -- generate ---------------------------------------------------------------------

    async def generate(self, model_name: str, count: int, seed: int | None, fmt: str, quality: int,
                       deadline: float | None, call: str = "Generate", grid_columns: int = 0) -> Generated:
        """`count` images (0 = 1) from latents drawn with `seed` (None: a random one, returned); with
        `grid_columns`, one contact sheet of them in that many columns instead."""
        count = count or 1
        if count < 0:
            raise InvalidInputError(f"count must be positive (0 = 1), got {count}")
        if count > self._options.max_request_batch:
            raise ResourceExhaustedError(f"count is {count}; this server generates at most "
                                         f"{self._options.max_request_batch} images per request")
        if seed is not None and seed < 0:
            raise InvalidInputError(f"seed must not be negative, got {seed}")
        if grid_columns < 0:
            raise InvalidInputError(f"grid must be a positive number of columns (0 = separate images), "
                                    f"got {grid_columns}")
        fmt, quality = output_format(fmt, quality)
        fmt = fmt or "png"
        seed = secrets.randbits(63) if seed is None else seed
        with self._manager.use(model_name) as served:
            model = self._model(served, Generator, call)
            served.batcher.check_room()
            side = model.metadata.output_size or _GENERATOR_SIDE_UNKNOWN
            async with self._manager.memory.reserve(memory.generate_cost(count, side * side), deadline,
                                                    f"this {call} request"):
                latents = model.latents(count, seed)
                step = served.settings.max_batch_size
                parts = await _gather([self._infer(served, latents[i:i + step], deadline)
                                       for i in range(0, count, step)])
                images = np.concatenate(parts)
                if grid_columns > 0:
                    images = (await self._run(tile_grid, list(images), grid_columns))[np.newaxis]
                started = time.perf_counter_ns()
                encoded = await _gather([self._run(_encode, image, fmt, quality) for image in images])
                served.stats.record_pre_post(output_ns=time.perf_counter_ns() - started)
            return Generated(served.name, served.version, encoded, fmt, seed)

    # -- stylize ----------------------------------------------------------------------

    async def _stylize_tiled(self, served: ServingModel, model: Stylizer, prepared: StylizeInput,
                             deadline: float | None) -> np.ndarray:
        """The batch tool's tiling (runtime/tiling.py), each tile a request to the model's batcher.

        The tiling loop blocks on each tile's result, so it runs in its own thread (the loop's default
        executor), not in the worker pool that decodes other requests' images; a cancelled request stops it
        at the next tile.
        """
        loop = asyncio.get_running_loop()
        cancelled = threading.Event()
        # With a tile graph the tiles (and the stats pass, one tile's pixels) run through it directly in this
        # thread rather than the batcher, which batches model.onnx's single input; the request's memory
        # reservation already counts one tile's activations.
        norm = await loop.run_in_executor(None, model.shared_norm)

        def run(batch: np.ndarray) -> np.ndarray:
            if cancelled.is_set():
                raise asyncio.CancelledError
            return asyncio.run_coroutine_threadsafe(self._infer(served, batch, deadline), loop).result()

        def run_graph(feeds: tiling.Feeds) -> tiling.Feeds:
            if cancelled.is_set():
                raise asyncio.CancelledError
            assert norm is not None
            return norm.run(feeds)

        def tiled() -> np.ndarray:
            shared = None if norm is None else dataclasses.replace(norm, run=run_graph)
            return tiling.stylize_tiled(prepared.rgb, run, tile=self._options.tile,
                                        multiple=model.size_multiple, min_size=model.min_size, norm=shared,
                                        tile_stats=self._options.tile_stats)
        try:
            return await loop.run_in_executor(None, tiled)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @staticmethod
    def _stylizer_input(model: Stylizer, data: bytes, max_side: int | None,
                        source: str) -> tuple[StylizeInput, np.ndarray]:
        prepared = model.prepare(data, max_side, source)
        return prepared, model.padded(prepared)[np.newaxis]

    @staticmethod
    def _stylizer_output(row: np.ndarray, prepared: StylizeInput, fmt: str, quality: int) -> bytes:
        return _encode(pipeline.stylize_output(row, prepared), fmt, quality)

    async def stylize(self, model_name: str, image: bytes, max_side: int, fmt: str, quality: int,
                      deadline: float | None, source: str = "the image", call: str = "Stylize") -> Stylized:
        """One encoded image stylized (max_side 0 = full size; format "" = the input's own when writable)."""
        if max_side < 0:
            raise InvalidInputError(f"max_side must be positive (0 = no downscale), got {max_side}")
        fmt, quality = output_format(fmt, quality)
        options = self._options
        with self._manager.use(model_name) as served:
            model = self._model(served, Stylizer, call)
            served.batcher.check_room()
            info = probe_image(image)
            fit = max_side or None
            height, width = _fitted(info, fit, options.max_image_pixels)
            tiled = tiling.needs_tiling(height, width, None, options.tile_above_mp)
            graph_pixels = options.tile ** 2 if tiled else height * width  # a tile or the stats pass, no larger
            decode = _decode_bytes(info, options.max_image_pixels, long_side=fit)
            cost = memory.stylize_cost(decode, height * width, graph_pixels)
            async with self._manager.memory.reserve(cost, deadline, f"this {call} request"):
                started = time.perf_counter_ns()
                if tiled:
                    prepared = await self._run(model.prepare, image, fit, source)
                    served.stats.record_pre_post(input_ns=time.perf_counter_ns() - started)
                    row = await self._stylize_tiled(served, model, prepared, deadline)
                else:
                    prepared, batch = await self._run(self._stylizer_input, model, image, fit, source)
                    served.stats.record_pre_post(input_ns=time.perf_counter_ns() - started)
                    row = (await self._infer(served, batch, deadline))[0]
                if not fmt:  # the input's own format when the server can write it
                    fmt = info.format if info is not None and info.format in FORMATS else "png"
                started = time.perf_counter_ns()
                encoded = await self._run(self._stylizer_output, row, prepared, fmt, quality)
                served.stats.record_pre_post(output_ns=time.perf_counter_ns() - started)
            return Stylized(served.name, served.version, encoded, fmt, prepared.width, prepared.height)


# ------------------------------------------------------------------ the model list

@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str
    #: -1 where the dimension is dynamic
    shape: list[int]


@dataclass(frozen=True)
class ModelListing:
    """One model of the repository as the image API lists it (see image_service.proto's ModelInfo)."""

    name: str
    versions: list[str]
    kind: str = ""
    ready: bool = False
    reason: str = ""
    backend: str = ""
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


def _tensor_info(spec: TensorSpec) -> TensorInfo:
    return TensorInfo(spec.name, datatype_of(spec.dtype), [-1 if d is None else d for d in spec.shape])


def _disk_versions(repo: Repository) -> dict[str, list[int]]:
    """In a worker thread: the versions on disk of every model folder."""
    found = {}
    for name in repo.names():
        try:
            found[name] = repo.versions(name)
        except Exception:  # deleted while listing
            continue
    return found


async def list_models(manager: ModelManager, executor: Executor) -> list[ModelListing]:
    """Every model on disk or loaded, by name: kind, versions, readiness (or why not), tensors and labels."""
    disk = await asyncio.get_running_loop().run_in_executor(executor, _disk_versions, manager.repo)
    entries = {e.name: e for e in manager.entries()}
    models = []
    for name in sorted(set(disk) | set(entries)):
        entry = entries.get(name)
        versions = [str(v) for v in disk.get(name, [])]
        if entry is None:
            models.append(ModelListing(name, versions, reason=(
                "added to the repository after the server started; load it with RepositoryModelLoad or send the "
                "server SIGHUP")))
        elif entry.served is None:
            models.append(ModelListing(name, versions, kind=entry.kind, reason=entry.reason or "not loaded"))
        else:
            model = entry.served.model
            models.append(ModelListing(
                name, versions, kind=model.kind, ready=True, backend=model.backend_name,
                inputs=[_tensor_info(s) for s in model.inputs], outputs=[_tensor_info(s) for s in model.outputs],
                labels=list(getattr(model, "labels", ()))))
    return models
