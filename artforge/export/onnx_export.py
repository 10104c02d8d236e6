"""`artforge export RUN`: a training run's model.pt -> a verified ONNX model in a repository.

Steps: load RUN/model.pt, rebuild the network, wrap it behind the artifact
contract, export with the torch.export-based ("dynamo") ONNX exporter, attach
the contract metadata, verify (checker + parity with PyTorch under ONNX
Runtime), and only then write the Triton-style repository entry.

The legacy TorchScript exporter is deprecated in torch 2.9+, so only the
dynamo path is used; it needs onnxscript and emits opset 18 or newer.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnx
import torch

from artforge import contract
from artforge.errors import ModelLoadError, WrongKindError
from artforge.export import repository
from artforge.export.options import DEFAULT_OPSET, MIN_OPSET
from artforge.export.verify import verify_model, verify_tile_graph
from artforge.export.wrappers import ContractWrapper, StylizerTileWrapper, wrap
from artforge.training import run_record
from artforge.training.configs import META_STYLE_KIND

# Used when a classifier artifact does not record its input size (EfficientNet-Lite0's native size).
DEFAULT_INPUT_SIZE = 224
# Example batch for tracing: not 1, so torch.export does not specialise the batch axis.
_EXAMPLE_BATCH = 2
_EXAMPLE_SIDE = 64

Log = Callable[[str], None]


@dataclass
class LoadedRun:
    """A training artifact rebuilt as a contract wrapper, ready to export."""

    run: Path
    wrapper: ContractWrapper
    metadata: contract.ModelMetadata
    example: torch.Tensor
    #: a stylizer's tile graph wrapper (contract.TILE_IO), None for other kinds
    tile_wrapper: StylizerTileWrapper | None = None

    @property
    def kind(self) -> str:
        return self.metadata.kind


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_artifact(run: Path) -> dict[str, Any]:
    from artforge.training import common

    if not run.exists():
        raise FileNotFoundError(f"run folder {run} does not exist; pass the --out folder of a training run")
    try:
        return common.load_artifact(run)
    except (FileNotFoundError, ValueError):
        raise
    except Exception as exc:  # torch.load / unpickling failures have many types; all mean "unreadable file"
        raise ModelLoadError(f"{run / common.ARTIFACT if run.is_dir() else run} cannot be read as a torch "
                             f"checkpoint ({_first_line(exc)})") from exc


def load_run(run: Path | str) -> LoadedRun:
    """Rebuild RUN/model.pt's network behind the contract, in eval mode, with its metadata."""
    from artforge import models

    run = Path(run)
    artifact = _read_artifact(run)
    source = run / "model.pt" if run.is_dir() else run
    kind, arch = artifact["kind"], artifact["arch"]
    if kind == META_STYLE_KIND:
        # A meta-learned initialisation reproduces its input, re-rendered: serving it would look like a broken
        # stylizer, so it is refused with the step that makes a stylizer of it.
        raise WrongKindError(f"{source} is a meta-learned style initialisation, not a stylizer; adapt it to a style "
                             f"first (artforge adapt-style STYLE_IMAGE --init {run} --out RUN) and export that run")
    if kind not in contract.KINDS:
        raise ModelLoadError(f"{source} holds a model of kind {kind!r}; expected one of {', '.join(contract.KINDS)}")
    if not isinstance(arch, dict):
        raise ModelLoadError(f"{source} has no architecture description (arch must be a dict with a 'name')")
    net = models.build(kind, arch)  # ValueError naming the unknown architecture
    try:
        net.load_state_dict(artifact["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{source}: the saved weights do not fit architecture {arch!r} "
                             f"({_first_line(exc)})") from exc
    provenance = artifact.get("provenance") or {}
    if not isinstance(provenance, dict):
        provenance = {"note": str(provenance)}

    if kind == contract.CLASSIFIER:
        size = int(artifact.get("input_size") or DEFAULT_INPUT_SIZE)
        wrapper = wrap(kind, net, input_size=size)
        example = torch.randint(0, 256, (_EXAMPLE_BATCH, size, size, 3), dtype=torch.uint8)
        labels = artifact.get("labels")
        if not labels or not all(isinstance(x, str) for x in labels):
            raise ModelLoadError(f"{source} has no class labels (a list of strings); a classifier needs them")
        with torch.inference_mode():
            classes = wrapper(example[:1]).shape[1]
        if len(labels) != classes:
            raise ModelLoadError(f"{source} lists {len(labels)} labels but its network outputs {classes} classes")
        metadata = contract.ModelMetadata(kind=kind, labels=tuple(labels), input_size=size, provenance=provenance)
    elif kind == contract.GENERATOR:
        latent = int(artifact.get("latent_size") or getattr(net, "nz", 0) or arch.get("nz", 0))
        wrapper = wrap(kind, net, latent_size=latent)
        example = torch.randn(_EXAMPLE_BATCH, latent)
        with torch.inference_mode():
            out = wrapper(example[:1])
        if out.shape[1] != out.shape[2]:
            raise ModelLoadError(f"{source}: the generator's output is {out.shape[1]}x{out.shape[2]}; "
                                 "the contract describes square images")
        metadata = contract.ModelMetadata(kind=kind, latent_size=latent, output_size=int(out.shape[1]),
                                          provenance=provenance)
    else:
        from artforge.models.style_net import MIN_SIZE, SIZE_MULTIPLE

        multiple = int(artifact.get("size_multiple") or SIZE_MULTIPLE)
        wrapper = wrap(kind, net, size_multiple=multiple)
        side = -(-_EXAMPLE_SIDE // multiple) * multiple
        example = torch.randint(0, 256, (_EXAMPLE_BATCH, side, side, 3), dtype=torch.uint8)
        metadata = contract.ModelMetadata(kind=kind, size_multiple=multiple, min_size=max(MIN_SIZE, multiple),
                                          provenance=provenance)
        tile_wrapper = StylizerTileWrapper(net, multiple)
        return LoadedRun(run=run, wrapper=wrapper.eval(), metadata=metadata, example=example,
                         tile_wrapper=tile_wrapper.eval())
    return LoadedRun(run=run, wrapper=wrapper.eval(), metadata=metadata, example=example)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # The exporter prints progress lines, FutureWarnings and a warning per
    # missing torchvision op; none of it helps an artforge user.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _dynamic_shapes(loaded: LoadedRun, tile: bool = False) -> dict[str, dict[int, Any]]:
    from torch.export import Dim

    batch = Dim("batch", min=1)
    axes: dict[int, Any] = {0: batch}
    if loaded.kind == contract.STYLIZER:
        # H and W as multiples of size_multiple: torch.export then proves the
        # output has the input's size. A minimum of 2 units keeps reflection
        # padding valid after the downsampling.
        m = loaded.metadata.size_multiple
        axes[1] = m * Dim("height_units", min=2) if m > 1 else Dim("height", min=2)
        axes[2] = m * Dim("width_units", min=2) if m > 1 else Dim("width", min=2)
    if tile:  # the tile graph's other inputs share the image's batch axis
        return {name: axes if i == 0 else {0: batch} for i, name in enumerate(contract.TILE_IO[0])}
    return {loaded.wrapper.input_names[0]: axes}


def _rename_dims(model: onnx.ModelProto, kind: str) -> None:
    """Give the dynamic axes plain names (batch, height, width) across the graph."""
    names = ["batch", "height", "width"] if kind == contract.STYLIZER else ["batch"]
    mapping = {}
    for value in model.graph.input:  # the tile graph's extra inputs name only the batch axis
        for dim, new in zip(value.type.tensor_type.shape.dim, names, strict=False):
            if dim.dim_param and dim.dim_param not in mapping:
                mapping[dim.dim_param] = new
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in mapping:
                dim.dim_param = mapping[dim.dim_param]


def _check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is not supported; use {MIN_OPSET}..{onnx.defs.onnx_opset_version()}")


def _tile_example(loaded: LoadedRun) -> tuple[torch.Tensor, ...]:
    assert loaded.tile_wrapper is not None
    count, channels = loaded.example.shape[0], loaded.tile_wrapper.channels
    side = loaded.example.shape[1]
    return (loaded.example, torch.ones((count, 2, channels)), torch.zeros((count, 1)),
            torch.tensor([[0, side, 0, side]] * count, dtype=torch.int64))


def export_onnx(loaded: LoadedRun, opset: int = DEFAULT_OPSET, tile: bool = False) -> onnx.ModelProto:
    """Trace the wrapper (with `tile`, the stylizer's tile graph) with dynamic axes and return the
    constant-folded, self-contained ONNX model."""
    _check_opset(opset)
    wrapper: torch.nn.Module = loaded.wrapper
    example: tuple[torch.Tensor, ...] = (loaded.example,)
    names = (loaded.wrapper.input_names, loaded.wrapper.output_names)
    if tile:
        if loaded.tile_wrapper is None:
            raise ModelLoadError(f"the {loaded.kind} in {loaded.run} has no tile graph (only stylizers do)")
        wrapper, example, names = loaded.tile_wrapper, _tile_example(loaded), contract.TILE_IO
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                wrapper, example, dynamo=True, opset_version=opset,
                input_names=list(names[0]), output_names=list(names[1]),
                dynamic_shapes=_dynamic_shapes(loaded, tile),
                optimize=True,  # onnxscript's optimizer: constant folding, batch-norm fusion
                external_data=False, verbose=False)
    except Exception as exc:  # the exporter raises many internal types; the first line names the problem
        raise ModelLoadError(f"the {loaded.kind} in {loaded.run} could not be exported to ONNX: "
                             f"{_first_line(exc)}") from exc
    if program is None:  # only when asked not to export, which this call never does
        raise ModelLoadError(f"the ONNX exporter returned nothing for the {loaded.kind} in {loaded.run}")
    model = program.model_proto
    _rename_dims(model, loaded.kind)
    _drop_node_traces(model.graph)
    model.doc_string = f"artforge {loaded.kind}{' tile graph' if tile else ''}"
    return model


def _drop_node_traces(graph: onnx.GraphProto) -> None:
    """Remove the exporter's per-node trace (Python stack, FX node, module path) from `graph` and its subgraphs.

    It names files on the machine that exported (absolute paths) and is a third
    of a stylizer's tile graph; nothing reads it at inference. The model's own
    metadata_props (the artifact contract) are not node metadata and stay.
    """
    for node in graph.node:
        del node.metadata_props[:]
        for attribute in node.attribute:
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                _drop_node_traces(subgraph)


def with_tile_graph(metadata: contract.ModelMetadata, tile_model: onnx.ModelProto,
                    layers: list[int]) -> contract.ModelMetadata:
    """`metadata` naming `tile_model` as its tile graph (its sha256 binds the two files together)."""
    import hashlib
    from dataclasses import replace

    digest = hashlib.sha256(tile_model.SerializeToString()).hexdigest()
    return replace(metadata, tile_graph={"file": contract.TILE_FILE, "sha256": digest, "channels": sum(layers),
                                         "layers": layers})


def set_metadata(model: onnx.ModelProto, metadata: contract.ModelMetadata) -> None:
    """Replace artforge's metadata_props with `metadata` (keeps unrelated keys)."""
    props = metadata.to_props()
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith("artforge.")]
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {**dict(kept), **props})


def _versions() -> dict[str, str]:
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def publish(wrapper: torch.nn.Module, model: onnx.ModelProto, metadata: contract.ModelMetadata, repo: Path | str,
            name: str, *, version: int | None = None, verify: bool = True, overwrite: bool = False,
            export_info: dict[str, Any] | None = None, log: Log | None = print,
            tile: tuple[StylizerTileWrapper, onnx.ModelProto] | None = None) -> Path:
    """Verify `model` against `wrapper` (and a stylizer's tile graph against its wrapper), then write them to
    the repository; nothing is written if either disagrees."""
    from artforge.export.verify import check_graph, check_tile_graph

    if tile is not None:
        metadata = with_tile_graph(metadata, tile[1], [layer.channels for layer in tile[0].layers])
    set_metadata(model, metadata)
    if verify:
        report = verify_model(wrapper, model, metadata, log=log).to_dict()
        if tile is not None:
            report["tile_graph"] = verify_tile_graph(wrapper, tile[0], tile[1], metadata, log=log).to_dict()
    else:
        check_graph(model, metadata.kind)
        if tile is not None:
            check_tile_graph(tile[1])
        report = None
    extra = {contract.TILE_FILE: tile[1]} if tile is not None else {}
    return repository.write_model(Path(repo), name, model, metadata, version=version, parity=report,
                                  export_info=export_info, overwrite=overwrite, extra_models=extra)


def _display_path(path: Path) -> str:
    """Relative to the working folder when under it: cards should not carry one machine's absolute paths."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def export_run(run: Path | str, repo: Path | str, name: str | None = None, version: int | None = None,
               opset: int = DEFAULT_OPSET, verify: bool = True, overwrite: bool = False,
               log: Log | None = print) -> Path:
    """Export RUN/model.pt into <repo>/<name>/<version>/model.onnx and return that path.

    name defaults to the run folder's name, version to one more than the
    highest existing version. The export is verified before anything is written.
    """
    run = Path(run).resolve() if Path(run).exists() else Path(run)
    # RUN may also name the model.pt file itself; the model is still named after its run folder.
    default_name = run.parent.name if run.is_file() else run.name
    name = repository.validate_name(name if name is not None else default_name)
    # Fail on bad options before the slow part, not after it.
    _check_opset(opset)
    if version is not None:
        version = repository.validate_version(version)
        target = Path(repo) / name / str(version)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} already exists; pick another version or pass overwrite to replace it")
    loaded = load_run(run)
    if log is not None:
        log(f"exporting {loaded.kind} from {run} (opset {opset})")
        training = run_record.summary(loaded.metadata.provenance)
        if training:
            log(f"  {training}")
    warning = run_record.shortfall(loaded.metadata.provenance)
    if warning:
        # On stderr even when quiet: the card says it too, but nobody reads a card at export time.
        print(f"artforge: warning: {warning}", file=sys.stderr, flush=True)
    model = export_onnx(loaded, opset)
    tile = None
    if loaded.tile_wrapper is not None:
        tile = (loaded.tile_wrapper, export_onnx(loaded, opset, tile=True))
    info = {"source run": _display_path(Path(run)), "exported at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "opset": opset, "exporter": "torch.onnx.export(dynamo=True)", **_versions()}
    path = publish(loaded.wrapper, model, loaded.metadata, repo, name, version=version, verify=verify,
                   overwrite=overwrite, export_info=info, log=log, tile=tile)
    return path
