"""artforge.export: real tiny models exported with the real exporter, run by ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from artforge import contract
from artforge.cli import build_parser
from artforge.cli.export import export_from_args
from artforge.errors import ModelLoadError, ParityError
from artforge.export import export_run, load_run, publish, repository
from artforge.export.verify import PROBABILITY_ATOL, UINT8_MAX_LEVELS, compare, parity_inputs
from artforge.models.dcgan import Generator
from artforge.models.efficientnet_lite import EfficientNetLite0
from artforge.models.style_net import TransformerNet
from artforge.training import common

LABELS = ["cubism", "impressionism", "ukiyo-e"]
PROVENANCE = {"data": "tests/data/tiny", "seed": 7, "steps": 12, "metrics": {"val_accuracy": 0.5}}


def _classifier() -> torch.nn.Module:
    # ImageNet weights (a local file from the installed package) give features
    # that vary with the input; a randomly initialised net answers the same
    # probabilities for every image, which would make parity checks vacuous.
    from artforge.models.efficientnet_lite import load_imagenet

    torch.manual_seed(0)
    try:
        net = load_imagenet()
    except FileNotFoundError:
        net = EfficientNetLite0(num_classes=1000)
    net.replace_head(len(LABELS))
    return net


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    common.save_artifact(root / "painting-style", contract.CLASSIFIER,
                         {"name": "efficientnet_lite0", "num_classes": len(LABELS)}, _classifier(), PROVENANCE,
                         labels=LABELS, input_size=96)
    common.save_artifact(root / "faces", contract.GENERATOR, {"name": "dcgan", "nz": 16, "ngf": 8},
                         Generator(nz=16, ngf=8), {"seed": 3}, latent_size=16)
    common.save_artifact(root / "mosaic", contract.STYLIZER, {"name": "transformer_net", "width": 0.125},
                         TransformerNet(width=0.125), {"seed": 5, "style": "mosaic.jpg"}, size_multiple=4)
    return {"classifier": root / "painting-style", "generator": root / "faces", "stylizer": root / "mosaic"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("repo")


@pytest.fixture(scope="module")
def exported(runs: dict[str, Path], repo: Path) -> dict[str, Path]:
    torch.set_num_threads(2)
    return {kind: export_run(run, repo, log=None) for kind, run in runs.items()}


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _metadata(path: Path) -> contract.ModelMetadata:
    model = onnx.load(str(path))
    return contract.ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, source=str(path))


def test_layout_and_default_name_version(exported: dict[str, Path], repo: Path) -> None:
    assert exported["classifier"] == repo / "painting-style" / "1" / "model.onnx"
    assert exported["generator"] == repo / "faces" / "1" / "model.onnx"
    assert exported["stylizer"] == repo / "mosaic" / "1" / "model.onnx"
    for kind, path in exported.items():
        model_dir = path.parent.parent
        assert (model_dir / "config.pbtxt").is_file() and (model_dir / "README.md").is_file()
        assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".")], "temporary files left behind"
        # Self-contained: weights inside the file, no external data next to it (a stylizer's tile graph,
        # the contract's second graph, is the one other file).
        graphs = ["model.onnx", contract.TILE_FILE] if kind == "stylizer" else ["model.onnx"]
        assert sorted(p.name for p in path.parent.iterdir()) == sorted(graphs)
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert (repo / "painting-style" / "labels.txt").read_text().splitlines() == LABELS
    assert not (repo / "faces" / "labels.txt").exists()


def test_graphs_carry_no_exporter_trace(exported: dict[str, Path]) -> None:
    # The exporter's per-node stack traces name the exporting machine's files and bloat the graph.
    root = str(Path(__file__).resolve().parent.parent)
    for path in exported.values():
        tile = path.parent / contract.TILE_FILE
        for graph in [path, *([tile] if tile.exists() else [])]:
            model = onnx.load(str(graph))
            assert not [n.name for n in model.graph.node if n.metadata_props], graph
            assert root.encode() not in graph.read_bytes(), f"{graph} names files of the exporting machine"


def test_metadata_round_trips(exported: dict[str, Path]) -> None:
    cls = _metadata(exported["classifier"])
    assert (cls.kind, cls.labels, cls.input_size) == (contract.CLASSIFIER, tuple(LABELS), 96)
    assert cls.provenance["seed"] == 7 and cls.provenance["metrics"] == {"val_accuracy": 0.5}
    gen = _metadata(exported["generator"])
    assert (gen.kind, gen.latent_size, gen.output_size) == (contract.GENERATOR, 16, 64)
    sty = _metadata(exported["stylizer"])
    assert (sty.kind, sty.size_multiple, sty.provenance["style"]) == (contract.STYLIZER, 4, "mosaic.jpg")


def test_classifier_contract_and_parity(exported: dict[str, Path], runs: dict[str, Path]) -> None:
    session = _session(exported["classifier"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("image", "tensor(uint8)", [96, 96, 3])
    assert (out.name, out.type, out.shape[1:]) == ("probabilities", "tensor(float)", [len(LABELS)])
    assert isinstance(inp.shape[0], str), "batch axis must be dynamic"
    images = np.random.default_rng(1).integers(0, 256, (5, 96, 96, 3), dtype=np.uint8)
    (probs,) = session.run(None, {"image": images})
    with torch.inference_mode():
        expected = load_run(runs["classifier"]).wrapper(torch.from_numpy(images)).numpy()
    assert probs.shape == (5, len(LABELS)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(probs - expected).max() <= PROBABILITY_ATOL
    assert np.ptp(probs[:, 0]) > 1e-3, "probabilities should depend on the image"


def test_generator_contract_and_parity(exported: dict[str, Path], runs: dict[str, Path]) -> None:
    session = _session(exported["generator"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("latent", "tensor(float)", [16])
    assert (out.name, out.type, out.shape[1:]) == ("image", "tensor(uint8)", [64, 64, 3])
    wrapper = load_run(runs["generator"]).wrapper
    for batch in (1, 3):
        z = np.random.default_rng(batch).standard_normal((batch, 16)).astype(np.float32)
        (image,) = session.run(None, {"latent": z})
        with torch.inference_mode():
            expected = wrapper(torch.from_numpy(z)).numpy()
        assert image.shape == (batch, 64, 64, 3) and image.dtype == np.uint8
        assert np.abs(image.astype(int) - expected.astype(int)).max() <= UINT8_MAX_LEVELS


def test_stylizer_accepts_any_size_and_batch(exported: dict[str, Path], runs: dict[str, Path]) -> None:
    session = _session(exported["stylizer"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, out.name, out.type) == ("image", "tensor(uint8)", "stylized", "tensor(uint8)")
    assert all(isinstance(d, str) for d in inp.shape[:3]) and inp.shape[3] == 3
    wrapper = load_run(runs["stylizer"]).wrapper
    rng = np.random.default_rng(2)
    for shape in ((1, 32, 48, 3), (3, 40, 24, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        (styled,) = session.run(None, {"image": image})
        with torch.inference_mode():
            expected = wrapper(torch.from_numpy(image)).numpy()
        assert styled.shape == shape and styled.dtype == np.uint8
        off = (np.abs(styled.astype(int) - expected.astype(int)) > UINT8_MAX_LEVELS).any(axis=-1)
        assert off.mean() <= 0.001


def test_config_pbtxt(exported: dict[str, Path], repo: Path) -> None:
    text = (repo / "painting-style" / "config.pbtxt").read_text()
    for needle in ('name: "painting-style"', 'platform: "onnxruntime_onnx"', "max_batch_size: 64",
                   "data_type: TYPE_UINT8", "data_type: TYPE_FP32", "dims: [ 96, 96, 3 ]", "dims: [ 3 ]",
                   'label_filename: "labels.txt"', "dynamic_batching { }"):
        assert needle in text
    styl = (repo / "mosaic" / "config.pbtxt").read_text()
    assert "dims: [ -1, -1, 3 ]" in styl and "dynamic_batching" not in styl and "max_batch_size: 8" in styl

    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    configs = {}
    for name in ("painting-style", "faces", "mosaic"):
        configs[name] = text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    cls = configs["painting-style"]
    assert (cls.name, cls.platform, cls.max_batch_size) == ("painting-style", "onnxruntime_onnx", 64)
    assert cls.input[0].data_type == model_config_pb2.TYPE_UINT8 and list(cls.input[0].dims) == [96, 96, 3]
    assert cls.output[0].data_type == model_config_pb2.TYPE_FP32 and cls.output[0].label_filename == "labels.txt"
    assert cls.HasField("dynamic_batching") and cls.version_policy.HasField("latest")
    gen = configs["faces"]
    assert gen.input[0].data_type == model_config_pb2.TYPE_FP32 and list(gen.output[0].dims) == [64, 64, 3]
    sty = configs["mosaic"]
    assert list(sty.input[0].dims) == [-1, -1, 3] and sty.output[0].name == "stylized"
    assert not sty.HasField("dynamic_batching")


def test_model_card(exported: dict[str, Path], repo: Path) -> None:
    card = (repo / "painting-style" / "README.md").read_text()
    for needle in ("# painting-style", "classifier", "`image`", "uint8", "ukiyo-e", "tests/data/tiny",
                   "val_accuracy", "## Verification", "passed", "CPUExecutionProvider", "opset", "sha256"):
        assert needle in card
    assert "multiples of 4" in (repo / "mosaic" / "README.md").read_text()


def test_versions_increment_and_explicit_versions(exported: dict[str, Path], runs: dict[str, Path],
                                                  repo: Path) -> None:
    second = export_run(runs["generator"], repo, log=None)
    assert second == repo / "faces" / "2" / "model.onnx"
    assert repository.next_version(repo, "faces") == 3
    with pytest.raises(FileExistsError, match="already exists"):
        export_run(runs["generator"], repo, version=1, log=None)
    before = exported["generator"].read_bytes()
    again = export_run(runs["generator"], repo, version=1, overwrite=True, log=None)
    assert again == exported["generator"] and again.stat().st_size == len(before)
    assert repository.existing_versions(repo / "faces") == [1, 2]


def test_cli_pair(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["export", str(runs["generator"]), "--repo", str(tmp_path), "--name", "gen.v2",
                                      "--version", "7"])
    path = export_from_args(args)
    assert path == tmp_path / "gen.v2" / "7" / "model.onnx" and path.is_file()
    printed = capsys.readouterr().out
    assert "exporting generator" in printed and "largest difference" in printed


def test_export_sets_the_accuracy_budget(runs: dict[str, Path], tmp_path: Path) -> None:
    from artforge import accuracy
    from artforge.errors import InvalidInputError

    bad = build_parser().parse_args(["export", str(runs["generator"]), "--repo", str(tmp_path), "--budget", "mae=2"])
    with pytest.raises(InvalidInputError, match="'mae=2' is not KEY=VALUE"):
        export_from_args(bad)
    assert not (tmp_path / runs["generator"].name).exists()  # refused before the slow export
    args = build_parser().parse_args(["export", str(runs["generator"]), "--repo", str(tmp_path), "--name", "gen",
                                      "--budget", "max-mae=1.5"])
    export_from_args(args)
    assert accuracy.read_overrides(tmp_path / "gen") == {"max_mae": 1.5}
    assert accuracy.read_budget(tmp_path / "gen").for_kind("generator") == {"max_mae": 1.5}


def _perturbed(path: Path) -> onnx.ModelProto:
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT and np.prod(init.dims) >= 64:
            values = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array((values * 1.1 + 0.05).astype(np.float32), init.name))
    return model


@pytest.mark.parametrize("kind", ["classifier", "stylizer"])
def test_disagreeing_model_is_refused(kind: str, exported: dict[str, Path], runs: dict[str, Path],
                                      tmp_path: Path) -> None:
    loaded = load_run(runs[kind])
    broken = _perturbed(exported[kind])
    with pytest.raises(ParityError, match="disagrees with PyTorch.*nothing was written"):
        publish(loaded.wrapper, broken, loaded.metadata, tmp_path / "repo", "broken", log=None)
    assert not (tmp_path / "repo").exists()
    # The same check passes the untouched export: the refusal is about the perturbation.
    report = compare(loaded.wrapper, onnx.load(str(exported[kind])), kind,
                     parity_inputs(kind, loaded.metadata))
    assert report.passed


def test_incompatible_shared_files_are_refused(exported: dict[str, Path], repo: Path) -> None:
    stylizer = onnx.load(str(exported["stylizer"]))
    meta = _metadata(exported["stylizer"])
    with pytest.raises(ValueError, match="different config.pbtxt"):
        repository.write_model(repo, "painting-style", stylizer, meta)
    assert repository.existing_versions(repo / "painting-style") == [1]


def test_clear_errors(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_run(tmp_path / "nope", tmp_path / "repo", log=None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no trained model"):
        export_run(tmp_path / "empty", tmp_path / "repo", log=None)
    with pytest.raises(ValueError, match="not allowed"):
        export_run(runs["generator"], tmp_path / "repo", name="a/b", log=None)
    with pytest.raises(ValueError, match="not allowed"):
        export_run(runs["generator"], tmp_path / "repo", version=0, log=None)
    with pytest.raises(ValueError, match="opset 11 is not supported"):
        export_run(runs["generator"], tmp_path / "repo", opset=11, log=None)
    common.save_artifact(tmp_path / "odd", "classifier", {"name": "resnet50"}, torch.nn.Linear(2, 2), {})
    with pytest.raises(ValueError, match="unknown architecture 'resnet50'"):
        export_run(tmp_path / "odd", tmp_path / "repo", log=None)
    common.save_artifact(tmp_path / "seg", "segmenter", {"name": "unet"}, torch.nn.Linear(2, 2), {})
    with pytest.raises(ModelLoadError, match="kind 'segmenter'"):
        export_run(tmp_path / "seg", tmp_path / "repo", log=None)
    common.save_artifact(tmp_path / "nolabels", "generator", {"name": "dcgan", "nz": 8, "ngf": 8},
                         TransformerNet(width=0.125), {})
    with pytest.raises(ModelLoadError, match="do not fit"):
        export_run(tmp_path / "nolabels", tmp_path / "repo", log=None)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="cannot be read"):
        export_run(tmp_path / "junk", tmp_path / "repo", log=None)
    assert not (tmp_path / "repo").exists()


def test_parity_report_is_json_serialisable(exported: dict[str, Path], runs: dict[str, Path]) -> None:
    loaded = load_run(runs["generator"])
    report = compare(loaded.wrapper, onnx.load(str(exported["generator"])), "generator",
                     parity_inputs("generator", loaded.metadata))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] and [c["input_shape"][0] for c in data["cases"]] == [1, 4, 1]
