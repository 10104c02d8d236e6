"""The Ray executor of the batch driver: the models run in Ray actors across a cluster (`--engine ray`).

    driver: work ─► rows (work index, source path, targets) ─► ray.data.from_items
            ─► map_batches(_StylizeActor, ActorPoolStrategy(size=actors), num_cpus=actor_cpus)
            ─► result rows (work index, model, error, timings) ─► emit, on the driver's thread

- Each actor loads the models once, with ONNX Runtime / OpenVINO threads set
  to the actor's CPUs (Ray sets OMP_NUM_THREADS=1 in its workers, which ONNX
  Runtime ignores, so the count is passed to the backend explicitly).
- Inside an actor a batch of rows goes through the local executor's pipeline
  (batch/local.py): the same read and decode of each input inside the actor
  (a bad file is one error row, never a failed task), the same batching,
  tiling, encoding and atomic write. Outputs are therefore identical to the
  local engine's, and a folder begun with one engine resumes with the other
  (same model identity, same pixel options).
- Inputs are read, and outputs written, by the actors at the paths the
  driver planned: every node must see IN, OUT and the model repository at
  the same paths (a shared filesystem). See docs/batch.md.
- stop / Ctrl-C: the driver stops reading result rows and closes the
  dataset, which kills its actors. Outputs they wrote but had not reported
  are claimed in the manifest, so a resumed run redoes them (writes are
  atomic: a killed write leaves a temporary, deleted by the next run).

`ray` is an optional extra (`pip install 'artforge[ray]'`), imported only here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from artforge.batch.executor import Outcome, Timings, Work
from artforge.batch.local import LocalExecutor
from artforge.batch.options import BatchOptions
from artforge.errors import ArtforgeError
from artforge.runtime.repository import Repository

#: CPUs of one actor (its inference threads): a model call's threads scale sublinearly, so on big nodes several
#: actors beat one (a bound, not measured on the 2-core machine this was written on)
MAX_ACTOR_CPUS = 4

_INSTALL = "--engine ray needs Ray, an optional extra: pip install 'artforge[ray]' (or pip install 'ray[data]')"


def _ray() -> Any:
    """The ray module, or one sentence saying how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ArtforgeError(_INSTALL) from None
    return ray


class _StylizeActor:
    """One Ray actor: the models loaded once, a batch of rows through the local executor's pipeline."""

    def __init__(self, repository: str, models: list[tuple[str, int, str]], threads: int,
                 options: BatchOptions) -> None:
        repo = Repository(repository)
        self.executor = LocalExecutor([repo.stylizer(name, version, backend, threads)
                                       for name, version, backend in models])
        # Decode and encode threads from the actor's CPUs, not the node's (what local.worker_count would use).
        self.options = dataclasses.replace(options, workers=options.workers or max(1, min(4, threads // 2)))

    def __call__(self, rows: dict[str, Any]) -> dict[str, list[Any]]:
        work = [Work(Path(source), {model: Path(target) for model, target in json.loads(targets).items()})
                for source, targets in zip(rows["source"], rows["targets"], strict=True)]
        index = {id(item): int(i) for item, i in zip(work, rows["index"], strict=True)}
        out: dict[str, list[Any]] = {"index": [], "model": [], "error": [], "timings": []}

        def emit(outcome: Outcome) -> None:
            out["index"].append(index[id(outcome.work)])
            out["model"].append(outcome.model)
            out["error"].append(outcome.error or "")
            out["timings"].append("")

        self.executor.run(work, self.options, threading.Event(), emit)
        if out["index"]:  # this call's time rides on its first row
            spent = self.executor.timings()
            out["timings"][0] = json.dumps({"model_seconds": spent.model_seconds, "decode": spent.decode_seconds,
                                            "encode": spent.encode_seconds})
        return out


class RayExecutor:
    """Runs the batch driver's work in Ray actors (see the module docstring).

    repository: the model repository (at the same path on every node);
    names: stylizer names; backend: as for a local run. address: a Ray
    cluster's address (None: start a local cluster with this machine's
    cores, or use the one this process is already connected to). Close it
    (or use it as a context manager) to shut down a local cluster it started.
    """

    server = None

    def __init__(self, repository: Path, names: Sequence[str], backend: str = "auto",
                 address: str | None = None) -> None:
        self._ray = _ray()
        repo = Repository(repository)
        # Loaded here once, one thread each: the names are checked before the cluster does anything, and the
        # identities are the local executor's, so a folder resumes across engines.
        self._local = LocalExecutor([repo.stylizer(name, backend=backend, threads=1) for name in names])
        self.models = [dataclasses.replace(m, backend=f"{m.backend} in Ray actors") for m in self._local.models]
        self._repository = str(Path(repository).resolve())
        # Every actor loads the version the driver found and, for "auto", the backend the driver's trial chose:
        # nodes that measured differently would make different pixels.
        self._pinned = [(m.name, m.version, m.backend_name if backend.startswith(("auto", "exact")) else backend)
                        for m in self._local.stylizers]
        self._started = False
        if not self._ray.is_initialized():
            quiet = {"logging_level": logging.WARNING, "log_to_driver": False, "include_dashboard": False}
            try:
                self._ray.init(address=address, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
                raise ArtforgeError(f"cannot start or reach {where}: {exc}") from None
            self._started = True
        context = self._ray.data.DataContext.get_current()
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        cpus = int(self._ray.cluster_resources().get("CPU", 1))
        self.actor_cpus = max(1, min(MAX_ACTOR_CPUS, cpus))
        self.actors = max(1, cpus // self.actor_cpus)
        self._timings = Timings()

    def close(self) -> None:
        """Shut down the local cluster this executor started (a cluster it joined keeps running)."""
        if self._started:
            self._ray.shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self, options: BatchOptions) -> None:
        self._local.check(options)

    def pixel_options(self, options: BatchOptions) -> dict[str, Any]:
        return self._local.pixel_options(options)

    def tuning_options(self, options: BatchOptions) -> dict[str, Any]:
        return {"engine": "ray", "batch_size": options.batch_size, "max_pixels": options.max_pixels,
                "ray_actors": self.actors, "ray_actor_cpus": self.actor_cpus, "rows_per_call": options.batch_size}

    def timings(self) -> Timings:
        return self._timings

    def run(self, work: Sequence[Work], options: BatchOptions, stop: threading.Event,
            emit: Callable[[Outcome], None]) -> None:
        self._timings = Timings({m.name: 0.0 for m in self.models})
        if not work or stop.is_set():
            return
        ray = self._ray
        # Absolute paths: an actor's working folder is not the driver's (on another node, not even the same tree).
        rows = [{"index": i, "source": os.path.abspath(item.source),
                 "targets": json.dumps({model: os.path.abspath(target) for model, target in item.targets.items()})}
                for i, item in enumerate(work)]
        calls = -(-len(rows) // options.batch_size)
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(calls, 10_000)))
        results = dataset.map_batches(
            _StylizeActor, batch_size=options.batch_size, num_cpus=self.actor_cpus,
            compute=ray.data.ActorPoolStrategy(size=self.actors),
            fn_constructor_kwargs={"repository": self._repository, "models": self._pinned,
                                   "threads": self.actor_cpus, "options": options})
        # Closing the iterator (stop, Ctrl-C, an error) shuts the dataset down and kills its actors.
        with contextlib.closing(iter(results.iter_rows())) as rows_back:
            for row in rows_back:
                emit(Outcome(work[int(row["index"])], str(row["model"]), str(row["error"]) or None))
                if row["timings"]:
                    self._add_timings(json.loads(row["timings"]))
                if stop.is_set():
                    return

    def _add_timings(self, spent: dict[str, Any]) -> None:
        for name, seconds in spent["model_seconds"].items():
            self._timings.model_seconds[name] = self._timings.model_seconds.get(name, 0.0) + seconds
        self._timings.decode_seconds += spent["decode"]
        self._timings.encode_seconds += spent["encode"]
