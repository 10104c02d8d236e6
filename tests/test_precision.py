"""fp16 / int8 variants of zoo models: real conversions, real calibration, real ONNX Runtime sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from artforge import contract
from artforge.errors import InvalidInputError, NotFoundError, ParityError
from artforge.export.options import Thresholds, parse_exclude
from artforge.export.precision import make_variant
from artforge.runtime import Repository, read_image, write_image

ZOO = Path(__file__).resolve().parents[1] / "zoo" / "repository"
pytestmark = pytest.mark.skipif(not (ZOO / "swirl" / "1" / "model.onnx").is_file(), reason="the zoo is not built")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from artforge.zoo.datasets import content_images

    folder = tmp_path_factory.mktemp("calibration")
    content_images(folder, seed=3, count=16, size=96, progress=False)
    return folder


@pytest.fixture
def repo(zoo_copy: Callable[..., Path]) -> Path:
    return zoo_copy("art_style", "swirl", "abstract_dcgan")


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_fp16_stylizer_keeps_the_contract_and_loads(repo: Path, images: Path) -> None:
    path, report = make_variant(repo, "swirl", "fp16", held_out=images, calibration_size=64, threads=2, log=None)
    assert path == repo / "swirl_fp16" / "1" / "model.onnx"
    model = Repository(repo).load("swirl_fp16", backend="onnxruntime", threads=2)
    assert [s.dtype for s in model.inputs + model.outputs] == [np.dtype(np.uint8)] * 2
    assert model.metadata.precision == "fp16"
    assert model.metadata.source_model["sha256"] == report["source"]["sha256"]
    assert model.metadata.source_model["name"] == "swirl" and model.metadata.source_model["version"] == 1
    assert model.stylize(np.full((30, 41, 3), 90, np.uint8)).shape == (30, 41, 3)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in onnx.load(str(path)).graph.initializer)
    assert report["passed"] and report["evaluation"]["metrics"]["psnr_db"] > 40
    saved = json.loads((path.parent / "accuracy.json").read_text())
    assert saved["version"] == 1 and saved["precision"] == "fp16"
    card = (repo / "swirl_fp16" / "README.md").read_text()
    assert "## Accuracy against the fp32 model" in card and "not checked" not in card
    # Same serving config as the source apart from the name.
    assert (repo / "swirl_fp16" / "config.pbtxt").read_text().replace("swirl_fp16", "swirl") == \
        (repo / "swirl" / "config.pbtxt").read_text()


def test_int8_classifier_is_qdq_and_agrees(repo: Path, images: Path, tmp_path: Path) -> None:
    # Agreement is measured on what the classifier is asked about (the demo's photos and their swirl
    # renderings), not on the 96 px calibration crops: two of those (a night sky) are near-ties for the
    # fp32 model itself (swirl 0.58 vs photo 0.42), which any quantization flips.
    held_out = tmp_path / "held_out"
    held_out.mkdir()
    swirl = Repository(repo).stylizer("swirl", backend="onnxruntime", threads=2)
    for sample in sorted((ZOO.parent / "samples").glob("*.jpg")):
        photo = read_image(sample)[..., :3]
        write_image(held_out / sample.name, photo)
        write_image(held_out / f"swirl_{sample.name}", swirl.stylize(photo))
    path, report = make_variant(repo, "art_style", "int8", calibration=images, held_out=held_out, threads=2,
                                log=None)
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(path)
    assert report["quantization"]["format"] == "QDQ"
    metrics = report["evaluation"]["metrics"]
    assert metrics["images"] == 12 and metrics["top1_agreement"] >= Thresholds().min_top1_agreement
    assert (repo / "art_style_int8" / "labels.txt").read_text() == (repo / "art_style" / "labels.txt").read_text()
    assert _props(path)[contract.KEY_PRECISION] == "int8"
    model = Repository(repo).load("art_style_int8", backend="onnxruntime", threads=2)
    assert model.probabilities([np.full((50, 60, 3), 200, np.uint8)]).dtype == np.float32


def test_int8_stylizer_psnr_and_exclusion_by_name(repo: Path, images: Path) -> None:
    path, report = make_variant(repo, "swirl", "int8", calibration=images, calibration_size=64, exclude=["node_conv2d"],
                                threads=2, log=None)
    assert report["evaluation"]["metrics"]["psnr_db"] >= Thresholds().min_psnr
    assert report["quantization"]["excluded_nodes"] == ["node_conv2d"]
    graph = onnx.load(str(path)).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    first = next(node for node in graph.node if node.name == "node_conv2d")
    assert producers.get(first.input[1]) != "DequantizeLinear"  # its weights stayed float
    others = [node for node in graph.node if node.op_type == "Conv" and node.name != "node_conv2d"]
    assert all(producers.get(node.input[1]) == "DequantizeLinear" for node in others)


def test_int8_generator_with_auto_exclusion(repo: Path) -> None:
    # Unsigned activations suit the generator's post-ReLU tensors: with its two most sensitive layers in float
    # the shipped generator is 1.45 levels off fp32, inside the 2-level default (one layer: 2.2; docs/precision.md).
    path, report = make_variant(repo, "abstract_dcgan", "int8", activation_type="uint8", auto_exclude=2, log=None)
    q = report["quantization"]
    assert len(q["auto_excluded"]) == 2 and q["auto_excluded"] == q["excluded_nodes"]
    assert q["sensitivity"][0]["node"] == q["auto_excluded"][0]
    assert report["evaluation"]["metrics"]["mae_levels"] <= Thresholds().max_mae
    assert Repository(repo).load("abstract_dcgan_int8", threads=2).generate(2, seed=1)[0].shape == (64, 64, 3)


def test_a_variant_below_threshold_leaves_nothing(repo: Path) -> None:
    before = sorted(p.relative_to(repo) for p in repo.rglob("*"))
    with pytest.raises(ParityError, match="nothing was written"):
        make_variant(repo, "abstract_dcgan", "int8", calibration_count=16, thresholds=Thresholds(max_mae=0.0),
                     log=None)
    assert sorted(p.relative_to(repo) for p in repo.rglob("*")) == before


def test_clear_errors(repo: Path, images: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    cases = [
        (NotFoundError, "calibration folder", dict(name="swirl", precision="int8", calibration=tmp_path / "nope")),
        (InvalidInputError, "holds no images", dict(name="swirl", precision="int8", calibration=empty)),
        (NotFoundError, "no model named 'nope'", dict(name="nope", precision="fp16", held_out=images)),
        (InvalidInputError, "precision 'int4'", dict(name="swirl", precision="int4", calibration=images)),
        (InvalidInputError, "needs calibration images", dict(name="art_style", precision="int8")),
        (InvalidInputError, "calibration method", dict(name="swirl", precision="int8", calibration=images,
                                                       calibration_method="magic")),
        (InvalidInputError, "'no_such_node'", dict(name="abstract_dcgan", precision="int8", exclude=["no_such_node"])),
    ]
    for error, text, kwargs in cases:
        with pytest.raises(error, match=text):
            make_variant(repo, log=None, **kwargs)
    with pytest.raises(InvalidInputError, match="auto:N"):
        parse_exclude("auto:x")
    assert parse_exclude("a, b,auto:2") == (("a", "b"), 2)
    # A variant is not made from a variant.
    make_variant(repo, "abstract_dcgan", "fp16", log=None)
    with pytest.raises(InvalidInputError, match="already a fp16 variant"):
        make_variant(repo, "abstract_dcgan_fp16", "int8", log=None)


def test_cli_round_trip_without_torch(repo: Path) -> None:
    script = ("import sys; from artforge.cli import main; rc = main(sys.argv[1:]); "
              "print('torch imported:', 'torch' in sys.modules); sys.exit(rc)")
    ok = subprocess.run([sys.executable, "-c", script, "quantize", "abstract_dcgan", "--repo", str(repo),
                         "--precision", "fp16", "--name", "dreams16"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "fp16 variant:" in ok.stdout and "torch imported: False" in ok.stdout
    assert (repo / "dreams16" / "1" / "accuracy.json").is_file()
    bad = subprocess.run([sys.executable, "-c", script, "quantize", "abstract_dcgan", "--repo", str(repo),
                          "--precision", "int8", "--exclude", "auto:0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "auto:N" in bad.stderr


def test_fp16_variant_runs_on_openvino_under_the_contract_names(repo: Path) -> None:
    pytest.importorskip("openvino", reason="needs the [openvino] extra")
    make_variant(repo, "abstract_dcgan", "fp16", log=None)
    loaded = Repository(repo)
    fp16 = loaded.load("abstract_dcgan_fp16", backend="openvino:fp32")
    assert [spec.name for spec in fp16.inputs] == ["latent"]
    reference = loaded.load("abstract_dcgan", backend="onnxruntime").generate(2, seed=0)
    got = fp16.generate(2, seed=0)
    assert np.abs(np.stack(got).astype(int) - np.stack(reference)).mean() < 1.0
