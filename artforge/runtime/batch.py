"""Batch stylization of a file or a folder tree (mirrored into the output): the engine of `artforge stylize`.

A pipeline of threads joined by bounded queues, so that decoding, inference
and encoding overlap (OpenCV and ONNX Runtime release the GIL):

    jobs ─► decode workers ─► [decoded] ─► inference (1 thread) ─► [encode] ─► encode workers ─► [results] ─► main
            read, orient,                  pools same-size images                 encode, write                progress,
            split alpha, max-side,         into batches, runs every               atomically, stat             manifest,
            pad (or mark for tiling)       model, crops, re-attaches alpha                                     report

- One inference thread: the model already uses every core, and one caller
  keeps its calls back to back. It never waits for a batch to fill when the
  model would otherwise idle: a batch is whatever same-shape images are
  waiting, up to --batch-size (and MAX_BATCH_PIXELS).
- Memory is bounded twice: the queues by count, and the decoded plus
  stylized pixels in flight by IN_FLIGHT_BYTES (a decode worker waits for
  room before handing an image on). Images over the tiling threshold run
  tile by tile (runtime/tiling.py).
- Every input is decoded once, however many models it goes through.
- A failure belongs to one image (and model): it is reported, the run goes on.
- Ctrl-C: the workers stop taking work, an encode in progress finishes (its
  write is atomic), the rest is dropped; the manifest and the report are
  saved and BatchInterrupted (a KeyboardInterrupt) carries the report out.
- Resume: see artforge/resume.py. Stale temporaries of a killed run are
  deleted at the start; a lock keeps a second run out of the same folder.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from artforge.batch_report import BatchReport, ModelStats
from artforge.errors import ArtforgeError, InvalidInputError
from artforge.files import FolderLock, StylizePlan, clean_stale_temporaries, plan_stylize, write_bytes_atomic
from artforge.resume import Manifest, stamp
from artforge.runtime import pipeline, tiling
from artforge.runtime.backends.auto import artifact_sha256
from artforge.runtime.imageio import encode_image, read_image
from artforge.runtime.models import Stylizer

#: images per model call when they share a padded size
DEFAULT_BATCH_SIZE = 4
#: images with more megapixels than this (after --max-side) are tiled
DEFAULT_TILE_ABOVE_MP = 4.0
#: decoding limit of the batch tool: above any camera, below what would exhaust memory; the
#: header is checked before a pixel is decoded (imageio), so absurd headers cost nothing
BATCH_MAX_PIXELS = 100_000_000
#: padded pixels per model call at most on a GPU: 4 MP of style-network activations is ~1 GB
MAX_BATCH_PIXELS = 1 << 22
#: on a CPU batching only pays for small images (per-call overhead); measured on the zoo stylizers, four
#: 512x344 photos per call ran no faster than one at a time, 96x128 thumbnails ~10% faster
CPU_BATCH_PIXELS = 1 << 18
#: decoded and stylized image bytes the pipeline holds at once (one larger image is still let through alone)
IN_FLIGHT_BYTES = 1 << 30
_POLL_S = 0.1


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during stylize_paths, after a clean stop; `report` says what was done."""

    def __init__(self, report: BatchReport) -> None:
        super().__init__("interrupted")
        self.report = report


@dataclass(frozen=True)
class BatchOptions:
    """How to stylize; pixel_options() are the ones that change output pixels (recorded for resume)."""

    #: output format jpg, png or webp (None: the output file's extension, else jpg)
    fmt: str | None = None
    #: JPEG / WebP quality 1-100 (None: the encoder's default, 95 / 90)
    quality: int | None = None
    #: downscale images whose longer side exceeds this
    max_side: int | None = None
    #: tile every image larger than this (pixels, rounded down to the model's size multiple)
    tile: int | None = None
    #: overlap of neighbouring tiles (None: an eighth of the tile)
    tile_overlap: int | None = None
    #: tile images over this many megapixels, with tile or tiling.DEFAULT_TILE (None: never automatically)
    tile_above: float | None = DEFAULT_TILE_ABOVE_MP
    #: refuse images with more pixels than this
    max_pixels: int = BATCH_MAX_PIXELS
    batch_size: int = DEFAULT_BATCH_SIZE
    #: decode workers and encode workers, each (None: half the cores, 1 to 4)
    workers: int | None = None
    #: redo every output, finished or not
    force: bool = False

    @property
    def tile_size(self) -> int:
        return self.tile or tiling.DEFAULT_TILE

    @property
    def overlap(self) -> int:
        return tiling.default_overlap(self.tile_size) if self.tile_overlap is None else self.tile_overlap

    def check(self) -> None:
        pipeline.check_positive(self.max_side, "max_side")
        pipeline.check_positive(self.batch_size, "batch size")
        pipeline.check_positive(self.workers, "workers")
        pipeline.check_positive(self.max_pixels, "max_pixels")
        if self.quality is not None and not 1 <= self.quality <= 101:
            raise InvalidInputError(f"quality must be from 1 to 100 (101 = lossless webp), got {self.quality}")
        if self.tile_above is not None and not self.tile_above > 0:
            raise InvalidInputError(f"the tiling threshold must be a positive number of megapixels, "
                                    f"got {self.tile_above}")
        tiling.check_tiling(self.tile_size, self.overlap)

    def pixel_options(self, suffix: str) -> dict[str, Any]:
        """What a resumed run must share with the earlier one for its outputs to count as done."""
        return {"format": suffix.lstrip("."), "quality": self.quality, "max_side": self.max_side,
                "tile": self.tile, "tile_overlap": self.overlap, "tile_above_mp": self.tile_above}

    @property
    def worker_count(self) -> int:
        return self.workers or max(1, min(4, (os.cpu_count() or 2) // 2))


def model_identity(model: Stylizer) -> dict[str, Any]:
    """What makes a local model's pixels: its name, version and artifact bytes."""
    return {"name": model.name, "version": model.version, "sha256": artifact_sha256(Path(model.backend.path))}


# ------------------------------------------------------------------ pipeline pieces

_END = object()


@dataclass(eq=False)
class _Item:
    """One input image on its way through the pipeline."""

    source: Path
    #: model index -> output path, for the outputs this run makes
    targets: dict[int, Path]
    input_stamp: list[int] | None = None
    height: int = 0
    width: int = 0
    alpha: np.ndarray | None = None
    #: unpadded RGB for a tiled item, else None
    rgb: np.ndarray | None = None
    #: (size multiple, min size) -> the padded RGB the models with that geometry take
    padded: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    tiled: bool = False
    cost: int = 0
    remaining: int = 0

    def key(self) -> tuple[Any, ...]:
        """Items with equal keys can share a batch."""
        if self.tiled:
            return ("tiled", id(self))
        return tuple(sorted((geometry, array.shape) for geometry, array in self.padded.items()))


@dataclass
class _Outcome:
    item: _Item
    model: int
    error: str | None = None
    output_stamp: list[int] | None = None


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


def _reason(exc: BaseException) -> str:
    """One sentence for a failure: artforge errors say it themselves; anything else gets its type named."""
    if isinstance(exc, ArtforgeError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}{f': {exc.filename}' if exc.filename else ''}"
    return f"{type(exc).__name__}: {exc}"


class _Pipeline:
    """One run of the threads described in the module docstring."""

    def __init__(self, models: list[Stylizer], options: BatchOptions, jobs: list[_Item], fmt: str) -> None:
        self.models = models
        self.options = options
        self.fmt = fmt
        self.jobs: Iterator[_Item] = iter(jobs)
        self.jobs_lock = threading.Lock()
        self.stop = threading.Event()
        workers = options.worker_count
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

    def _finish(self, item: _Item, model: int, error: str | None = None, output_stamp: list[int] | None = None) -> None:
        self.results.put(_Outcome(item, model, error, output_stamp))
        with self._lock:
            item.remaining -= 1
            last = item.remaining == 0
        if last and item.cost:
            item.rgb, item.alpha, item.padded = None, None, {}
            self.budget.release(item.cost)

    def _fail(self, item: _Item, models: list[int], exc: BaseException) -> None:
        for index in models:
            self._finish(item, index, _reason(exc))

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
        item.input_stamp = stamp(item.source)
        image = read_image(item.source, max_pixels=options.max_pixels, long_side=options.max_side)
        rgb, alpha = pipeline.split_alpha(image)
        if options.max_side:
            rgb = pipeline.fit_max_side(rgb, options.max_side)
            alpha = None if alpha is None else pipeline.fit_max_side(alpha, options.max_side)
        item.height, item.width = rgb.shape[:2]
        item.alpha = alpha
        item.tiled = tiling.needs_tiling(item.height, item.width, options.tile, options.tile_above)
        if item.tiled:
            item.rgb = rgb
        else:
            item.padded = {(m, s): pipeline.pad_to_multiple(rgb, m, s) for m, s in self.geometries}
        # The decoded image plus one stylized copy per model, RGB(A).
        item.cost = rgb.nbytes * (1 + len(item.targets)) + (0 if alpha is None else alpha.nbytes * 2)

    # -- inference
    def _limit(self, item: _Item) -> int:
        if item.tiled:
            return 1
        pixels = max(a.shape[0] * a.shape[1] for a in item.padded.values())
        return max(1, min(self.options.batch_size, self.batch_pixels // pixels))

    def _tiles_per_call(self) -> int:
        """Tiles are batched under the same pixel cap as images: tiling is there to bound memory."""
        return max(1, min(self.options.batch_size, self.batch_pixels // self.options.tile_size ** 2))

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
                    add(got)  # type: ignore[arg-type]
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

    def _run(self, items: list[_Item]) -> None:
        for index, model in enumerate(self.models):
            rows = [item for item in items if index in item.targets]
            if not rows:
                continue
            try:
                if rows[0].tiled:
                    item = rows[0]
                    styled = [tiling.stylize_tiled(item.rgb, lambda b, i=index: self._call(i, b),  # type: ignore[misc]
                                                   tile=self.options.tile_size, overlap=self.options.overlap,
                                                   multiple=model.size_multiple, min_size=model.min_size,
                                                   batch_size=self._tiles_per_call())]
                else:
                    geometry = (model.size_multiple, model.min_size)
                    out = self._call(index, pipeline.stack([item.padded[geometry] for item in rows]))
                    styled = [out[i, :item.height, :item.width] for i, item in enumerate(rows)]
            except _Stopped:
                return
            except Exception as exc:  # noqa: BLE001 - the batch's failure; retried one by one below
                if len(rows) > 1:
                    for item in rows:  # one bad image must not fail its batch-mates
                        self._run_one(item, index)
                    continue
                self._finish(rows[0], index, _reason(exc))
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
            self._finish(item, index, _reason(exc))
            return
        self._hand_on(item, index, out[0, :item.height, :item.width])

    def _hand_on(self, item: _Item, index: int, styled: np.ndarray) -> None:
        styled = np.ascontiguousarray(styled)
        if item.alpha is not None:
            styled = np.dstack((styled, item.alpha))
        _put(self.encode, (item, index, styled), self.stop)

    # -- encode
    def _encode_loop(self) -> None:
        while True:
            got = _get(self.encode, self.stop)
            if got is None or got is _END:
                return
            item, index, styled = got  # type: ignore[misc]
            target = item.targets[index]
            started = time.perf_counter()
            try:
                data = encode_image(styled, self.fmt, self.options.quality)
                write_bytes_atomic(target, data)
            except Exception as exc:  # noqa: BLE001 - e.g. a full disk: this output's failure
                self._finish(item, index, _reason(exc))
            else:
                self._finish(item, index, None, stamp(target))
            finally:
                elapsed = time.perf_counter() - started
                with self._lock:
                    self.encode_seconds += elapsed

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in (*self.encoders, self.inference, *self.decoders):
            thread.join(max(0.0, deadline - time.monotonic()))


# ------------------------------------------------------------------ the run

def _prepare(plan: StylizePlan, models: list[Stylizer], options: BatchOptions, pixel_options: dict[str, Any],
             report: BatchReport, manifest: Manifest | None) -> list[_Item]:
    """The items this run must make; counts the outputs that are already done."""
    for model in models:
        identity = model_identity(model)
        report.models[model.name] = ModelStats(identity=identity, backend=model.backend_name)
        if manifest is not None:
            report.models[model.name].redone = manifest.begin(model.name, identity, pixel_options, options.force)
    items = []
    for source, targets in plan.jobs:
        todo = {}
        for index, model in enumerate(models):
            target = targets[model.name]
            if manifest is not None and not options.force and manifest.is_current(model.name, target, source):
                report.models[model.name].already_done += 1
                report.outputs.append(target)
            else:
                todo[index] = target
        if todo:
            items.append(_Item(source, todo))
    return items


def stylize_paths(models: list[Stylizer], source: Path, output: Path, options: BatchOptions | None = None, *,
                  progress: bool = True, per_model: bool = False, report_path: Path | None = None,
                  log: Callable[[str], None] | None = None) -> BatchReport:
    """Stylize `source` (a file or a folder tree) with each model into `output`; see the module docstring.

    Folder outputs are resumable (OUT/stylize-manifest.json). report_path:
    where to write the JSON report (None: nowhere). log: where the run's
    notes go (redone outputs, cleaned temporaries); default stderr via tqdm.
    Raises BatchInterrupted (with the report) on Ctrl-C, after a clean stop.
    """
    options = options or BatchOptions()
    options.check()
    note = log or (lambda text: tqdm.write(text, file=sys.stderr))
    started = time.perf_counter()
    plan = plan_stylize(Path(source), Path(output), options.fmt, [m.name for m in models], per_model)
    fmt_suffix = Path(next(iter(plan.jobs[0][1].values()))).suffix if plan.jobs else ".jpg"
    pixel_options = options.pixel_options(fmt_suffix)
    report = BatchReport(input=str(source), output=str(output), skipped=plan.skipped,
                         options={**pixel_options, "batch_size": options.batch_size,
                                  "workers": options.worker_count, "force": options.force,
                                  "max_pixels": options.max_pixels})
    lock = contextlib.nullcontext() if plan.single_file else FolderLock(plan.output)
    with lock:
        manifest = None
        if not plan.single_file:
            report.cleaned_temporaries = clean_stale_temporaries(plan.output)
            if report.cleaned_temporaries:
                note(f"deleted {report.cleaned_temporaries} temporary files left by an interrupted run")
            manifest = Manifest.load(plan.output)
        items = _prepare(plan, models, options, pixel_options, report, manifest)
        for stats in report.models.values():
            if stats.redone:
                note(stats.redone)
        if manifest is not None:
            manifest.save()  # the new identities first: nothing written below can pass for an older run's
        run = _Pipeline(models, options, items, fmt_suffix.lstrip("."))
        finished: set[Path] = set(report.outputs)
        todo = sum(len(item.targets) for item in items)
        bar = tqdm(total=todo, desc="stylize", unit="img", disable=not progress or not todo, dynamic_ncols=True)
        ended = 0
        try:
            run.start()
            while ended < len(run.encoders):
                try:
                    got = run.results.get(timeout=_POLL_S)  # a timeout keeps Ctrl-C deliverable
                except queue.Empty:
                    continue
                if got is _END:
                    ended += 1
                    continue
                _record(got, models, report, manifest, finished)  # type: ignore[arg-type]
                bar.update(1)
                if report.failed:
                    bar.set_postfix(failed=report.failed, refresh=False)
        except KeyboardInterrupt:
            report.interrupted = True
            run.stop.set()
            # Encodes in progress finish (atomic writes); record them so that the re-run skips them.
            with contextlib.suppress(KeyboardInterrupt):
                while ended < len(run.encoders):
                    got = run.results.get()
                    if got is _END:
                        ended += 1
                    else:
                        _record(got, models, report, manifest, finished)  # type: ignore[arg-type]
        finally:
            bar.close()
            run.stop.set()
            run.join(timeout=30)
            while True:  # outcomes posted after the last encoder ended (decode failures)
                try:
                    got = run.results.get_nowait()
                except queue.Empty:
                    break
                if got is not _END:
                    _record(got, models, report, manifest, finished)  # type: ignore[arg-type]
            for index, model in enumerate(models):
                report.models[model.name].model_seconds = run.model_seconds[index]
            report.decode_seconds, report.encode_seconds = run.decode_seconds, run.encode_seconds
            report.not_done = todo - report.done - report.failed
            report.outputs = [targets[m.name] for m in models for _, targets in plan.jobs
                              if targets[m.name] in finished]
            report.wall_seconds = time.perf_counter() - started
            if manifest is not None:
                manifest.save()
            if report_path is not None:
                report.write(report_path)
    if run.fatal is not None:
        raise run.fatal
    if report.interrupted:
        raise BatchInterrupted(report)
    return report


def _record(outcome: _Outcome, models: list[Stylizer], report: BatchReport, manifest: Manifest | None,
            finished: set[Path]) -> None:
    """Count one finished or failed output, and remember a finished one in the manifest."""
    item, name = outcome.item, models[outcome.model].name
    target = item.targets[outcome.model]
    if outcome.error is not None:
        report.fail(item.source, name, outcome.error, target)
        return
    report.models[name].done += 1
    finished.add(target)
    if manifest is not None:
        manifest.record(name, target, item.source, item.input_stamp, outcome.output_stamp)
        manifest.maybe_save()



def options_from_args(args: Any) -> BatchOptions:
    """BatchOptions from the `artforge stylize` arguments, checked."""
    options = BatchOptions(fmt=args.format, quality=args.quality, max_side=args.max_side, tile=args.tile,
                           tile_overlap=args.tile_overlap, tile_above=args.tile_above,
                           max_pixels=round(args.max_pixels * 1e6), batch_size=args.batch_size,
                           workers=args.workers, force=args.force)
    options.check()
    return options
