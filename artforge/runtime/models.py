"""Model kinds over a Backend: the artifact contract, checked once at load.

Model.infer is the raw, validated tensor call; Classifier, Generator and
Stylizer add the image pipeline. Everything the per-call path needs (names,
specs, sizes, batch limit) is resolved in __init__.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from artforge import contract, defaults
from artforge.contract import ModelMetadata
from artforge.errors import ArtforgeError, InvalidInputError, ModelLoadError, ResourceExhaustedError
from artforge.files import file_sha256
from artforge.runtime import pipeline, tiling
from artforge.runtime.backends import Backend, TensorSpec, create_backend
from artforge.runtime.imageio import DEFAULT_MAX_PIXELS, ImageLike
from artforge.runtime.pipeline import StylizeInput

Feeds = dict[str, np.ndarray]

_U8, _F32 = np.dtype(np.uint8), np.dtype(np.float32)
# Per kind: the dtype and rank of each contract tensor.
_TENSORS: dict[str, dict[str, tuple[np.dtype, int]]] = {
    contract.CLASSIFIER: {"image": (_U8, 4), "probabilities": (_F32, 2)},
    contract.GENERATOR: {"latent": (_F32, 2), "image": (_U8, 4)},
    contract.STYLIZER: {"image": (_U8, 4), "stylized": (_U8, 4)},
}
#: most images one generate() call may ask for
MAX_GENERATE = 4096

log = logging.getLogger(__name__)


def read_metadata(backend: Backend, source: str) -> ModelMetadata:
    props = backend.metadata_props
    if contract.KEY_KIND not in props:
        raise ModelLoadError(f"{source}: not an artforge model (its ONNX metadata_props have no "
                             f"'{contract.KEY_KIND}'); export it with artforge's exporter")
    return ModelMetadata.from_props(props, source=source)


def check_contract(meta: ModelMetadata, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                   source: str) -> None:
    """Raise ModelLoadError unless the graph's I/O is what the contract promises for meta.kind."""
    wanted_in, wanted_out = contract.IO_NAMES[meta.kind]
    have_in = {s.name: s for s in inputs}
    have_out = {s.name: s for s in outputs}
    if set(have_in) != set(wanted_in):
        raise ModelLoadError(f"{source}: a {meta.kind} must have input(s) {', '.join(wanted_in)}; "
                             f"the graph has {', '.join(have_in) or 'none'}")
    missing = [name for name in wanted_out if name not in have_out]
    if missing:
        raise ModelLoadError(f"{source}: a {meta.kind} must have output(s) {', '.join(wanted_out)}; "
                             f"the graph has {', '.join(have_out) or 'none'}")
    specs = {**have_out, **have_in}  # contract names are unique within a kind, so merging loses nothing
    for name, (dtype, rank) in _TENSORS[meta.kind].items():
        spec = specs[name]
        if spec.dtype != dtype or len(spec.shape) != rank:
            raise ModelLoadError(f"{source}: tensor '{name}' must be {dtype.name} with rank {rank}, "
                                 f"the graph has {spec.describe()}")
        if rank == 4 and spec.shape[3] not in (None, 3):
            raise ModelLoadError(f"{source}: tensor '{name}' must be NHWC RGB (last dim 3), "
                                 f"the graph has {spec.describe()}")

    def expect(spec: TensorSpec, axes: tuple[int, ...], value: int | None, says: str) -> None:
        if value is not None and any(spec.shape[a] not in (None, value) for a in axes):
            raise ModelLoadError(f"{source}: the metadata says {says} but the graph has {spec.describe()}")

    if meta.kind == contract.CLASSIFIER:
        expect(have_in["image"], (1, 2), meta.input_size, f"{contract.KEY_INPUT_SIZE} {meta.input_size}")
        expect(have_out["probabilities"], (1,), len(meta.labels), f"{len(meta.labels)} labels")
    elif meta.kind == contract.GENERATOR:
        expect(have_in["latent"], (1,), meta.latent_size, f"{contract.KEY_LATENT_SIZE} {meta.latent_size}")
        expect(have_out["image"], (1, 2), meta.output_size, f"{contract.KEY_OUTPUT_SIZE} {meta.output_size}")


class Model:
    """A loaded model: metadata, backend and a validated raw `infer` call."""

    kind: ClassVar[str] = ""

    def __init__(self, backend: Backend, metadata: ModelMetadata | None = None, name: str | None = None,
                 version: int | None = None, max_batch_size: int | None = None) -> None:
        source = str(backend.path)
        self.backend = backend
        self.metadata = metadata or read_metadata(backend, source)
        if self.kind and self.metadata.kind != self.kind:
            raise ModelLoadError(f"{source} is a {self.metadata.kind}, not a {self.kind}")
        check_contract(self.metadata, backend.inputs, backend.outputs, source)
        self.name = name or backend.path.stem
        self.version = version
        #: decoded images larger than this are refused (ResourceExhaustedError)
        self.max_pixels: int | None = DEFAULT_MAX_PIXELS
        self._input_names = frozenset(s.name for s in backend.inputs)
        self._input = self.metadata.input_name
        self._output = self.metadata.output_name
        batch_dim = next(s for s in backend.inputs if s.name == self._input).shape[0]
        # A graph exported with a fixed batch must get exactly that many rows;
        # Triton's max_batch_size caps the rest.
        self._fixed_batch = batch_dim
        self._batch_limit = batch_dim or max_batch_size or None
        self.max_batch_size = max_batch_size
        self._configure()

    def _configure(self) -> None:
        """Subclasses resolve their kind's metadata here, once per load."""

    @property
    def backend_name(self) -> str:
        return self.backend.display_name

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.backend.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.backend.outputs

    @property
    def description(self) -> str:
        """The kind, and the precision of a reduced-precision variant (the backend's own option, e.g.
        openvino:fp32, is its inference precision hint, not the weights')."""
        return f"{self.metadata.precision} {self.kind}" if self.metadata.precision else self.kind

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} v{self.version}: {self.description} on {self.backend_name}>"

    def check(self, feeds: Feeds) -> Feeds:
        """The feeds as contiguous arrays after checking names, dtypes, shapes and the batch limit
        (InvalidInputError names what is wrong)."""
        if not isinstance(feeds, dict) or set(feeds) != self._input_names:
            got = ", ".join(map(str, feeds)) if isinstance(feeds, dict) else type(feeds).__name__
            raise InvalidInputError(f"model {self.name} takes input(s) "
                                    f"{', '.join(s.describe() for s in self.inputs)}; got {got or 'none'}")
        checked = {}
        for spec in self.inputs:
            array = feeds[spec.name]
            if not isinstance(array, np.ndarray) or array.dtype != spec.dtype:
                got = array.dtype.name if isinstance(array, np.ndarray) else type(array).__name__
                raise InvalidInputError(f"model {self.name}: input '{spec.name}' must be {spec.dtype.name}, got {got}")
            if array.ndim != len(spec.shape) or any(
                    d is not None and d != n for d, n in zip(spec.shape, array.shape, strict=True)):
                raise InvalidInputError(f"model {self.name}: input '{spec.name}' must have shape "
                                        f"{spec.describe()}, got {list(array.shape)}")
            if self.max_batch_size and spec.shape and array.shape[0] > self.max_batch_size:
                # Triton refuses these too; the high-level calls split batches instead.
                raise InvalidInputError(f"model {self.name}: a batch of {array.shape[0]} is over its "
                                        f"max_batch_size of {self.max_batch_size} (config.pbtxt)")
            checked[spec.name] = np.ascontiguousarray(array)
        return checked

    def infer(self, feeds: Feeds) -> Feeds:
        """Run raw tensors through the graph after checking names, dtypes and shapes."""
        return self.run(self.check(feeds))

    def run(self, feeds: Feeds) -> Feeds:
        """Run feeds that are already valid (built by this kind's pipeline, or passed through `check`).

        Batches over the model's limit run in several calls; a graph exported
        with a fixed batch gets exactly that many rows (zero rows added, their
        outputs dropped). Every caller, the server's batcher included, runs
        graphs through here.
        """
        feeds = {name: np.ascontiguousarray(array) for name, array in feeds.items()}  # no copy when contiguous
        count = len(next(iter(feeds.values())))
        if self._batch_limit is None or (count <= self._batch_limit and self._fixed_batch in (None, count)):
            return self.backend.run(feeds)
        parts = []
        for rows in pipeline.chunks(count, self._batch_limit):
            used = rows.stop - rows.start
            part = {name: array[rows] for name, array in feeds.items()}
            if self._fixed_batch:
                part = {name: pipeline.pad_batch(array, self._fixed_batch) for name, array in part.items()}
            parts.append({name: out[:used] for name, out in self.backend.run(part).items()})
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """The contract output for a batch of the contract input."""
        return self.run({self._input: batch})[self._output]


class Classifier(Model):
    kind = contract.CLASSIFIER

    def _configure(self) -> None:
        self.labels = self.metadata.labels
        self.input_size = self.metadata.classifier_size

    def prepare(self, images: Sequence[ImageLike], source: str | None = None) -> np.ndarray:
        """The graph input for a list of images: uint8 [N, S, S, 3] (decoded, centre square)."""
        return pipeline.classifier_batch(images, self.input_size, self.max_pixels, source)

    def best(self, probabilities: np.ndarray, top_k: int = defaults.TOP_K) -> list[int]:
        """Label indices of the top_k classes of one probability row, most likely first."""
        pipeline.check_positive(top_k, "top_k")
        return [int(i) for i in pipeline.top_k(probabilities, top_k)]

    def probabilities(self, images: Sequence[ImageLike]) -> np.ndarray:
        """float32 [N, len(labels)] class probabilities for a list of images."""
        if not len(images):
            return np.empty((0, len(self.labels)), dtype=np.float32)
        return self._run(self.prepare(images))

    def classify_batch(self, images: Sequence[ImageLike],
                       top_k: int = defaults.TOP_K) -> list[list[tuple[str, float]]]:
        """The top_k (label, probability) pairs for each image, most likely first."""
        pipeline.check_positive(top_k, "top_k")
        return [[(self.labels[i], float(row[i])) for i in self.best(row, top_k)]
                for row in self.probabilities(images)]

    def classify(self, image: ImageLike, top_k: int = defaults.TOP_K) -> list[tuple[str, float]]:
        """The top_k (label, probability) pairs for one image, most likely first."""
        return self.classify_batch([image], top_k)[0]


class Generator(Model):
    kind = contract.GENERATOR

    def _configure(self) -> None:
        self.latent_size = self.metadata.generator_latent_size

    def latents(self, count: int = defaults.GENERATE_COUNT, seed: int | None = None) -> np.ndarray:
        """float32 [count, latent_size] standard-normal latents; the same seed gives the same latents."""
        pipeline.check_positive(count, "count")
        if count > MAX_GENERATE:
            raise ResourceExhaustedError(f"count is {count}; generate at most {MAX_GENERATE} images per call")
        return contract.latents(count, self.latent_size, seed)

    def generate(self, count: int = defaults.GENERATE_COUNT, seed: int | None = None) -> list[np.ndarray]:
        """count RGB uint8 HxWx3 images from seeded latents."""
        return list(self._run(self.latents(count, seed)))


class Stylizer(Model):
    kind = contract.STYLIZER

    def _configure(self) -> None:
        self.size_multiple = self.metadata.size_multiple
        self.min_size = self.metadata.min_size
        self._tile_lock = threading.Lock()
        self._tile_graph: tiling.SharedNorm | None = None
        self._tile_graph_checked = False

    def shared_norm(self) -> tiling.SharedNorm | None:
        """The tile graph, which normalises tiles with the whole image's statistics (loaded on first use,
        with this model's backend and options), or None for a model without one: its tiles then use their
        own statistics, as before tile graphs, and a warning says so once."""
        with self._tile_lock:
            if not self._tile_graph_checked:
                self._tile_graph_checked = True
                problem = self._load_tile_graph()
                if problem:
                    log.warning("%s: %s, so its tiles are normalised with their own statistics and may differ in "
                                "tone from a whole-image run; re-export it with `artforge export` to fix that",
                                self.name, problem)
            return self._tile_graph

    def _load_tile_graph(self) -> str | None:
        """Load the tile graph into self._tile_graph, or say why not."""
        info = self.metadata.tile_graph
        if not info:
            return "the model has no tile graph (it was exported before tile graphs, or is a precision variant)"
        artifact = Path(self.backend.artifact)
        path = self.backend.path.with_name(f"{Path(info['file']).stem}{artifact.suffix}")
        if not path.is_file():
            return f"its tile graph {path.name} is missing"
        if path.suffix == ".onnx" and info.get("sha256") and file_sha256(path) != info["sha256"]:
            return f"its tile graph {path.name} does not belong to this model.onnx (sha256 differs)"
        try:
            backend = type(self.backend)(path, option=getattr(self.backend, "option", None),
                                         threads=getattr(self.backend, "threads", None),
                                         reason=f"the tile graph of {self.name}")
        except ArtforgeError as error:
            return f"its tile graph cannot be loaded ({error})"
        names = ({s.name for s in backend.inputs}, {s.name for s in backend.outputs})
        if names[0] != set(contract.TILE_IO[0]) or not set(contract.TILE_IO[1]) <= names[1]:
            return f"its tile graph {path.name} does not have the contract's inputs and outputs"
        self._tile_graph = tiling.SharedNorm(backend.run, int(info["channels"]), tuple(info.get("layers", ())))
        return None

    def prepare(self, image: ImageLike, max_side: int | None = None, source: str | None = None) -> StylizeInput:
        """Decode one image for this model (see pipeline.stylize_input)."""
        return pipeline.stylize_input(image, max_side, self.max_pixels, source)

    def padded(self, prepared: StylizeInput) -> np.ndarray:
        """The graph input of one prepared image: [H', W', 3], padded to this model's size multiple."""
        return prepared.padded(self.size_multiple, self.min_size)

    def stylize_batch(self, images: Sequence[ImageLike], max_side: int | None = None) -> list[np.ndarray]:
        """Stylize several images, running same-size ones together as one batch."""
        pipeline.check_positive(max_side, "max_side")
        prepared = [self.prepare(image, max_side) for image in images]
        padded = [self.padded(p) for p in prepared]
        results: list[np.ndarray] = [np.empty(0, np.uint8)] * len(prepared)
        for indices in pipeline.group_by_shape(padded).values():
            out = self._run(pipeline.stack([padded[i] for i in indices]))
            for row, i in zip(out, indices, strict=True):
                results[i] = pipeline.stylize_output(row, prepared[i])
        return results

    def run_padded(self, batch: np.ndarray) -> np.ndarray:
        """Stylize a batch the caller prepared itself (the batch tool decodes, pads and groups images in
        its own threads): uint8 [N,H,W,3] RGB, H and W multiples of size_multiple and at least min_size."""
        if (not isinstance(batch, np.ndarray) or batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3
                or any(side % self.size_multiple or side < self.min_size for side in batch.shape[1:3])):
            shape = list(batch.shape) if isinstance(batch, np.ndarray) else type(batch).__name__
            raise InvalidInputError(f"model {self.name}: run_padded takes uint8 [N,H,W,3] with H and W multiples "
                                    f"of {self.size_multiple} and at least {self.min_size}; got {shape}")
        return self._run(batch)

    def stylize(self, image: ImageLike, max_side: int | None = None) -> np.ndarray:
        """The stylized image, RGB uint8 (RGBA when the input has alpha), the size of the
        input after the optional max_side downscale."""
        return self.stylize_batch([image], max_side)[0]


KINDS: dict[str, type[Model]] = {cls.kind: cls for cls in (Classifier, Generator, Stylizer)}


def model_for(backend: Backend, name: str | None = None, version: int | None = None,
              max_batch_size: int | None = None) -> Model:
    """The Classifier, Generator or Stylizer that the backend's metadata declares."""
    metadata = read_metadata(backend, str(backend.path))
    return KINDS[metadata.kind](backend, metadata, name=name, version=version, max_batch_size=max_batch_size)


def load_model(path: str | Path, backend: str = "auto", threads: int | None = None) -> Model:
    """Load one artifact (a model.onnx file or a version folder) outside any repository."""
    loaded = create_backend(path, backend, threads)
    # The asked path names the model: auto may have loaded its <name>_int8 variant's file, which
    # answers under the asked name.
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    if folder.name.isdigit():  # <name>/<version>/model.onnx, as in a repository
        return model_for(loaded, name=folder.parent.name, version=int(folder.name))
    return model_for(loaded)
