"""The in-process executor of the batch driver: the models run in this process, in a pipeline of threads.

A pipeline of threads joined by bounded queues, so that decoding, inference
and encoding overlap (OpenCV and ONNX Runtime release the GIL):

    work ─► decode workers ─► [decoded] ─► inference (1 thread) ─► [encode] ─► encode workers ─► [results] ─► run
            read, orient,                  pools same-size images                 crop, re-attach              emits
            split alpha, max-side,         into batches, runs every               alpha, encode,               each
            pad (or mark for tiling)       model                                  write atomically             outcome

- One inference thread: the model already uses every core, and one caller
  keeps its calls back to back. It never waits for a batch to fill when the
  model would otherwise idle: a batch is whatever same-shape images are
  waiting, up to --batch-size (and MAX_BATCH_PIXELS).
- Memory is bounded twice: the queues by count, and the decoded plus
  stylized pixels in flight by IN_FLIGHT_BYTES (a decode worker waits for
  room before handing an image on). Images over the tiling threshold run
  tile by tile (runtime/tiling.py).
- Every input is decoded once, however many models it goes through.
- A failure belongs to one image (and model): it is an outcome, the run goes on.
- Ctrl-C or stop: the workers stop taking work, an encode in progress
  finishes (its write is atomic), the rest is dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from artforge.batch.executor import BatchModel, Outcome, Timings, Work, failure_reason, write_output
from artforge.batch.options import BatchOptions
from artforge.errors import InvalidInputError
from artforge.files import file_sha256
from artforge.runtime import pipeline, tiling
from artforge.runtime.imageio import encode_image
from artforge.runtime.models import Stylizer
from artforge.runtime.pipeline import StylizeInput

#: padded pixels per model call at most on a GPU: 4 MP of style-network activations is ~1 GB
MAX_BATCH_PIXELS = 1 << 22
#: on a CPU batching only pays for small images (per-call overhead); measured on the zoo stylizers, four
#: 512x344 photos per call ran no faster than one at a time, 96x128 thumbnails ~10% faster
CPU_BATCH_PIXELS = 1 << 18
#: decoded and stylized image bytes the pipeline holds at once (one larger image is still let through alone)
IN_FLIGHT_BYTES = 1 << 30
_POLL_S = 0.1


def tile_size(options: BatchOptions) -> int:
    return options.tile or tiling.DEFAULT_TILE


def tile_overlap(options: BatchOptions) -> int:
    return tiling.default_overlap(tile_size(options)) if options.tile_overlap is None else options.tile_overlap


def worker_count(options: BatchOptions) -> int:
    return options.workers or max(1, min(4, (os.cpu_count() or 2) // 2))


def model_identity(model: Stylizer) -> dict[str, Any]:
    """What makes a local model's pixels: its name, version and artifact bytes."""
    return {"name": model.name, "version": model.version, "sha256": file_sha256(Path(model.backend.path))}


class LocalExecutor:
    """Runs the batch driver's work with these models, in this process (see the module docstring)."""

    server = None

    def __init__(self, models: Sequence[Stylizer]) -> None:
        self.stylizers = list(models)
        self.models = [BatchModel(m.name, model_identity(m), m.backend_name) for m in self.stylizers]
        self._timings = Timings()

    @staticmethod
    def check(options: BatchOptions) -> None:
        """Raise InvalidInputError for bad options (a static method: the CLI checks before loading models)."""
        pipeline.check_positive(options.max_side, "max_side")
        pipeline.check_positive(options.batch_size, "batch size")
        pipeline.check_positive(options.workers, "workers")
        pipeline.check_positive(options.max_pixels, "max_pixels")
        if options.quality is not None and not 1 <= options.quality <= 101:
            raise InvalidInputError(f"quality must be from 1 to 100 (101 = lossless webp), got {options.quality}")
        if options.tile_above is not None and not options.tile_above > 0:
            raise InvalidInputError(f"the tiling threshold must be a positive number of megapixels, "
                                    f"got {options.tile_above}")
        tiling.check_tiling(tile_size(options), tile_overlap(options))
        if options.tile_stats not in tiling.TILE_STATS:
            raise InvalidInputError(f"tile statistics must be one of {', '.join(tiling.TILE_STATS)}, "
                                    f"got {options.tile_stats!r}")

    def pixel_options(self, options: BatchOptions) -> dict[str, Any]:
        return {"format": options.fmt, "quality": options.quality, "max_side": options.max_side,
                "tile": options.tile, "tile_overlap": tile_overlap(options), "tile_above_mp": options.tile_above,
                "tile_stats": options.tile_stats}

    def tuning_options(self, options: BatchOptions) -> dict[str, Any]:
        return {"batch_size": options.batch_size, "workers": worker_count(options), "max_pixels": options.max_pixels}

    def timings(self) -> Timings:
        return self._timings

    def run(self, work: Sequence[Work], options: BatchOptions, stop: threading.Event,
            emit: Callable[[Outcome], None]) -> None:
        index = {model.name: i for i, model in enumerate(self.stylizers)}
        items = [_Item(w, {index[name]: target for name, target in w.targets.items()}) for w in work]
        run = _Pipeline(self.stylizers, options, items)
        ended = 0
        try:
            run.start()
            while ended < len(run.encoders):
                if stop.is_set():
                    run.stop.set()
                try:
                    got = run.results.get(timeout=_POLL_S)  # a timeout keeps Ctrl-C deliverable
                except queue.Empty:
                    continue
                if got is _END:
                    ended += 1
                else:
                    emit(got)
        except KeyboardInterrupt:
            run.stop.set()
            # Encodes in progress finish (atomic writes); emit them so that the re-run skips them.
            with contextlib.suppress(KeyboardInterrupt):
                while ended < len(run.encoders):
                    got = run.results.get()
                    if got is _END:
                        ended += 1
                    else:
                        emit(got)
            raise
        finally:
            run.stop.set()
            run.join(timeout=30)
            while True:  # outcomes posted after the last encoder ended (decode failures)
                try:
                    got = run.results.get_nowait()
                except queue.Empty:
                    break
                if got is not _END:
                    emit(got)
            names = [model.name for model in self.stylizers]
            self._timings = Timings(dict(zip(names, run.model_seconds, strict=True)), run.decode_seconds,
                                    run.encode_seconds)
        if run.fatal is not None:
            raise run.fatal


_END = object()


@dataclass(eq=False)
class _Item:
    """One input image on its way through the pipeline."""

    work: Work
    #: model index -> output path, for the outputs this run makes
    targets: dict[int, Path]
    #: the decoded input (None until decoded, and again once every output is made)
    input: StylizeInput | None = None
    #: (size multiple, min size) -> the padded RGB the models with that geometry take (untiled items)
    padded: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    tiled: bool = False
    cost: int = 0
    remaining: int = 0

    def key(self) -> tuple[Any, ...]:
        """Items with equal keys can share a batch."""
        if self.tiled:
            return ("tiled", id(self))
        return tuple(sorted((geometry, array.shape) for geometry, array in self.padded.items()))


class _Budget:
    """Bytes of images in flight; acquire waits for room (one item larger than all the room passes alone)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._cond = threading.Condition()

    def acquire(self, amount: int, stop: threading.Event) -> bool:
        with self._cond:
            while self._used and self._used + amount > self._limit:
                if stop.is_set():
                    return False
                self._cond.wait(_POLL_S)
            self._used += amount
            return True

    def release(self, amount: int) -> None:
        with self._cond:
            self._used -= amount
            self._cond.notify_all()


class _Stopped(Exception):
    """Raised inside the inference thread to abandon a tiled image when the run stops."""


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put into a bounded queue unless the run stops first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> object | None:
    """The next item, or None once the run stops."""
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return None


def _on_gpu(model: Stylizer) -> bool:
    """Whether the model runs on a GPU (CUDA / TensorRT providers and engines, OpenVINO GPU)."""
    return any(word in model.backend_name.lower() for word in ("cuda", "tensorrt", "gpu"))


class _Pipeline:
    """One run of the threads described in the module docstring."""

    def __init__(self, models: list[Stylizer], options: BatchOptions, jobs: list[_Item]) -> None:
        self.models = models
        self.options = options
        assert options.fmt is not None, "the driver resolves the output format"
        self.fmt = options.fmt
        self.tile_size, self.overlap = tile_size(options), tile_overlap(options)
        self.jobs: Iterator[_Item] = iter(jobs)
        self.jobs_lock = threading.Lock()
        self.stop = threading.Event()
        workers = worker_count(options)
        self.decoded: queue.Queue = queue.Queue(maxsize=2 * options.batch_size)
        self.encode: queue.Queue = queue.Queue(maxsize=2 * workers)
        self.results: queue.Queue = queue.Queue()
        self.budget = _Budget(IN_FLIGHT_BYTES)
        self.geometries = sorted({(m.size_multiple, m.min_size) for m in models})
        self.batch_pixels = MAX_BATCH_PIXELS if all(map(_on_gpu, models)) else CPU_BATCH_PIXELS
        self.model_seconds = [0.0] * len(models)
        self.decode_seconds = 0.0
        self.encode_seconds = 0.0
        self.fatal: BaseException | None = None
        self._lock = threading.Lock()
        self._decoders_left = workers
        self.decoders = [threading.Thread(target=self._guard, args=(self._decode_loop, self._decoder_done),
                                          name=f"stylize-decode-{i}", daemon=True) for i in range(workers)]
        self.inference = threading.Thread(target=self._guard, args=(self._infer_loop, self._inference_done),
                                          name="stylize-infer", daemon=True)
        self.encoders = [threading.Thread(target=self._guard, args=(self._encode_loop, self._encoder_done),
                                          name=f"stylize-encode-{i}", daemon=True) for i in range(workers)]

    # -- plumbing
    def start(self) -> None:
        for thread in (*self.decoders, self.inference, *self.encoders):
            thread.start()

    def _guard(self, body: Callable[[], None], done: Callable[[], None]) -> None:
        """A worker's body; an unexpected exception (a bug) stops the run and is raised by the main thread."""
        try:
            body()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            with self._lock:
                self.fatal = self.fatal or exc
            self.stop.set()
        finally:
            done()

    def _decoder_done(self) -> None:
        with self._lock:
            self._decoders_left -= 1
            last = self._decoders_left == 0
        if last:
            _put(self.decoded, _END, self.stop)

    def _inference_done(self) -> None:
        for _ in self.encoders:
            _put(self.encode, _END, self.stop)

    def _encoder_done(self) -> None:
        self.results.put(_END)

    def _finish(self, item: _Item, model: int, error: str | None = None) -> None:
        self.results.put(Outcome(item.work, self.models[model].name, error))
        with self._lock:
            item.remaining -= 1
            last = item.remaining == 0
        if last and item.cost:
            item.input, item.padded = None, {}
            self.budget.release(item.cost)

    def _fail(self, item: _Item, models: list[int], exc: BaseException) -> None:
        for index in models:
            self._finish(item, index, failure_reason(exc))

    # -- decode
    def _decode_loop(self) -> None:
        while not self.stop.is_set():
            with self.jobs_lock:
                item = next(self.jobs, None)
            if item is None:
                return
            item.remaining = len(item.targets)
            started = time.perf_counter()
            try:
                self._decode(item)
            except Exception as exc:  # noqa: BLE001 - one corrupt file never stops the run
                self._fail(item, list(item.targets), exc)
                continue
            finally:
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.decode_seconds += elapsed
            if not self.budget.acquire(item.cost, self.stop):
                return
            if not _put(self.decoded, item, self.stop):
                return

    def _decode(self, item: _Item) -> None:
        options = self.options
        prepared = pipeline.stylize_input(item.work.source, options.max_side, options.max_pixels)
        item.tiled = tiling.needs_tiling(prepared.height, prepared.width, options.tile, options.tile_above)
        if not item.tiled:
            item.padded = {(m, s): prepared.padded(m, s) for m, s in self.geometries}
            # Padding extends bottom and right, so a padded copy begins with the image: keep a view of it
            # rather than the decoded pixels a second time.
            first = next(iter(item.padded.values()))
            prepared = dataclasses.replace(prepared, rgb=first[:prepared.height, :prepared.width])
        item.input = prepared
        # The decoded image plus one stylized copy per model, RGB(A).
        alpha = 0 if prepared.alpha is None else prepared.alpha.nbytes
        item.cost = prepared.rgb.nbytes * (1 + len(item.targets)) + alpha * 2

    # -- inference
    def _limit(self, item: _Item) -> int:
        if item.tiled:
            return 1
        pixels = max(a.shape[0] * a.shape[1] for a in item.padded.values())
        return max(1, min(self.options.batch_size, self.batch_pixels // pixels))

    def _tiles_per_call(self) -> int:
        """Tiles are batched under the same pixel cap as images: tiling is there to bound memory."""
        return max(1, min(self.options.batch_size, self.batch_pixels // self.tile_size ** 2))

    def _infer_loop(self) -> None:
        pool: dict[tuple[Any, ...], list[_Item]] = {}
        pooled, ended = 0, False
        pool_limit = 2 * self.options.batch_size

        def add(item: _Item) -> None:
            nonlocal pooled
            pool.setdefault(item.key(), []).append(item)
            pooled += 1

        def full() -> list[_Item] | None:
            return next((items for items in pool.values() if len(items) >= self._limit(items[0])), None)

        while not self.stop.is_set():
            while not ended and pooled < pool_limit and full() is None:
                try:
                    got = self.decoded.get_nowait()
                except queue.Empty:
                    break
                if got is _END:
                    ended = True
                else:
                    add(got)
            group = full()
            if group is None and pool:
                # Nothing full: run the oldest group now rather than let the model idle.
                group = next(iter(pool.values()))
            if group is not None:
                key = group[0].key()
                batch, rest = group[:self._limit(group[0])], group[self._limit(group[0]):]
                if rest:
                    pool[key] = rest
                else:
                    del pool[key]
                pooled -= len(batch)
                self._run(batch)
                continue
            if ended:
                return
            got = _get(self.decoded, self.stop)
            if got is None:
                return
            if got is _END:
                ended = True
            else:
                add(got)  # type: ignore[arg-type]

    def _call(self, index: int, batch: np.ndarray) -> np.ndarray:
        if self.stop.is_set():
            raise _Stopped
        started = time.perf_counter()
        try:
            return self.models[index].run_padded(batch)
        finally:
            self.model_seconds[index] += time.perf_counter() - started

    def _call_graph(self, index: int, run: Callable[[tiling.Feeds], tiling.Feeds],
                    feeds: tiling.Feeds) -> tiling.Feeds:
        """A tile-graph call (tiling with shared statistics), stoppable and timed like _call."""
        if self.stop.is_set():
            raise _Stopped
        started = time.perf_counter()
        try:
            return run(feeds)
        finally:
            self.model_seconds[index] += time.perf_counter() - started

    def _shared_norm(self, index: int) -> tiling.SharedNorm | None:
        norm = self.models[index].shared_norm()
        if norm is None:
            return None
        return dataclasses.replace(norm, run=functools.partial(self._call_graph, index, norm.run))

    def _run(self, items: list[_Item]) -> None:
        for index, model in enumerate(self.models):
            rows = [item for item in items if index in item.targets]
            if not rows:
                continue
            try:
                if rows[0].tiled:
                    item = rows[0]
                    assert item.input is not None
                    styled = [tiling.stylize_tiled(item.input.rgb, functools.partial(self._call, index),
                                                   tile=self.tile_size, overlap=self.overlap,
                                                   multiple=model.size_multiple, min_size=model.min_size,
                                                   batch_size=self._tiles_per_call(),
                                                   norm=self._shared_norm(index),
                                                   tile_stats=self.options.tile_stats)]
                else:
                    geometry = (model.size_multiple, model.min_size)
                    out = self._call(index, pipeline.stack([item.padded[geometry] for item in rows]))
                    styled = list(out)
            except _Stopped:
                return
            except Exception as exc:  # noqa: BLE001 - the batch's failure; retried one by one below
                if len(rows) > 1:
                    for item in rows:  # one bad image must not fail its batch-mates
                        self._run_one(item, index)
                    continue
                self._finish(rows[0], index, failure_reason(exc))
                continue
            for item, result in zip(rows, styled, strict=True):
                self._hand_on(item, index, result)

    def _run_one(self, item: _Item, index: int) -> None:
        geometry = (self.models[index].size_multiple, self.models[index].min_size)
        try:
            out = self._call(index, pipeline.stack([item.padded[geometry]]))
        except _Stopped:
            return
        except Exception as exc:  # noqa: BLE001 - this image's own failure
            self._finish(item, index, failure_reason(exc))
            return
        self._hand_on(item, index, out[0])

    def _hand_on(self, item: _Item, index: int, styled: np.ndarray) -> None:
        _put(self.encode, (item, index, styled), self.stop)

    # -- encode
    def _encode_loop(self) -> None:
        while True:
            got = _get(self.encode, self.stop)
            if got is None or got is _END:
                return
            item, index, styled = cast(tuple[_Item, int, np.ndarray], got)
            target = item.targets[index]
            started = time.perf_counter()
            try:
                assert item.input is not None  # released only after its last output
                image = pipeline.stylize_output(styled, item.input)  # crop, alpha back: off the inference thread
                write_output(target, encode_image(image, self.fmt, self.options.quality))
            except Exception as exc:  # noqa: BLE001 - e.g. a full disk: this output's failure
                self._finish(item, index, failure_reason(exc))
            else:
                self._finish(item, index)
            finally:
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.encode_seconds += elapsed

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in (*self.encoders, self.inference, *self.decoders):
            thread.join(max(0.0, deadline - time.monotonic()))
