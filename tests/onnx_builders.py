"""Tiny contract-conforming ONNX graphs for tests (onnx is a test/export dependency only).

    classifier: image uint8 [N,S,S,3] -> mean colour -> MatMul -> Softmax -> probabilities [N,K]
                (labels red, green, blue: a pure colour classifies as itself)
    generator:  latent float32 [N,Z] -> MatMul -> Sigmoid*255 -> image uint8 [N,side,side,3]
    stylizer:   image uint8 [N,H,W,3] -> SpaceToDepth/DepthToSpace (H, W must be multiples of
                `multiple`, like a real strided network) -> 255 - x -> stylized
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from artforge.contract import CLASSIFIER, GENERATOR, STYLIZER, ModelMetadata

OPSET = 17
COLOURS = ("red", "green", "blue")


def _model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
           initializers: list[onnx.TensorProto], props: Mapping[str, str], name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="artforge-tests")
    model.ir_version = 8  # old enough for any onnxruntime that supports opset 17
    helper.set_model_props(model, dict(props))
    onnx.checker.check_model(model)
    return model


def classifier_model(labels: tuple[str, ...] = COLOURS, size: int = 8, batch: int | str = "N",
                     props: Mapping[str, str] | None = None) -> onnx.ModelProto:
    weights = np.zeros((3, len(labels)), dtype=np.float32)
    for channel in range(min(3, len(labels))):
        weights[channel, channel] = 0.05  # a 255 channel gives a logit of 12.75: a clear winner
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["mean", "weights"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    meta = ModelMetadata(CLASSIFIER, labels=labels, input_size=size, provenance={"test": True})
    return _model(nodes, [helper.make_tensor_value_info("image", TensorProto.UINT8, [batch, size, size, 3])],
                  [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, len(labels)])],
                  [numpy_helper.from_array(weights, "weights")],
                  meta.to_props() if props is None else props, "classifier")


def generator_model(latent: int = 4, side: int = 4, batch: int | str = "N",
                    props: Mapping[str, str] | None = None) -> onnx.ModelProto:
    weights = np.random.default_rng(0).standard_normal((latent, side * side * 3)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["latent", "weights"], ["flat"]),
        helper.make_node("Sigmoid", ["flat"], ["unit"]),
        helper.make_node("Mul", ["unit", "scale"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["bytes"], to=TensorProto.UINT8),
        helper.make_node("Reshape", ["bytes", "shape"], ["image"]),
    ]
    meta = ModelMetadata(GENERATOR, latent_size=latent, output_size=side)
    return _model(nodes, [helper.make_tensor_value_info("latent", TensorProto.FLOAT, [batch, latent])],
                  [helper.make_tensor_value_info("image", TensorProto.UINT8, [batch, side, side, 3])],
                  [numpy_helper.from_array(weights, "weights"),
                   numpy_helper.from_array(np.array(255, dtype=np.float32), "scale"),
                   numpy_helper.from_array(np.array([-1, side, side, 3], dtype=np.int64), "shape")],
                  meta.to_props() if props is None else props, "generator")


def stylizer_model(multiple: int = 4, batch: int | str = "N", props: Mapping[str, str] | None = None,
                   output_name: str = "stylized") -> onnx.ModelProto:
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("SpaceToDepth", ["nchw"], ["deep"], blocksize=multiple),
        helper.make_node("DepthToSpace", ["deep"], ["wide"], blocksize=multiple, mode="DCR"),
        helper.make_node("Transpose", ["wide"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Sub", ["white", "nhwc"], ["inverted"]),
        helper.make_node("Cast", ["inverted"], [output_name], to=TensorProto.UINT8),
    ]
    meta = ModelMetadata(STYLIZER, size_multiple=multiple)
    return _model(nodes, [helper.make_tensor_value_info("image", TensorProto.UINT8, [batch, "H", "W", 3])],
                  [helper.make_tensor_value_info(output_name, TensorProto.UINT8, [batch, "H", "W", 3])],
                  [numpy_helper.from_array(np.array(255, dtype=np.float32), "white")],
                  meta.to_props() if props is None else props, "stylizer")


def save(model: onnx.ModelProto, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def add_model(repo: Path, name: str, model: onnx.ModelProto | bytes, version: int = 1,
              config: str | None = None) -> Path:
    """Write <repo>/<name>/<version>/model.onnx (bytes are written as-is, for malformed files)."""
    path = Path(repo) / name / str(version) / "model.onnx"
    if isinstance(model, bytes):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(model)
    else:
        save(model, path)
    if config is not None:
        (Path(repo) / name / "config.pbtxt").write_text(config)
    return path


def standard_repository(root: Path) -> Path:
    """A repository with one model of each kind: colours (v1, v2), dreams, invert."""
    add_model(root, "colours", classifier_model(), 1)
    add_model(root, "colours", classifier_model(), 2, config='name: "colours"\nmax_batch_size: 8\n')
    add_model(root, "dreams", generator_model(), 1)
    add_model(root, "invert", stylizer_model(), 1)
    return Path(root)
