"""The OpenVINO backend on the shipped zoo models, side by side with ONNX Runtime."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from onnx_builders import classifier_model, save, stylizer_model

from artforge.errors import InvalidInputError, ModelLoadError
from artforge.runtime import Repository
from artforge.runtime.backends import OnnxRuntimeBackend, create_backend, registered_backends
from artforge.runtime.backends import openvino_backend as ovb
from artforge.runtime.models import Classifier, Generator, Stylizer

ov = pytest.importorskip("openvino", reason="needs the openvino package (the [openvino] extra)")

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "zoo" / "repository"
SAMPLES = sorted((ROOT / "zoo" / "samples").glob("*.jpg"))


@pytest.fixture(scope="module")
def zoo() -> Repository:
    return Repository(ZOO)


def _pair(zoo: Repository, name: str) -> tuple:
    return (zoo.load(name, backend="onnxruntime:cpu", threads=2), zoo.load(name, backend="openvino", threads=2))


def test_registered_and_probed() -> None:
    assert "openvino" in registered_backends()
    probe = ovb.OpenVinoBackend.probe()
    assert probe is not None and probe.option == "fp32" and probe.score == 15


def test_stylizer_matches_onnxruntime(zoo: Repository) -> None:
    reference, model = _pair(zoo, "swirl")
    assert isinstance(model, Stylizer) and model.backend_name == "openvino:fp32"
    assert "asked for" in model.backend.reason
    images = [str(p) for p in SAMPLES[:2]]
    for want, got in zip(reference.stylize_batch(images, max_side=160), model.stylize_batch(images, max_side=160),
                         strict=True):
        assert want.shape == got.shape
        diff = np.abs(want.astype(np.int16) - got.astype(np.int16))
        assert diff.max() <= 4 and (diff <= 1).mean() > 0.999, (diff.max(), (diff <= 1).mean())


def test_classifier_matches_onnxruntime(zoo: Repository) -> None:
    reference, model = _pair(zoo, "art_style")
    assert isinstance(model, Classifier)
    images = [str(p) for p in SAMPLES]
    want, got = reference.probabilities(images), model.probabilities(images)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert (want.argmax(axis=1) == got.argmax(axis=1)).all()


def test_generator_matches_onnxruntime(zoo: Repository) -> None:
    reference, model = _pair(zoo, "abstract_dcgan")
    assert isinstance(model, Generator)
    for want, got in zip(reference.generate(3, seed=7), model.generate(3, seed=7), strict=True):
        diff = np.abs(want.astype(np.int16) - got.astype(np.int16))
        assert diff.max() <= 2 and (diff == 0).mean() > 0.99


def test_specs_metadata_threads_and_hints() -> None:
    path = ZOO / "art_style" / "1" / "model.onnx"
    backend = create_backend(path, "openvino:fp32", threads=1)
    reference = OnnxRuntimeBackend.inspect(path)
    assert backend.inputs == reference.inputs and backend.outputs == reference.outputs
    assert backend.metadata_props == reference.metadata_props and "artforge.kind" in backend.metadata_props
    compiled = backend.compiled_model
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert "LATENCY" in str(compiled.get_property("PERFORMANCE_HINT"))


def test_dynamic_batch_and_size() -> None:
    backend = create_backend(ZOO / "mosaic" / "1", "openvino", threads=2)
    rng = np.random.default_rng(1)
    for shape in ((1, 64, 96, 3), (3, 32, 32, 3), (2, 128, 64, 3)):
        (out,) = backend.run({"image": rng.integers(0, 256, shape, dtype=np.uint8)}).values()
        assert out.shape == shape and out.dtype == np.uint8
    classifier = create_backend(ZOO / "art_style" / "1", "openvino", threads=2)
    for batch in (1, 4):
        (probabilities,) = classifier.run({"image": np.zeros((batch, 224, 224, 3), np.uint8)}).values()
        assert probabilities.shape == (batch, len((ZOO / "art_style" / "labels.txt").read_text().split()))


def test_wrong_inputs_are_invalid_input_errors() -> None:
    backend = create_backend(ZOO / "art_style" / "1", "openvino", threads=1)
    bad = [
        {"image": np.zeros((1, 200, 200, 3), np.uint8)},  # fixed 224 x 224
        {"image": np.zeros((1, 224, 224, 3), np.float32)},  # OpenVINO itself would cast this silently
        {"image": np.zeros((224, 224, 3), np.uint8)},
        {"pixels": np.zeros((1, 224, 224, 3), np.uint8)},
    ]
    for feeds in bad:
        with pytest.raises(InvalidInputError, match="the model"):
            backend.run(feeds)


def test_parallel_runs_match_serial_runs() -> None:
    backend = create_backend(ZOO / "swirl" / "1", "openvino", threads=1)
    rng = np.random.default_rng(2)
    batches = [rng.integers(0, 256, (1, 32 + 8 * (i % 3), 48, 3), dtype=np.uint8) for i in range(12)]
    serial = [backend.run({"image": b})["stylized"] for b in batches]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda b: backend.run({"image": b})["stylized"], batches))
    for want, got in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(got, want)


def test_garbage_is_a_load_error_without_noise(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"\x00 definitely not protobuf \xff" * 10)
    with pytest.raises(ModelLoadError, match="model.onnx: OpenVINO cannot load this model"):
        create_backend(garbage, "openvino")
    assert "tensorflow" not in capfd.readouterr().err  # no other frontend tried the file


def test_bf16_is_refused_without_cpu_support(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ovb, "cpu_capabilities", lambda: ("FP32", "INT8"))
    path = save(classifier_model(), tmp_path / "model.onnx")
    with pytest.raises(ModelLoadError, match="openvino:bf16 needs a CPU with bfloat16.*FP32, INT8"):
        create_backend(path, "openvino:bf16")


@pytest.mark.skipif("BF16" not in ovb.cpu_capabilities(), reason="this CPU has no bfloat16 instructions")
def test_bf16_is_close_to_fp32(zoo: Repository) -> None:
    exact = zoo.load("swirl", backend="openvino:fp32", threads=2)
    reduced = zoo.load("swirl", backend="openvino:bf16", threads=2)
    assert reduced.backend_name == "openvino:bf16"
    assert reduced.backend.compiled_model.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
    image = str(SAMPLES[0])
    diff = np.abs(exact.stylize(image, max_side=160).astype(np.int16)
                  - reduced.stylize(image, max_side=160).astype(np.int16))
    # Measured on the zoo: at most 2 levels, 0.1-0.2 on average; bf16 keeps 8 bits of mantissa.
    assert diff.mean() < 2 and (diff <= 8).mean() > 0.99, (diff.mean(), diff.max())
    images = [str(p) for p in SAMPLES]
    want = zoo.load("art_style", backend="openvino:fp32", threads=2).probabilities(images)
    got = zoo.load("art_style", backend="openvino:bf16", threads=2).probabilities(images)
    np.testing.assert_allclose(got, want, atol=0.1)


def test_missing_openvino_means_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(classifier_model(), tmp_path / "model.onnx")
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    ovb._core.cache_clear()
    try:
        assert ovb.OpenVinoBackend.probe() is None
        with pytest.raises(ModelLoadError, match="openvino is not available"):
            create_backend(path, "openvino")
        assert create_backend(path).name == "onnxruntime"  # auto simply skips it
    finally:
        monkeypatch.undo()
        ovb._core.cache_clear()


def _inverted(x: np.ndarray) -> np.ndarray:
    return 255 - x  # what stylizer_model computes


def test_a_repeated_shape_gets_a_static_model(tmp_path: Path) -> None:
    backend = create_backend(save(stylizer_model(), tmp_path / "model.onnx"), "openvino", threads=1)
    assert backend.static.capacity == ovb.STATIC_SHAPES and ovb.STATIC_AFTER == 2
    x = np.random.default_rng(3).integers(0, 256, (1, 8, 12, 3), dtype=np.uint8)
    np.testing.assert_array_equal(backend.run({"image": x})["stylized"], _inverted(x))
    assert backend.static.shapes() == []  # a shape seen once stays on the dynamic model
    for _ in range(2):
        np.testing.assert_array_equal(backend.run({"image": x})["stylized"], _inverted(x))
        assert backend.static.shapes() == [((1, 8, 12, 3),)]
    # the static model is fixed to its shape; other shapes still run, on the dynamic model
    y = np.zeros((2, 4, 4, 3), np.uint8)
    np.testing.assert_array_equal(backend.run({"image": y})["stylized"], _inverted(y))
    assert backend.static.shapes() == [((1, 8, 12, 3),)]


def test_static_models_are_bounded_least_recently_used_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ovb.ENV_STATIC_SHAPES, "2")
    backend = create_backend(save(stylizer_model(), tmp_path / "model.onnx"), "openvino", threads=1)
    shapes = [(1, 4, 4, 3), (1, 8, 4, 3), (1, 4, 8, 3)]
    for shape in shapes:
        for _ in range(2):
            backend.run({"image": np.zeros(shape, np.uint8)})
    assert backend.static.shapes() == [(shapes[1],), (shapes[2],)]
    backend.run({"image": np.zeros(shapes[1], np.uint8)})  # used again: now the most recent
    assert backend.static.shapes() == [(shapes[2],), (shapes[1],)]
    # inputs over the pixel bound never get one (their memory would be held for good)
    big = (1, 4, (ovb.STATIC_MAX_PIXELS // 4) + 4, 3)
    for _ in range(3):
        backend.run({"image": np.zeros(big, np.uint8)})
    assert (big,) not in backend.static.shapes()


def test_static_shapes_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(stylizer_model(), tmp_path / "model.onnx")
    monkeypatch.setenv(ovb.ENV_STATIC_SHAPES, "0")
    backend = create_backend(path, "openvino", threads=1)
    for _ in range(3):
        backend.run({"image": np.zeros((1, 4, 4, 3), np.uint8)})
    assert backend.static.shapes() == []
    monkeypatch.setenv(ovb.ENV_STATIC_SHAPES, "many")
    with pytest.raises(InvalidInputError, match="ARTFORGE_OPENVINO_STATIC_SHAPES is 'many'"):
        create_backend(path, "openvino", threads=1)


def test_a_fixed_shape_model_needs_no_static_copies(tmp_path: Path) -> None:
    backend = create_backend(save(classifier_model(batch=2), tmp_path / "model.onnx"), "openvino", threads=1)
    for _ in range(3):
        backend.run({"image": np.zeros((2, 8, 8, 3), np.uint8)})
    assert backend.static.capacity == 0 and backend.static.shapes() == []


def test_static_and_dynamic_models_agree_on_the_zoo(zoo: Repository) -> None:
    backend = create_backend(ZOO / "mosaic" / "1", "openvino:fp32", threads=2)
    x = np.random.default_rng(4).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    dynamic = backend.run({"image": x})["stylized"]
    static = backend.run({"image": x})["stylized"]
    assert backend.static.shapes() == [((1, 64, 96, 3),)]
    # the same kernels at fp32; fused boundary ops may round a level differently
    assert np.abs(static.astype(np.int16) - dynamic).max() <= 1


def test_concurrent_runs_while_a_shape_compiles(tmp_path: Path) -> None:
    backend = create_backend(save(stylizer_model(), tmp_path / "model.onnx"), "openvino", threads=1)
    rng = np.random.default_rng(5)
    batches = [rng.integers(0, 256, (1, 8, 8 + 4 * (i % 2), 3), dtype=np.uint8) for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(lambda b: backend.run({"image": b})["stylized"], batches))
    for batch, out in zip(batches, outputs, strict=True):
        np.testing.assert_array_equal(out, _inverted(batch))
    assert sorted(backend.static.shapes()) == [((1, 8, 8, 3),), ((1, 8, 12, 3),)]
