"""Write exported models into a Triton-style model repository, atomically.

    <repo>/<name>/config.pbtxt        Triton model configuration (text protobuf)
    <repo>/<name>/labels.txt          classifiers: one label per line, in output order
    <repo>/<name>/README.md           model card of the latest export
    <repo>/<name>/<version>/model.onnx

The same folder can be handed to a Triton server or to artforge's runtime.
Every file appears complete or not at all: a version folder is assembled under
a hidden temporary name in the same parent and renamed into place, and single
files are written to a temporary file and renamed, so a server polling the
repository never sees half a model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from artforge import contract
from artforge.errors import InvalidInputError, NotFoundError
from artforge.files import write_bytes_atomic
from artforge.training.run_record import shortfall, summary

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"
LABELS_FILE = "labels.txt"
CARD_FILE = "README.md"

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")

# Fixed-size kinds batch well (Triton's dynamic batcher can merge requests);
# stylizer requests differ in H and W and hold large activations, so fewer.
MAX_BATCH_SIZE = {contract.CLASSIFIER: 64, contract.GENERATOR: 64, contract.STYLIZER: 8}

_TRITON_DTYPES: dict[int, str] = {
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.INT64: "TYPE_INT64",
}


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output; `shape` holds ints, or dim_param names for dynamic axes."""

    name: str
    elem_type: int
    shape: tuple[int | str, ...]

    @property
    def dtype(self) -> str:
        return onnx.helper.tensor_dtype_to_np_dtype(self.elem_type).name

    @property
    def triton_dtype(self) -> str:
        try:
            return _TRITON_DTYPES[self.elem_type]
        except KeyError:
            raise InvalidInputError(f"tensor '{self.name}' has type {self.dtype}, which the Triton config "
                                    f"writer does not map; allowed: {', '.join(_TRITON_DTYPES.values())}") from None

    def triton_dims(self) -> list[int]:
        """Dims without the batch axis; -1 marks a dynamic one."""
        return [d if isinstance(d, int) else -1 for d in self.shape[1:]]


def tensor_specs(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        t = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
        return TensorSpec(value.name, t.elem_type, dims)

    return [spec(v) for v in model.graph.input], [spec(v) for v in model.graph.output]


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise InvalidInputError(f"model name {name!r} is not allowed; use letters, digits, '_', '.' and '-' only")
    return name


def validate_version(version: int | str) -> int:
    # Triton only loads positive, integer-named version folders.
    text = str(version)
    if not text.isdigit() or int(text) < 1 or text != str(int(text)):
        raise InvalidInputError(f"model version {version!r} is not allowed; use a positive integer such as 1")
    return int(text)


def existing_versions(model_dir: Path) -> list[int]:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir()
                  if p.is_dir() and p.name.isdigit() and p.name == str(int(p.name)) and int(p.name) > 0)


def next_version(repo: Path, name: str) -> int:
    """One more than the highest version folder of `name` (1 for a new model)."""
    versions = existing_versions(Path(repo) / validate_name(name))
    return (versions[-1] + 1) if versions else 1


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@functools.cache
def _umask() -> int:
    # os.umask can only be read by setting it; do that once, not per file.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _quote(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid protobuf text-format string


def _tensor_block(spec: TensorSpec, extra: Sequence[str] = ()) -> str:
    lines = [f"    name: {_quote(spec.name)}", f"    data_type: {spec.triton_dtype}",
             f"    dims: [ {', '.join(str(d) for d in spec.triton_dims())} ]", *(f"    {e}" for e in extra)]
    return "  {\n" + "\n".join(lines) + "\n  }"


def triton_config(name: str, kind: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                  max_batch_size: int | None = None) -> str:
    """The config.pbtxt text for one model (Triton's onnxruntime backend)."""
    batch = MAX_BATCH_SIZE[kind] if max_batch_size is None else max_batch_size
    out_extra = [f"label_filename: {_quote(LABELS_FILE)}"] if kind == contract.CLASSIFIER else []
    parts = [
        f"# Written by artforge export: an artforge {kind}; see README.md.",
        f"name: {_quote(name)}",
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {batch}",
        "version_policy: { latest: { num_versions: 1 } }",
        "input [\n" + ",\n".join(_tensor_block(s) for s in inputs) + "\n]",
        "output [\n" + ",\n".join(_tensor_block(s, out_extra) for s in outputs) + "\n]",
    ]
    if kind != contract.STYLIZER:
        # Requests of a fixed-size kind all have the same shape, so the server may merge them.
        parts.append("dynamic_batching { }")
    return "\n".join(parts) + "\n"


def _shape_text(spec: TensorSpec) -> str:
    return "[" + ", ".join(str(d) for d in spec.shape) + "]"


def _markdown_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, sort_keys=True) + "`"
    return str(value)


_KIND_TEXT = {
    contract.CLASSIFIER: "Classifies an RGB image into one of the labels below. The graph converts uint8 NHWC "
                         "pixels to float, changes layout to NCHW, normalises, and returns softmax probabilities.",
    contract.GENERATOR: "Generates RGB images from latent vectors drawn from a standard normal distribution. The "
                        "graph maps the network's tanh output to 0..255, rounds, clamps and returns uint8 NHWC.",
    contract.STYLIZER: "Re-renders an RGB image in a learned style, keeping its size. The graph takes uint8 NHWC "
                       "pixels, runs the style network on 0..255 floats, then clamps, rounds and returns uint8 NHWC.",
}


def model_card(name: str, version: int, metadata: contract.ModelMetadata, inputs: Sequence[TensorSpec],
               outputs: Sequence[TensorSpec], parity: dict[str, Any] | None = None,
               export_info: dict[str, Any] | None = None) -> str:
    """A markdown model card: what the model does, its interface, where it came from, how it was checked."""
    export_info = export_info or {}
    lines = [f"# {name}", "", f"artforge **{metadata.kind}**, version **{version}** (this card describes the "
             "latest export; older version folders keep their own model files).", "", _KIND_TEXT[metadata.kind], ""]
    warning = shortfall(metadata.provenance)
    if warning:
        lines += [f"> **Warning:** {warning}.", ""]

    lines += ["## Interface", "", "| | name | dtype | shape |", "|---|---|---|---|"]
    lines += [f"| input | `{s.name}` | {s.dtype} | {_shape_text(s)} |" for s in inputs]
    lines += [f"| output | `{s.name}` | {s.dtype} | {_shape_text(s)} |" for s in outputs]
    lines += ["", "Images are RGB, NHWC, uint8 on both sides of the graph; the first axis is the batch."]
    if metadata.kind == contract.STYLIZER:
        # Two downsampling stages with reflection padding: smaller inputs fail inside the graph.
        lines.append(f"Height and width are free but must be multiples of {metadata.size_multiple} and at least "
                     f"{metadata.min_size} pixels; pad (reflect) before calling and crop after.")
    if metadata.kind == contract.GENERATOR:
        lines.append(f"Latents have {metadata.latent_size} values each; outputs are "
                     f"{metadata.output_size}x{metadata.output_size}.")
    if metadata.kind == contract.CLASSIFIER:
        lines.append(f"Inputs are {metadata.input_size}x{metadata.input_size}; resize or crop before calling.")
    lines.append("")

    if metadata.labels:
        lines += [f"## Labels ({len(metadata.labels)})", "", "In output order (also in `labels.txt`):", ""]
        lines += [f"{i}. {label}" for i, label in enumerate(metadata.labels)]
        lines.append("")

    lines += ["## Metadata", "", "ONNX `metadata_props` of the model file:", "", "| key | value |", "|---|---|"]
    for key, value in sorted(metadata.to_props().items()):
        if key == contract.KEY_PROVENANCE:
            value = "(training provenance, below)"
        elif len(value) > 120:
            value = value[:117] + "..."
        lines.append(f"| `{key}` | {value.replace('|', '/')} |")
    lines.append("")

    provenance = dict(metadata.provenance)
    lines += ["## Training provenance", ""]
    if not provenance:
        lines += ["None recorded.", ""]
    training = summary(provenance)
    if training:
        lines += [f"The run {training}.", ""]
    metrics = provenance.pop("metrics", None)
    settings = provenance.pop("settings", None)
    for key in ("data", "dataset", "seed", "preset", "architecture", "steps", "epochs", "style", "environment"):
        if key in provenance:
            lines.append(f"- **{key}**: {_markdown_value(provenance.pop(key))}")
    for key in sorted(provenance):
        lines.append(f"- **{key}**: {_markdown_value(provenance[key])}")
    if isinstance(settings, dict) and settings:
        # Every option the run was trained with, the ones that shaped the network included.
        lines += ["", "### Settings", "", "| option | value |", "|---|---|"]
        lines += [f"| {k.replace('_', '-')} | {_markdown_value(v)} |" for k, v in sorted(settings.items())]
    if metrics:
        lines += ["", "### Metrics", ""]
        if isinstance(metrics, dict):
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {k} | {_markdown_value(v)} |" for k, v in sorted(metrics.items())]
        else:
            lines.append(_markdown_value(metrics))
    lines.append("")

    if export_info:
        lines += ["## Export", ""]
        lines += [f"- **{key}**: {_markdown_value(value)}" for key, value in export_info.items()]
        lines.append("")

    lines += ["## Verification", ""]
    if parity is None:
        lines += ["Parity with PyTorch was **not checked** for this export.", ""]
    else:
        lines += [f"ONNX Runtime ({parity['provider']}) against the PyTorch source on {len(parity['cases'])} "
                  f"inputs: **{'passed' if parity['passed'] else 'FAILED'}** (tolerance: {parity['tolerance']}).",
                  "", "| input shape | largest difference | mismatched |", "|---|---|---|"]
        lines += [f"| {list(c['input_shape'])} | {c['max_abs_diff']:.3g} | {c['mismatch_fraction']:.4%} |"
                  for c in parity["cases"]]
        lines.append("")

    lines += ["## Serving", "",
              "This folder follows the Triton model repository layout (`config.pbtxt`, "
              f"`<version>/{MODEL_FILE}`): point Triton or the artforge runtime at the repository root.", ""]
    return "\n".join(lines)


def _check_compatible(model_dir: Path, version: int, files: dict[str, str], overwrite: bool) -> None:
    # config.pbtxt and labels.txt are shared by every version folder; replacing
    # them with different ones would silently change how older versions are served.
    others = [v for v in existing_versions(model_dir) if v != version]
    if not others or overwrite:
        return
    for filename in (CONFIG_FILE, LABELS_FILE):
        path = model_dir / filename
        old = path.read_text() if path.is_file() else None
        if old is not None and old != files.get(filename):
            raise InvalidInputError(
                f"model '{model_dir.name}' already has version(s) {', '.join(map(str, others))} with a different "
                f"{filename}; export under another name, or pass overwrite to replace the shared files")


def write_model(repo: Path, name: str, model: onnx.ModelProto, metadata: contract.ModelMetadata, *,
                version: int | None = None, parity: dict[str, Any] | None = None,
                export_info: dict[str, Any] | None = None, overwrite: bool = False,
                extra_models: dict[str, onnx.ModelProto] | None = None) -> Path:
    """Write `model` as <repo>/<name>/<version>/model.onnx with its config, labels and card, and
    `extra_models` (file name -> graph: a stylizer's tile graph) beside it in the same version folder.

    Returns the path of model.onnx. Refuses an existing version folder unless `overwrite`.
    """
    repo = Path(repo)
    name = validate_name(name)
    if repo.exists() and not repo.is_dir():
        raise NotFoundError(f"model repository {repo} is a file, not a folder")
    model_dir = repo / name
    version = next_version(repo, name) if version is None else validate_version(version)
    version_dir = model_dir / str(version)
    if version_dir.exists() and not overwrite:
        raise FileExistsError(f"{version_dir} already exists; pick another version or pass overwrite to replace it")
    if any(label == "" or "\n" in label or "\r" in label for label in metadata.labels):
        raise InvalidInputError("labels must be non-empty single lines to be written to labels.txt")

    inputs, outputs = tensor_specs(model)
    payload = model.SerializeToString()
    info = dict(export_info or {})
    info.update({"file": f"{version}/{MODEL_FILE}", "file_bytes": len(payload),
                 "sha256": hashlib.sha256(payload).hexdigest()})
    files = {CONFIG_FILE: triton_config(name, metadata.kind, inputs, outputs)}
    if metadata.kind == contract.CLASSIFIER:
        files[LABELS_FILE] = "".join(f"{label}\n" for label in metadata.labels)
    card = model_card(name, version, metadata, inputs, outputs, parity, info)

    _check_compatible(model_dir, version, files, overwrite)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=f".{version}.", suffix=".tmp"))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the renamed folder must be readable
    try:
        _write_bytes(staging / MODEL_FILE, payload)
        for filename, extra in (extra_models or {}).items():
            _write_bytes(staging / filename, extra.SerializeToString())
        # Shared files first: a server that notices the new version must find a config that describes it.
        for filename, text in files.items():
            write_bytes_atomic(model_dir / filename, text.encode())
        if version_dir.exists():  # overwrite: swap the old folder out, the new one in, then drop the old one
            retired = Path(tempfile.mkdtemp(dir=model_dir, prefix=f".{version}.", suffix=".old"))
            os.replace(version_dir, retired / "v")
            os.rename(staging, version_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            try:
                os.rename(staging, version_dir)
            except OSError:
                # Someone else created the same version between our check and now.
                raise FileExistsError(f"{version_dir} appeared while exporting; pick another version") from None
        _fsync_dir(model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_bytes_atomic(model_dir / CARD_FILE, card.encode())
    return version_dir / MODEL_FILE
