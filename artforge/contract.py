"""The model artifact contract shared by export/ (writer) and runtime/ (reader).

One ONNX file carries everything a runtime needs. Image tensors cross the
graph boundary as uint8 NHWC RGB; normalisation lives inside the graph.
This module is plain Python: no torch, no onnx, no onnxruntime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from artforge.errors import ModelLoadError

if TYPE_CHECKING:
    import numpy as np

CLASSIFIER = "classifier"
GENERATOR = "generator"
STYLIZER = "stylizer"
KINDS = (CLASSIFIER, GENERATOR, STYLIZER)

# Graph input / output names per kind: (inputs, outputs).
IO_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    CLASSIFIER: (("image",), ("probabilities",)),
    GENERATOR: (("latent",), ("image",)),
    # ONNX names are single-assignment, so a graph cannot output a tensor
    # named like its input: the stylizer's `image` comes back as `stylized`.
    STYLIZER: (("image",), ("stylized",)),
}

# A stylizer's tile graph, a second ONNX file beside model.onnx (TILE_FILE): the same network, but every
# instance-norm layer normalises with the statistics it is given (the whole image's, so tiles match a
# whole-image run in tone) and reports its input's moments over a box (to measure those statistics tile
# by tile). Its shapes: image uint8 [N,H,W,3], norm_stats float32 [N,2,C] (mean and variance per channel
# of every instance-norm layer, concatenated in layer order), norm_own float32 [N,1] (1: normalise with the
# input's own statistics instead, as model.onnx does), norm_region int64 [N,4] (y0, y1, x0, x1 in input
# pixels) -> stylized uint8 [N,H,W,3], norm_moments float32 [N,3,C] (pixel count, sum and sum of squares
# of each layer's input inside the box, about the given mean). model.onnx names it in
# KEY_TILE_GRAPH; a stylizer exported before this has no tile graph.
TILE_IO: tuple[tuple[str, ...], tuple[str, ...]] = (("image", "norm_stats", "norm_own", "norm_region"),
                                                      ("stylized", "norm_moments"))

# ONNX metadata_props keys (all values are strings).
KEY_KIND = "artforge.kind"
KEY_LABELS = "artforge.labels"  # JSON list of class names (classifier)
KEY_INPUT_SIZE = "artforge.input_size"  # S of the [N,S,S,3] classifier input
KEY_LATENT_SIZE = "artforge.latent_size"  # Z of the [N,Z] generator input
KEY_OUTPUT_SIZE = "artforge.output_size"  # side of the generator's square output
KEY_SIZE_MULTIPLE = "artforge.size_multiple"  # stylizer H and W must be multiples of this
KEY_MIN_SIZE = "artforge.min_size"  # smallest H and W a stylizer accepts (reflection padding needs it)
KEY_PROVENANCE = "artforge.provenance"  # JSON: training data, seed, steps, metrics
KEY_CONTRACT_VERSION = "artforge.contract_version"
# Stylizers: JSON {"file": TILE_FILE, "sha256": of that file's bytes, "channels": C, "layers": [C_i per
# instance-norm layer, in order, summing to C]} (absent on older exports; "layers" absent on the first tile graphs)
KEY_TILE_GRAPH = "artforge.tile_graph"
# Reduced-precision variants only (absent on fp32 exports, so older files read unchanged):
KEY_PRECISION = "artforge.precision"  # fp16 | int8
KEY_SOURCE_MODEL = "artforge.source_model"  # JSON: name, version, sha256 of the fp32 model it was made from

CONTRACT_VERSION = "1"
#: the precisions of a repository variant (<name>_<precision>): `artforge quantize` writes them, "auto" finds them
VARIANT_PRECISIONS = ("fp16", "int8")
#: the tile graph's file name in a version folder, beside model.onnx
TILE_FILE = "model.tile.onnx"
#: the precisions a TensorRT engine (model.plan) is built at: the builder's choices and what its runtime accepts
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")


def latents(count: int, latent_size: int, seed: int | None = None) -> np.ndarray:
    """The generator input for `count` images: float32 [count, latent_size], standard normal, drawn with
    numpy's default_rng(seed), so a seed means the same images on every backend, client and tool."""
    import numpy as np  # here, so that importing the contract stays plain Python

    return np.random.default_rng(seed).standard_normal((count, latent_size), dtype=np.float32)

@dataclass(frozen=True)
class ModelMetadata:
    """What a runtime needs to know about a model, read from metadata_props."""

    kind: str
    labels: tuple[str, ...] = ()
    input_size: int | None = None
    latent_size: int | None = None
    output_size: int | None = None
    size_multiple: int = 1
    min_size: int = 1
    provenance: dict[str, Any] = field(default_factory=dict)
    precision: str | None = None
    source_model: dict[str, Any] = field(default_factory=dict)
    #: a stylizer's tile graph: {"file", "sha256", "channels", "layers"}; empty when it has none (exported before it)
    tile_graph: dict[str, Any] = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        props = {KEY_KIND: self.kind, KEY_CONTRACT_VERSION: CONTRACT_VERSION,
                 KEY_PROVENANCE: json.dumps(self.provenance, sort_keys=True)}
        if self.labels:
            props[KEY_LABELS] = json.dumps(list(self.labels))
        for key, value in ((KEY_INPUT_SIZE, self.input_size), (KEY_LATENT_SIZE, self.latent_size),
                           (KEY_OUTPUT_SIZE, self.output_size)):
            if value is not None:
                props[key] = str(value)
        if self.precision:
            props[KEY_PRECISION] = self.precision
        if self.source_model:
            props[KEY_SOURCE_MODEL] = json.dumps(self.source_model, sort_keys=True)
        if self.kind == STYLIZER:
            props[KEY_SIZE_MULTIPLE] = str(self.size_multiple)
            props[KEY_MIN_SIZE] = str(self.min_size)
            if self.tile_graph:
                props[KEY_TILE_GRAPH] = json.dumps(self.tile_graph, sort_keys=True)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "model") -> ModelMetadata:
        """Parse and validate metadata_props; `source` names the file in errors."""
        kind = props.get(KEY_KIND)
        if kind not in KINDS:
            raise ModelLoadError(
                f"{source}: metadata '{KEY_KIND}' is {kind!r}; expected one of {', '.join(KINDS)}")

        def integer(key: str, required: bool) -> int | None:
            raw = props.get(key)
            if raw is None:
                if required:
                    raise ModelLoadError(f"{source}: a {kind} needs metadata '{key}'")
                return None
            try:
                value = int(raw)
            except ValueError:
                raise ModelLoadError(f"{source}: metadata '{key}' must be an integer, got {raw!r}") from None
            if value <= 0:
                raise ModelLoadError(f"{source}: metadata '{key}' must be positive, got {value}")
            return value

        def parse_json(key: str, default: Any) -> Any:
            raw = props.get(key)
            if raw is None:
                return default
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                raise ModelLoadError(f"{source}: metadata '{key}' is not valid JSON") from None

        labels = parse_json(KEY_LABELS, [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ModelLoadError(f"{source}: metadata '{KEY_LABELS}' must be a JSON list of strings")
        if kind == CLASSIFIER and not labels:
            raise ModelLoadError(f"{source}: a classifier needs metadata '{KEY_LABELS}'")
        provenance = parse_json(KEY_PROVENANCE, {})
        source_model = parse_json(KEY_SOURCE_MODEL, {})
        tile_graph = parse_json(KEY_TILE_GRAPH, {})
        if tile_graph and not (isinstance(tile_graph, dict) and isinstance(tile_graph.get("file"), str)
                               and isinstance(tile_graph.get("channels"), int) and tile_graph["channels"] > 0):
            raise ModelLoadError(f"{source}: metadata '{KEY_TILE_GRAPH}' must be a JSON object with a 'file' "
                                 "name and a positive 'channels' count")
        layers = tile_graph.get("layers") if tile_graph else None
        if layers is not None and not (isinstance(layers, list) and all(type(c) is int and c > 0 for c in layers)
                                       and sum(layers) == tile_graph["channels"]):
            raise ModelLoadError(f"{source}: metadata '{KEY_TILE_GRAPH}' 'layers' must list positive channel "
                                 "counts that add up to 'channels'")
        return cls(
            kind=kind,
            labels=tuple(labels),
            input_size=integer(KEY_INPUT_SIZE, kind == CLASSIFIER),
            latent_size=integer(KEY_LATENT_SIZE, kind == GENERATOR),
            output_size=integer(KEY_OUTPUT_SIZE, False),
            size_multiple=integer(KEY_SIZE_MULTIPLE, False) or 1,
            min_size=integer(KEY_MIN_SIZE, False) or 1,
            provenance=provenance if isinstance(provenance, dict) else {},
            precision=props.get(KEY_PRECISION) or None,
            source_model=source_model if isinstance(source_model, dict) else {},
            tile_graph=tile_graph if kind == STYLIZER else {},
        )

    @property
    def input_name(self) -> str:
        return IO_NAMES[self.kind][0][0]

    @property
    def output_name(self) -> str:
        return IO_NAMES[self.kind][1][0]

    @property
    def classifier_size(self) -> int:
        """The classifier's input side (from_props refuses a classifier without it)."""
        return self._required(self.input_size, KEY_INPUT_SIZE)

    @property
    def generator_latent_size(self) -> int:
        """The generator's latent size (from_props refuses a generator without it)."""
        return self._required(self.latent_size, KEY_LATENT_SIZE)

    def _required(self, value: int | None, key: str) -> int:
        if value is None:
            raise ModelLoadError(f"a {self.kind} needs metadata '{key}'")
        return value
