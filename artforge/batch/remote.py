"""The remote executor of the batch driver: an artforge server makes the pixels (`artforge stylize --server`).

Each model's images go over one StylizeStream (pipelined; the server batches
them); the server's encoded bytes are written as they come, with no decode and
re-encode here. Tiling is the local executor's: --tile is refused (the server
stylizes whole images within its own size limit).

Imports neither torch, OpenCV nor ONNX Runtime.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any

from artforge.batch.executor import BatchModel, Outcome, Timings, Work, failure_reason, write_output
from artforge.batch.options import BatchOptions
from artforge.errors import ArtforgeError, InvalidInputError, ModelLoadError, NotFoundError, ResourceExhaustedError
from artforge.serving.client import STYLIZER, ImageClient, ModelInfo, image_bytes

#: errors of a unary call that belong to its image; anything else (server gone, bad token) ends the run
_PER_IMAGE = (InvalidInputError, ResourceExhaustedError)


def _stylizers(client: ImageClient, names: str | None) -> dict[str, ModelInfo]:
    """The models to run, checked up front: in a stream an unknown model would fail every item one by one."""
    models = {m.name: m for m in client.list_models()}
    if not names:
        default = client.default_model(STYLIZER)
        return {default: models[default]}
    stylizers = ", ".join(name for name, m in models.items() if m.kind == STYLIZER) or "none"
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    for name in wanted:
        if name not in models:
            raise NotFoundError(f"no model named {name!r} on server {client.target}; stylizers there: {stylizers}")
        info = models[name]
        if info.ready and info.kind != STYLIZER:
            raise InvalidInputError(f"model {name} is a {info.kind}, not a stylizer; stylizers on server "
                                    f"{client.target}: {stylizers}")
        if not info.ready:
            raise ModelLoadError(f"model {name} on server {client.target} is not ready: {info.reason}")
    return {name: models[name] for name in wanted}


def _identity(info: ModelInfo) -> dict[str, Any]:
    """What the server says makes a model's pixels: its name and the version it serves (the latest).

    The server's address is left out on purpose: the same deployment may be
    reached under another name, and that must not redo a finished folder.
    """
    versions = sorted(info.versions, key=lambda v: (len(v), v))
    return {"name": info.name, "version": versions[-1] if versions else None, "via": "server"}


class RemoteExecutor:
    """Runs the batch driver's work on an artforge server through `client`.

    names: comma-separated stylizer names (None: the server's default
    stylizer); unknown, not-ready or non-stylizer models are refused here.
    """

    def __init__(self, client: ImageClient, names: str | None = None) -> None:
        self.client = client
        self.server = client.target
        self.models = [BatchModel(name, _identity(info), f"server {client.target} ({info.backend or '?'})")
                       for name, info in _stylizers(client, names).items()]

    def check(self, options: BatchOptions) -> None:
        if options.tile is not None:
            raise InvalidInputError("--tile is not available with --server (the server stylizes whole images "
                                    "within its own size limit); use --max-side, or stylize locally")

    def pixel_options(self, options: BatchOptions) -> dict[str, Any]:
        return {"format": options.fmt, "quality": options.quality, "max_side": options.max_side}

    def tuning_options(self, options: BatchOptions) -> dict[str, Any]:
        return {}

    def timings(self) -> Timings:
        return Timings()  # the server's time is not known here

    def run(self, work: Sequence[Work], options: BatchOptions, stop: threading.Event,
            emit: Callable[[Outcome], None]) -> None:
        for model in self.models:
            items = [w for w in work if model.name in w.targets]
            if stop.is_set():
                return
            if items:
                self._stream(model.name, items, options, stop, emit)

    def _stream(self, model: str, items: list[Work], options: BatchOptions, stop: threading.Event,
                emit: Callable[[Outcome], None]) -> None:
        """One model's outputs over one StylizeStream (or one unary call for one image)."""
        def one() -> Generator[tuple[int, bytes, BaseException | None]]:
            try:
                data = self.client.stylize(image_bytes(items[0].source), model, options.fmt, options.quality,
                                           options.max_side)
            except _PER_IMAGE as exc:
                yield 0, b"", exc
            else:
                yield 0, data, None

        results: Generator[tuple[int, bytes, BaseException | None]]
        if len(items) == 1:  # no stream to set up
            results = one()
        else:
            stream = self.client.stylize_many((w.source for w in items), model, options.fmt, options.quality,
                                              options.max_side)
            results = ((r.index, r.image, r.error) for r in stream)
        # Closing the generator cancels the stream at once (Ctrl-C, stop).
        with contextlib.closing(results):
            for index, data, error in results:
                item = items[index]
                if error is None:
                    try:
                        write_output(item.targets[model], data)
                    except ArtforgeError as exc:  # this output's failure (a full disk)
                        error = exc
                emit(Outcome(item, model, None if error is None else failure_reason(error)))
                if stop.is_set():
                    return
