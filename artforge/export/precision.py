"""Reduced-precision variants of a repository model: fp16 and int8 (QDQ), measured against the fp32 model.

`artforge quantize MODEL --repo REPO --precision fp16|int8` writes the variant
as a model of its own (default name `<model>_<precision>`) beside the source,
with the same config, labels and metadata, so every backend and server loads
it unchanged. Nothing is written unless the variant stays within the accuracy
thresholds; the measurements go to `<repo>/<variant>/<version>/accuracy.json`
and to the variant's model card.

- fp16: ONNX Runtime's float16 converter with keep_io_types, so the graph
  boundary keeps the contract's uint8 / float32 tensors; the uint8<->float
  casts inside the graph are retargeted to float16 by the converter.
- int8: ONNX Runtime static quantization in QDQ format (QuantizeLinear /
  DequantizeLinear pairs, what TensorRT, OpenVINO and ONNX Runtime all read),
  int8 weights per output channel, activations calibrated on an image folder
  (classifiers, stylizers) or on seeded latents (generators).

This module needs onnx and onnxruntime but never torch, so `artforge
quantize` works on an install without the [train] extra.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from artforge import contract
from artforge.accuracy import psnr
from artforge.errors import ArtforgeError, InvalidInputError, NotFoundError, ParityError
from artforge.export import repository
from artforge.export.options import (
    ACTIVATION_TYPES,
    CALIBRATION_METHODS,
    DEFAULT_ACTIVATION_TYPE,
    DEFAULT_CALIBRATION_COUNT,
    DEFAULT_CALIBRATION_METHOD,
    DEFAULT_CALIBRATION_SIZE,
    DEFAULT_EVALUATION_COUNT,
    VARIANT_PRECISIONS,
    Thresholds,
)
from artforge.files import file_sha256, write_bytes_atomic

# Generators are measured on this many fixed latents (seeded, different from the calibration ones).
GENERATOR_EVAL_LATENTS = 64
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# Ops whose weights are quantized and which may be left in float by sensitivity.
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_SQNR_CAP = 100.0  # dB; an exact tensor would be infinite
_BATCH = {contract.CLASSIFIER: 8, contract.STYLIZER: 4, contract.GENERATOR: 16}

Log = Callable[[str], None]


# ----------------------------------------------------------------- inputs
def list_images(folder: Path | str, what: str) -> list[Path]:
    """Image files under folder (recursively), sorted; one clear error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFoundError(f"{what} folder {folder} does not exist or is not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise InvalidInputError(f"{what} folder {folder} holds no images (searched recursively for "
                                f"{', '.join(IMAGE_SUFFIXES)})")
    return paths


def _spread(items: Sequence[Path], count: int) -> list[Path]:
    # Evenly spaced, not the first N: an ImageFolder sorts by class, and
    # calibrating on one class would miss the others' activation ranges.
    if len(items) <= count:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def _stylizer_side(meta: contract.ModelMetadata, size: int) -> int:
    multiple = max(1, meta.size_multiple)
    return max(-(-size // multiple) * multiple, -(-meta.min_size // multiple) * multiple)


def image_batches(paths: Sequence[Path], meta: contract.ModelMetadata, size: int = DEFAULT_CALIBRATION_SIZE,
                  batch: int | None = None) -> list[np.ndarray]:
    """The model's contract input for image files, as the runtime would build it.

    Classifiers get the runtime's centre square at their input size; stylizers
    a centre square of `size` (rounded up to the size multiple), so that
    calibration and evaluation batches have one fixed shape.
    """
    from artforge.runtime import pipeline

    batch = batch or _BATCH[meta.kind]
    out = []
    for start in range(0, len(paths), batch):
        chunk = [str(p) for p in paths[start:start + batch]]
        if meta.kind == contract.CLASSIFIER:
            out.append(pipeline.classifier_batch(chunk, int(meta.input_size or 0)))
        elif meta.kind == contract.STYLIZER:
            side = _stylizer_side(meta, size)
            out.append(pipeline.classifier_batch(chunk, side))  # the same decode and centre square
        else:
            raise InvalidInputError(f"a {meta.kind} takes latents, not images")
    return out


def latent_batches(meta: contract.ModelMetadata, count: int, seed: int, batch: int | None = None) -> list[np.ndarray]:
    """Seeded latents, the contract's draw (as every generate call makes them)."""
    latents = contract.latents(count, int(meta.latent_size or 0), seed)
    step = batch or _BATCH[contract.GENERATOR]
    return [latents[i:i + step] for i in range(0, count, step)]


class BatchReader:
    """An ONNX Runtime CalibrationDataReader over prepared batches.

    It supports set_range, so quantize_static calibrates one batch at a time
    (CalibStridedMinMax): histogram calibrators otherwise keep every
    intermediate tensor of every batch in memory at once.
    """

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self.input_name = input_name
        self.batches = list(batches)
        self._pos, self._end = 0, len(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self._end:
            return None
        self._pos += 1
        return {self.input_name: self.batches[self._pos - 1]}

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item

    def set_range(self, start_index: int, end_index: int) -> None:
        self._pos, self._end = start_index, min(end_index, len(self.batches))

    def rewind(self) -> None:
        self.set_range(0, len(self.batches))


# ----------------------------------------------------------------- conversion
def _session(model: onnx.ModelProto | Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # The quantization tools log a warning per unquantized op and per hint;
    # none of it is actionable for an artforge user.
    # The histogram calibrators also print progress lines to stdout.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _prune_opsets(model: onnx.ModelProto) -> None:
    # ONNX Runtime's optimiser saves imports of every domain it knows
    # (com.microsoft.nchwc, org.pytorch.aten, ...); other parsers (TensorRT,
    # OpenVINO) need not know them, so keep only the domains nodes use.
    used = {node.domain for node in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(kept)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """float32 -> float16 inside the graph; the contract's uint8 / float32 boundary stays as it is."""
    from onnxruntime.transformers import float16

    # keep_io_types leaves float32 graph inputs/outputs (latent, probabilities)
    # with casts inside; uint8 images never were float, and the converter
    # retargets the graph's own uint8->float Cast to float16.
    from onnxruntime.transformers.onnx_model import OnnxModel

    converted = float16.convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False,
                                                 op_block_list=float16.DEFAULT_OP_BLOCK_LIST)
    # The converter appends its boundary casts at the end of the node list;
    # ONNX Runtime does not mind, but the checker and other parsers want
    # nodes in topological order.
    OnnxModel(converted).topological_sort()
    # Some value_info entries keep their float32 type after conversion; they
    # are optional hints, so drop them and let shape inference redo them.
    del converted.graph.value_info[:]
    return converted


@dataclass
class Int8Settings:
    method: str = "minmax"
    activation_type: str = DEFAULT_ACTIVATION_TYPE
    exclude: tuple[str, ...] = ()


def quantize_int8(prepared: Path, target: Path, reader: BatchReader, settings: Int8Settings,
                  cache: Path | None = None) -> onnx.ModelProto:
    """quantize_static in QDQ format on a quant_pre_process'ed model; `cache` keeps the calibrated
    ranges, so quantizing again (other exclusions) does not calibrate again."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[settings.method]
    symmetric = settings.activation_type == "int8"
    reader.rewind()
    with _quiet():
        quantize_static(
            str(prepared), str(target), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=method, nodes_to_exclude=list(settings.exclude),
            calibration_cache_path=str(cache) if cache else None,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                           "CalibStridedMinMax": 1})
    model = onnx.load(str(target))
    _prune_opsets(model)
    return model


def sensitivity(prepared: Path, quantized: Path, batch: np.ndarray, input_name: str, work: Path,
                exclude: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Per weighted node, how much the int8 model's agreement with float (SQNR, dB) drops across it.

    Both models save every intermediate tensor (ONNX Runtime's qdq_loss_debug
    tools) for one calibration batch; a node's score is the SQNR of its inputs
    minus the SQNR of its output, i.e. the error this layer adds by itself
    (its weights and its input's quantization), not what it inherited.
    Worst first.
    """
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_signal_to_quantization_noice_ratio,
        modify_model_output_intermediate_tensors,
    )

    acts = {}
    for label, path in (("float", prepared), ("qdq", quantized)):
        augmented = work / f"{label}_augmented.onnx"
        with _quiet():
            modify_model_output_intermediate_tensors(str(path), str(augmented))
            acts[label] = collect_activations(str(augmented), BatchReader(input_name, [batch]))

    def sqnr(name: str) -> float:
        if name not in acts["float"] or name not in acts["qdq"]:
            return _SQNR_CAP  # a graph input or a constant: exact in both models
        value = float(compute_signal_to_quantization_noice_ratio(acts["float"][name], acts["qdq"][name]))
        return min(value, _SQNR_CAP) if math.isfinite(value) else _SQNR_CAP

    graph = onnx.load(str(prepared), load_external_data=False).graph
    constants = {i.name for i in graph.initializer}
    scores = []
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS or node.name in exclude or not node.output:
            continue
        inputs = [i for i in node.input if i and i not in constants]
        before = min((sqnr(i) for i in inputs), default=_SQNR_CAP)
        after = sqnr(node.output[0])
        scores.append({"node": node.name, "op": node.op_type, "sqnr_in_db": round(before, 2),
                       "sqnr_out_db": round(after, 2), "drop_db": round(before - after, 2)})
    return sorted(scores, key=lambda s: -s["drop_db"])


# ----------------------------------------------------------------- measuring
def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        raise ArtforgeError("measuring a stylizer variant needs scikit-image (pip install 'artforge[dev]')") from None
    return float(structural_similarity(a, b, channel_axis=-1, data_range=255))


def _run_all(session, name: str, batches: Sequence[np.ndarray], what: str) -> np.ndarray:
    outputs = []
    for batch in batches:
        try:
            outputs.append(session.run(None, {name: batch})[0])
        except Exception as exc:  # onnxruntime raises its own types; all mean "this graph does not run"
            raise ParityError(f"ONNX Runtime (CPU) cannot run the {what} on a {list(batch.shape)} input: "
                              f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
                              ) from exc
    return np.concatenate(outputs)


def measure(kind: str, reference, variant, input_name: str, batches: Sequence[np.ndarray],
            labels: Sequence[str] = (), truth: Sequence[int | None] = ()) -> dict[str, Any]:
    """Accuracy of the variant session against the reference session on the same inputs."""
    ref = _run_all(reference, input_name, batches, "fp32 model")
    got = _run_all(variant, input_name, batches, "variant")
    if got.shape != ref.shape or got.dtype != ref.dtype:
        raise ParityError(f"the variant returns {got.dtype} {list(got.shape)} where the fp32 model returns "
                          f"{ref.dtype} {list(ref.shape)}")
    if kind == contract.CLASSIFIER:
        diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
        result = {"images": len(ref), "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
                  "max_prob_diff": float(np.nan_to_num(diff, nan=1.0).max()), "mean_prob_diff": float(diff.mean())}
        known = [(i, t) for i, t in enumerate(truth) if t is not None]
        if known:  # the folder's sub-folders are named by label: also report accuracy itself
            rows, classes = np.array([i for i, _ in known]), np.array([t for _, t in known])
            result["labelled_images"] = len(known)
            result["fp32_accuracy"] = float((ref[rows].argmax(1) == classes).mean())
            result["variant_accuracy"] = float((got[rows].argmax(1) == classes).mean())
        return result
    if kind == contract.STYLIZER:
        per_image = [psnr(a, b) for a, b in zip(ref, got, strict=True)]
        ssim = [_ssim(a, b) for a, b in zip(ref, got, strict=True)]
        return {"images": len(ref), "size": list(ref.shape[1:3]), "psnr_db": float(np.mean(per_image)),
                "min_psnr_db": float(np.min(per_image)), "ssim": float(np.mean(ssim)), "min_ssim": float(np.min(ssim))}
    diff = np.abs(ref.astype(np.int16) - got.astype(np.int16))
    return {"latents": len(ref), "mae_levels": float(diff.mean()), "max_levels": int(diff.max(initial=0)),
            "psnr_db": psnr(ref, got)}


def judge(kind: str, metrics: dict[str, Any], thresholds: Thresholds) -> list[str]:
    """Sentences naming each threshold the metrics miss (empty: passed)."""
    limits = thresholds.for_kind(kind)
    checks = {
        "min_top1_agreement": ("top-1 agreement", metrics.get("top1_agreement"), ">="),
        "max_prob_diff": ("largest probability difference", metrics.get("max_prob_diff"), "<="),
        "min_psnr": ("mean PSNR (dB)", metrics.get("psnr_db"), ">="),
        "min_ssim": ("mean SSIM", metrics.get("ssim"), ">="),
        "max_mae": ("mean absolute difference (levels)", metrics.get("mae_levels"), "<="),
    }
    failures = []
    for key, limit in limits.items():
        what, value, sense = checks[key]
        ok = value is not None and (value >= limit if sense == ">=" else value <= limit)
        if not ok:
            failures.append(f"{what} {value:.4g} is not {sense} {limit:g} (--{key.replace('_', '-')})")
    return failures


# ----------------------------------------------------------------- the variant
def _source(repo: Path, name: str, version: int | str | None) -> tuple[Path, int]:
    from artforge.runtime.repository import Repository

    folder = Repository(repo).version_path(name, version)  # NotFoundError naming what exists
    path = folder / repository.MODEL_FILE
    if not path.is_file():
        raise NotFoundError(f"model {name!r} version {folder.name} has no {repository.MODEL_FILE}; "
                            "variants are made from the ONNX model")
    return path, int(folder.name)


def _truth(paths: Sequence[Path], labels: Sequence[str]) -> list[int | None]:
    index = {label: i for i, label in enumerate(labels)}
    return [index.get(p.parent.name) for p in paths]


def _card_section(report: dict[str, Any]) -> str:
    ev, src = report["evaluation"], report["source"]
    lines = ["## Accuracy against the fp32 model", "",
             f"**{report['precision']}** variant of `{src['name']}` version {src['version']} (sha256 "
             f"`{src['sha256'][:16]}...`), measured with ONNX Runtime (CPU) on {ev['data']}: "
             f"**{'passed' if report['passed'] else 'FAILED'}**.", "",
             "| metric | value | threshold |", "|---|---|---|"]
    names = {"top1_agreement": "min_top1_agreement", "max_prob_diff": "max_prob_diff", "psnr_db": "min_psnr",
             "ssim": "min_ssim", "mae_levels": "max_mae"}
    for key, value in ev["metrics"].items():
        limit = report["thresholds"].get(names.get(key, ""))
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} | {'' if limit is None else limit} |")
    lines.append("")
    q = report.get("quantization")
    if q:
        lines += [f"Quantization: ONNX Runtime static quantization, {q['format']} format; weights {q['weights']}; "
                  f"activations {q['activations']}; calibration {q['calibration']['method']} on "
                  f"{q['calibration']['samples']} {q['calibration']['data']}.", ""]
        excluded = q["excluded_nodes"]
        lines += [f"Left in float: {', '.join(f'`{n}`' for n in excluded) if excluded else 'no layers'}"
                  + (f" ({len(q['auto_excluded'])} chosen by measured sensitivity)." if q["auto_excluded"] else "."),
                  ""]
    lines += [f"Full numbers: `{report['version']}/accuracy.json`.", ""]
    return "\n".join(lines)


def _rewrite_card(card: Path, section: str) -> None:
    # The writer's card says parity with PyTorch was not checked (true: a
    # variant is checked against the fp32 model instead); put that check there.
    text = card.read_text()
    head, marker, rest = text.partition("## Verification\n")
    tail_at = rest.find("## Serving")
    if marker and tail_at >= 0:
        text = head + section + "\n" + rest[tail_at:]
    else:
        text = text.rstrip() + "\n\n" + section
    write_bytes_atomic(card, text.encode())


def make_variant(repo: Path | str, name: str, precision: str, *, version: int | str | None = None,
                 variant: str | None = None, variant_version: int | None = None,
                 calibration: Path | str | None = None, held_out: Path | str | None = None,
                 calibration_method: str = DEFAULT_CALIBRATION_METHOD,
                 calibration_count: int = DEFAULT_CALIBRATION_COUNT, calibration_size: int = DEFAULT_CALIBRATION_SIZE,
                 evaluation_count: int = DEFAULT_EVALUATION_COUNT, activation_type: str = DEFAULT_ACTIVATION_TYPE,
                 exclude: Sequence[str] = (), auto_exclude: int = 0,
                 thresholds: Thresholds | None = None, seed: int = 0, threads: int | None = None,
                 overwrite: bool = False, log: Log | None = print) -> tuple[Path, dict[str, Any]]:
    """Make the fp16 or int8 variant of repo/name, measure it against the fp32 model, and write it.

    Returns (path of the variant's model.onnx, the accuracy report). Raises
    ParityError, leaving the repository untouched, when the variant misses a
    threshold; InvalidInputError / NotFoundError for bad arguments.
    """
    say = log or (lambda _: None)
    repo = Path(repo)
    if precision not in VARIANT_PRECISIONS:
        raise InvalidInputError(f"precision {precision!r} is not supported; use one of "
                                f"{', '.join(VARIANT_PRECISIONS)}")
    if calibration_method not in CALIBRATION_METHODS:
        raise InvalidInputError(f"calibration method {calibration_method!r} is not supported; use one of "
                                f"{', '.join(CALIBRATION_METHODS)}")
    if activation_type not in ACTIVATION_TYPES:
        raise InvalidInputError(f"activation type {activation_type!r} is not supported; use one of "
                                f"{', '.join(ACTIVATION_TYPES)}")
    for what, value in (("calibration count", calibration_count), ("evaluation count", evaluation_count),
                        ("calibration size", calibration_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{what} must be a positive integer, got {value!r}")
    if isinstance(auto_exclude, bool) or not isinstance(auto_exclude, int) or auto_exclude < 0:
        raise InvalidInputError(f"auto exclude must be a whole number of layers, got {auto_exclude!r}")
    if precision == "fp16" and (exclude or auto_exclude):
        raise InvalidInputError("layer exclusion applies to int8 only; an fp16 variant converts every layer")
    thresholds = thresholds or Thresholds()
    if not repo.is_dir():
        raise NotFoundError(f"model repository {repo} does not exist or is not a folder")
    source_path, source_version = _source(repo, name, version)
    variant = repository.validate_name(variant or f"{name}_{precision}")
    if variant == name:
        raise InvalidInputError(f"the variant needs a name other than its source's ({name!r}); pass another name")
    if variant_version is not None:
        variant_version = repository.validate_version(variant_version)
        target = repo / variant / str(variant_version)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} already exists; pick another version or pass overwrite to replace it")

    source_model = onnx.load(str(source_path))
    props = {p.key: p.value for p in source_model.metadata_props}
    meta = contract.ModelMetadata.from_props(props, source=str(source_path))
    if meta.precision not in (None, "fp32"):
        origin = meta.source_model.get("name")
        raise InvalidInputError(f"model {name!r} is already a {meta.precision} variant; make variants from the "
                                f"fp32 model{f' {origin!r}' if origin else ''} instead")
    kind, input_name = meta.kind, meta.input_name

    # Data first: a bad folder should fail before the slow part.
    if kind == contract.GENERATOR:
        calib_batches = latent_batches(meta, calibration_count, seed) if precision == "int8" else []
        eval_batches = latent_batches(meta, GENERATOR_EVAL_LATENTS, seed + 1)
        calib_desc, eval_desc, eval_paths = "seeded latents", f"{GENERATOR_EVAL_LATENTS} fixed seeded latents", []
    else:
        if precision == "int8" and calibration is None:
            raise InvalidInputError(f"an int8 {kind} needs calibration images; pass a folder of images "
                                    "(--calibration DIR)")
        calib_paths = _spread(list_images(calibration, "calibration"), calibration_count) if calibration else []
        eval_folder = held_out if held_out is not None else calibration
        if eval_folder is None:
            raise InvalidInputError(f"measuring the {precision} {kind} needs images; pass --held-out DIR "
                                    "(or --calibration DIR)")
        eval_paths = _spread(list_images(eval_folder, "held-out" if held_out is not None else "calibration"),
                             evaluation_count)
        say(f"reading {len(calib_paths)} calibration and {len(eval_paths)} evaluation images")
        calib_batches = image_batches(calib_paths, meta, calibration_size) if precision == "int8" else []
        eval_batches = image_batches(eval_paths, meta, calibration_size)
        calib_desc = "images"
        eval_desc = (f"{len(eval_paths)} held-out images" if held_out is not None else
                     f"{len(eval_paths)} calibration images (no held-out folder given)")

    started = time.perf_counter()
    quantization = None
    with tempfile.TemporaryDirectory(prefix="artforge-precision-") as tmp:
        work = Path(tmp)
        if precision == "fp16":
            say(f"converting {name} v{source_version} to fp16")
            model = to_fp16(source_model)
        else:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            prepared = work / "prepared.onnx"
            say(f"pre-processing {name} v{source_version} for quantization")
            with _quiet():
                quant_pre_process(str(source_path), str(prepared))
            nodes = [n for n in onnx.load(str(prepared), load_external_data=False).graph.node]
            known = {n.name for n in nodes}
            unknown = [n for n in exclude if n not in known]
            if unknown:
                examples = ", ".join(n.name for n in nodes if n.op_type in WEIGHTED_OPS)[:200]
                raise InvalidInputError(f"node(s) {', '.join(map(repr, unknown))} are not in {name}'s graph; "
                                        f"weighted nodes are e.g. {examples}")
            settings = Int8Settings(calibration_method, activation_type, tuple(dict.fromkeys(exclude)))
            reader = BatchReader(input_name, calib_batches)
            cache = work / "calibration.json"
            say(f"calibrating ({calibration_method}, {sum(len(b) for b in calib_batches)} {calib_desc}) and "
                "quantizing to int8 (QDQ)")
            quantized = work / "int8.onnx"
            model = quantize_int8(prepared, quantized, reader, settings, cache)
            ranking: list[dict[str, Any]] = []
            auto: list[str] = []
            if auto_exclude:
                ranking = sensitivity(prepared, quantized, calib_batches[0][:4], input_name, work, settings.exclude)
                auto = [s["node"] for s in ranking[:auto_exclude]]
                say(f"leaving the {len(auto)} most sensitive layer(s) in float: {', '.join(auto)}")
                settings = replace(settings, exclude=settings.exclude + tuple(auto))
                model = quantize_int8(prepared, work / "int8_excluded.onnx", reader, settings, cache)
            quantization = {
                "tool": "onnxruntime.quantization.quantize_static (after quant_pre_process)",
                "format": "QDQ",
                "weights": "int8, symmetric, per output channel",
                "activations": ("int8, symmetric (zero point 0)" if activation_type == "int8"
                                else "uint8, asymmetric"),
                "calibration": {"method": calibration_method, "samples": sum(len(b) for b in calib_batches),
                                "data": calib_desc,
                                "folder": None if calibration is None else str(calibration),
                                "input_shape": list(calib_batches[0].shape[1:]) if calib_batches else None},
                "excluded_nodes": list(settings.exclude), "auto_excluded": auto,
                "sensitivity": ranking[:10],
            }
        # The variant has no tile graph of its own (its folder holds model.onnx only), so it tiles as
        # models exported before tile graphs do.
        variant_meta = replace(meta, precision=precision, tile_graph={}, source_model={
            "name": name, "version": source_version, "sha256": file_sha256(source_path)})
        kept = {k: v for k, v in props.items() if not k.startswith("artforge.")}
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, {**kept, **variant_meta.to_props()})
        model.doc_string = f"artforge {kind} ({precision} variant of {name} v{source_version})"
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise ParityError(f"the {precision} variant of {name} is not a valid ONNX model: "
                              f"{str(exc).splitlines()[0]}") from exc

        say(f"measuring against the fp32 model on {eval_desc}")
        try:
            variant_session = _session(model, threads)
        except Exception as exc:  # onnxruntime's own types: all mean "cannot load"
            raise ParityError(f"ONNX Runtime (CPU) cannot load the {precision} variant of {name}: "
                              f"{str(exc).strip().splitlines()[0]}") from exc
        metrics = measure(kind, _session(source_path, threads), variant_session, input_name, eval_batches,
                          meta.labels, _truth(eval_paths, meta.labels) if kind == contract.CLASSIFIER else ())

    limits = thresholds.for_kind(kind)
    failures = judge(kind, metrics, thresholds)
    report: dict[str, Any] = {
        "model": variant, "version": None, "kind": kind, "precision": precision,
        "source": variant_meta.source_model,
        "evaluation": {"data": eval_desc, "folder": None if kind == contract.GENERATOR else
                       str(held_out if held_out is not None else calibration), "metrics": metrics},
        "thresholds": limits, "passed": not failures, "failures": failures,
        "quantization": quantization, "seconds": round(time.perf_counter() - started, 1),
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "versions": _versions(),
    }
    say("accuracy: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
    if failures:
        raise ParityError(f"the {precision} variant of {name} misses the accuracy thresholds ("
                          f"{'; '.join(failures)}), so nothing was written")

    info = {"source model": f"{name} version {source_version}", "precision": precision,
            "made by": f"artforge quantize ({'float16 converter' if precision == 'fp16' else 'QDQ quantization'})",
            "made at": report["created"], **report["versions"]}
    path = repository.write_model(repo, variant, model, variant_meta, version=variant_version, export_info=info,
                                  overwrite=overwrite)
    report["version"] = int(path.parent.name)
    write_bytes_atomic(path.parent / "accuracy.json", (json.dumps(report, indent=2) + "\n").encode())
    _rewrite_card(repo / variant / repository.CARD_FILE, _card_section(report))
    say(f"wrote {path}")
    return path, report


def _versions() -> dict[str, str]:
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
