"""Which models are loaded, their state, and atomic load / unload / reload.

One entry per model name. A (re)load builds the new model and its batcher
off to the side and then swaps one reference, so requests see either the
old model or the new one, never a half-loaded one. The replaced model is
*retired*: requests that already hold it finish on it, and its batcher
stops once the last of them lets go. A model that fails to load keeps its
reason (shown by ModelReady, RepositoryIndex and ListModels) while the
others serve; a failed *re*load keeps the old model serving.

Only the highest version of each model is loaded (Triton's default
`latest { num_versions: 1 }` policy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TypeVar

from artforge.errors import ArtforgeError, InvalidInputError, ModelLoadError, NotFoundError, listed, quoted
from artforge.proto.inference import model_config_pb2
from artforge.runtime.models import Model
from artforge.runtime.repository import Repository
from artforge.serving.batcher import Batcher, Feeds
from artforge.serving.memory import MemoryBudget, default_max_memory
from artforge.serving.metrics import Metrics
from artforge.serving.options import ServerOptions
from artforge.serving.settings import ModelSettings, read_config, resolve_settings
from artforge.serving.statistics import ModelStats
from artforge.serving.status import ModelNotReadyError, for_client

T = TypeVar("T")
log = logging.getLogger("artforge.serving")

READY, UNAVAILABLE, LOADING = "READY", "UNAVAILABLE", "LOADING"


class ServingModel:
    """One loaded model version with its batcher and statistics."""

    def __init__(self, model: Model, settings: ModelSettings, batcher: Batcher, stats: ModelStats) -> None:
        self.model = model
        self.settings = settings
        self.batcher = batcher
        self.stats = stats
        self.users = 0
        self.retired = False
        self.stopping = False

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> int:
        return self.model.version or 1

    @property
    def kind(self) -> str:
        return self.model.kind

    async def infer(self, feeds: Feeds, deadline: float | None) -> Feeds:
        return await self.batcher.infer(feeds, deadline)


@dataclass
class ModelEntry:
    name: str
    #: READY, UNAVAILABLE or LOADING; "" = found in the repository but never loaded
    state: str = ""
    reason: str = ""
    served: ServingModel | None = None
    #: the kind of the last model loaded under this name, kept after an unload
    kind: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


ChangeHook = Callable[[str, bool | None], Awaitable[None]]


class ModelManager:
    """The loaded models of one repository. Use it on the event loop; blocking work goes to `executor`."""

    def __init__(self, repo: Repository, options: ServerOptions, metrics: Metrics, executor: Executor,
                 on_change: ChangeHook | None = None) -> None:
        self.repo = repo
        self.options = options
        self._metrics = metrics
        self._executor = executor
        self._on_change = on_change
        self._entries: dict[str, ModelEntry] = {}
        #: the bytes requests in progress may hold, shared by every model and front end
        self.memory = MemoryBudget(options.max_memory or default_max_memory())
        #: every model with a running batcher, current or retired
        self._alive: set[ServingModel] = set()
        self._stop_tasks: set[asyncio.Task] = set()

    # -- lookups --------------------------------------------------------------------

    def entries(self) -> list[ModelEntry]:
        return [self._entries[name] for name in sorted(self._entries)]

    @property
    def repository_name(self) -> str:
        """The repository's folder name: what KServe calls the repository, and how messages to clients name it."""
        return self.repo.path.resolve().name

    def label(self, name: str) -> str:
        """`name` when it is one of the repository's models, else "" (for metric labels)."""
        return name if name in self._entries else ""

    def any_ready(self) -> bool:
        return not self._entries or any(e.state == READY for e in self._entries.values())

    def resolve(self, name: str, version: str = "") -> ServingModel:
        """The loaded model for a request: NotFoundError, InvalidInputError or ModelNotReadyError otherwise."""
        entry = self._entries.get(name)
        if entry is None:
            raise NotFoundError(f"no model named {quoted(name)} on this server; available: "
                                f"{listed(sorted(self._entries))}")
        if entry.served is None:
            reason = entry.reason or ("it is loading" if entry.state == LOADING else "it has not been loaded")
            raise ModelNotReadyError(f"model {name} is not ready: {reason}")
        served = entry.served
        if version:
            if not (version.isascii() and version.isdigit()):
                raise InvalidInputError(f"a model version must be a whole number, got {quoted(version)}")
            if int(version) != served.version:
                raise NotFoundError(f"model {name} has no version {version} loaded; this server serves "
                                    f"version {served.version}, the latest in the repository")
        return served

    @contextlib.contextmanager
    def use(self, name: str, version: str = "") -> Iterator[ServingModel]:
        """Hold a model for the length of one request, so that a reload waits for it before stopping it."""
        served = self.resolve(name, version)
        served.users += 1
        try:
            yield served
        finally:
            served.users -= 1
            if served.retired and not served.users:
                self._stop(served)

    # -- loading --------------------------------------------------------------------

    def _load_blocking(self, name: str, override: model_config_pb2.ModelConfig | None,
                       ) -> tuple[Model, model_config_pb2.ModelConfig | None]:
        config = override if override is not None else read_config(self.repo.path / name)
        model = self.repo.load(name, backend=self.options.backend, threads=self.options.threads)
        model.max_pixels = self.options.max_image_pixels
        return model, config

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _notify(self, name: str, ready: bool | None) -> None:
        if ready is None:
            self._metrics.forget(name)
        else:
            self._metrics.set_ready(name, ready)
        if self._on_change is not None:
            await self._on_change(name, ready)

    async def load(self, name: str, config: model_config_pb2.ModelConfig | None = None) -> ServingModel:
        """Load (or reload) the latest version of `name` and swap it in; raises why when it cannot.

        `config` replaces the model's config.pbtxt for this load (RepositoryModelLoad's "config").
        """
        names = await self._run(self.repo.names)
        if name not in names:
            raise NotFoundError(f"no model named {quoted(name)} in the repository; available: {listed(names)}")
        entry = self._entries.setdefault(name, ModelEntry(name))
        async with entry.lock:
            if entry.served is None:
                entry.state, entry.reason = LOADING, ""
            try:
                model, config = await self._run(self._load_blocking, name, config)
                settings = resolve_settings(model, config, self.options)
            except Exception as error:
                if not isinstance(error, ArtforgeError):
                    log.error("model %s: unexpected load failure", name, exc_info=error)
                    error = ModelLoadError(f"model {name} cannot be loaded ({type(error).__name__}: {error})")
                if entry.served is None:
                    entry.state, entry.reason = UNAVAILABLE, for_client(str(error), self.repo.path)
                    await self._notify(name, False)
                raise error from None
            stats = ModelStats(name, model.version or 1)
            served = ServingModel(model, settings, Batcher(name, model.run, settings, stats, self._metrics),
                                  stats)
            self._alive.add(served)
            old, entry.served = entry.served, served
            entry.state, entry.reason, entry.kind = READY, "", model.kind
            if old is not None:
                self._retire(old)
            await self._notify(name, True)
        log.info("loaded %s v%d (%s on %s; max batch %d, %d instance(s), queue %d, delay %.1f ms)",
                 name, served.version, model.description, model.backend_name, settings.max_batch_size,
                 settings.instances, settings.queue_size, settings.max_queue_delay_s * 1000)
        return served

    async def load_all(self) -> None:
        """Load every model in the repository; failures are logged and kept as the model's reason."""
        for name in await self._run(self.repo.names):
            try:
                await self.load(name)
            except ArtforgeError as error:
                log.warning("model %s is not ready: %s", name, error)

    async def unload(self, name: str) -> None:
        entry = self._entries.get(name)
        if entry is None:
            names = await self._run(self.repo.names)
            if name in names:
                return  # in the repository but never loaded: nothing to do
            raise NotFoundError(f"no model named {quoted(name)} in the repository; available: {listed(names)}")
        async with entry.lock:
            old, entry.served = entry.served, None
            entry.state, entry.reason = UNAVAILABLE, "unloaded by a RepositoryModelUnload request"
            if old is not None:
                self._retire(old)
            await self._notify(name, False)
        log.info("unloaded %s", name)

    async def reload_all(self) -> None:
        """Reload every model (SIGHUP): new folders are loaded, deleted ones dropped."""
        names = set(await self._run(self.repo.names))
        for name in sorted(names):
            try:
                await self.load(name)
            except ArtforgeError as error:
                log.warning("reload of %s failed: %s", name, error)
        for name in sorted(set(self._entries) - names):
            await self.unload(name)
            del self._entries[name]
            await self._notify(name, None)

    # -- retiring -------------------------------------------------------------------

    def _retire(self, served: ServingModel) -> None:
        served.retired = True
        if not served.users:
            self._stop(served)

    def _stop(self, served: ServingModel) -> None:
        if served.stopping:
            return
        served.stopping = True
        self._alive.discard(served)
        task = asyncio.get_running_loop().create_task(served.batcher.stop())
        self._stop_tasks.add(task)
        task.add_done_callback(self._stop_tasks.discard)

    def hurry(self) -> None:
        """Shutdown has begun: every batcher sends what it holds without waiting for fuller batches."""
        for served in self._alive:
            served.batcher.hurry()

    async def close(self) -> None:
        """Stop every model (the gRPC server has already finished or cancelled its requests)."""
        for entry in self._entries.values():
            if entry.served is not None:
                entry.served = None
                entry.state, entry.reason = UNAVAILABLE, "the server is shutting down"
        for served in list(self._alive):
            served.retired = True
            self._stop(served)
        while self._stop_tasks:
            await asyncio.gather(*list(self._stop_tasks), return_exceptions=True)
