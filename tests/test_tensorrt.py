"""TensorRT engines: the plain-Python parts on any machine, the GPU parts where TensorRT and a GPU exist.

CPU: optimisation profiles, engine metadata and staleness checks, the timing
cache path, the InstanceNormalization decomposition (against ONNX Runtime on
the zoo stylizer), the parity comparison, calibration batches, the CLI
without TensorRT and the backend's probe. GPU (marked `gpu`): building,
checking and running real engines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import add_model, classifier_model, stylizer_model

from artforge import contract
from artforge.contract import ModelMetadata
from artforge.errors import InvalidInputError, ModelLoadError, NotFoundError, ParityError
from artforge.export import tensorrt as trt_build
from artforge.export.tensorrt import (
    TOLERANCES,
    ShapeRange,
    calibration_batches,
    compare_outputs,
    compute_profile,
    decompose_instance_norm,
    profile_shapes,
    seeded_feeds,
    timing_cache_path,
)
from artforge.runtime.backends import tensorrt_backend as trt_backend
from artforge.runtime.backends.base import TensorSpec
from artforge.runtime.backends.tensorrt_backend import (
    Environment,
    TensorRTBackend,
    batch_slices,
    check_plan,
    graph_step,
    profile_problem,
    read_plan_metadata,
    stale_reasons,
)
from artforge.runtime.imageio import write_image
from artforge.runtime.pipeline import classifier_batch

ROOT = Path(__file__).resolve().parent.parent
ZOO = ROOT / "zoo" / "repository"
SWIRL = ZOO / "swirl" / "1" / "model.onnx"
MISSING = trt_backend.missing_requirements()
needs_gpu = pytest.mark.skipif(MISSING is not None, reason=f"needs TensorRT and a CUDA GPU: {MISSING}")

CLASSIFIER = ModelMetadata(contract.CLASSIFIER, labels=("a", "b", "c"), input_size=224)
GENERATOR = ModelMetadata(contract.GENERATOR, latent_size=100, output_size=64)
STYLIZER = ModelMetadata(contract.STYLIZER, size_multiple=4, min_size=8)
ENV = Environment("10.3.0", "NVIDIA H100 80GB HBM3", "9.0")


def _cpu_session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- profiles
def test_classifier_profile_varies_the_batch_only() -> None:
    profile = compute_profile(CLASSIFIER, [None, 224, 224, 3], default_max_batch=64)
    assert profile == {"image": ShapeRange((1, 224, 224, 3), (8, 224, 224, 3), (64, 224, 224, 3))}
    small = compute_profile(CLASSIFIER, [None, 224, 224, 3], default_max_batch=64, max_batch=4)
    assert small["image"].opt == (4, 224, 224, 3) and small["image"].max == (4, 224, 224, 3)
    with pytest.raises(InvalidInputError, match="stylizers only"):
        compute_profile(CLASSIFIER, [None, 224, 224, 3], default_max_batch=64, max_side=512)


def test_generator_profile_and_a_fixed_batch() -> None:
    profile = compute_profile(GENERATOR, [None, 100], default_max_batch=64, max_batch=16, opt_batch=2)
    assert profile == {"latent": ShapeRange((1, 100), (2, 100), (16, 100))}
    fixed = compute_profile(GENERATOR, [4, 100], default_max_batch=64)
    assert fixed["latent"] == ShapeRange((4, 100), (4, 100), (4, 100))
    with pytest.raises(InvalidInputError, match="fixed at 4"):
        compute_profile(GENERATOR, [4, 100], default_max_batch=64, max_batch=8)
    with pytest.raises(InvalidInputError, match="--opt-batch 32 is above"):
        compute_profile(GENERATOR, [None, 100], default_max_batch=16, opt_batch=32)


def test_stylizer_profile_defaults_and_overrides() -> None:
    profile = compute_profile(STYLIZER, [None, None, None, 3], default_max_batch=8)
    assert profile == {"image": ShapeRange((1, 8, 8, 3), (1, 512, 512, 3), (8, 1024, 1024, 3))}
    custom = compute_profile(STYLIZER, [None, None, None, 3], default_max_batch=8, max_batch=2,
                             min_side=64, opt_side=256, max_side=384)
    assert custom["image"] == ShapeRange((1, 64, 64, 3), (1, 256, 256, 3), (2, 384, 384, 3))
    # A lower --max-side pulls the default opt side down with it.
    assert compute_profile(STYLIZER, [None, None, None, 3], default_max_batch=8,
                           max_side=256)["image"].opt == (1, 256, 256, 3)
    odd = ModelMetadata(contract.STYLIZER, size_multiple=6, min_size=8)
    assert compute_profile(odd, [None, None, None, 3], default_max_batch=8)["image"] == ShapeRange(
        (1, 12, 12, 3), (1, 516, 516, 3), (8, 1020, 1020, 3))


@pytest.mark.parametrize(("options", "message"), [
    ({"opt_side": 510}, "--opt-side 510 is not a multiple of this stylizer's size multiple 4"),
    ({"min_side": 4}, "below this stylizer's smallest side 8"),
    ({"min_side": 512, "opt_side": 256}, "min <= opt <= max"),
    ({"max_batch": 0}, "--max-batch must be a positive integer"),
])
def test_stylizer_profile_refuses_bad_sides(options: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        compute_profile(STYLIZER, [None, None, None, 3], default_max_batch=8, **options)


def test_profile_shapes_and_seeded_feeds() -> None:
    profile = {"image": ShapeRange((1, 8, 8, 3), (1, 8, 8, 3), (2, 16, 16, 3))}
    assert profile_shapes(profile) == [("min", {"image": (1, 8, 8, 3)}), ("max", {"image": (2, 16, 16, 3)})]
    first = seeded_feeds({"image": (2, 4, 4, 3)}, {"image": np.dtype(np.uint8)}, seed=3)
    again = seeded_feeds({"image": (2, 4, 4, 3)}, {"image": np.dtype(np.uint8)}, seed=3)
    np.testing.assert_array_equal(first["image"], again["image"])
    assert seeded_feeds({"latent": (1, 5)}, {"latent": np.dtype(np.float32)})["latent"].dtype == np.float32


# ----------------------------------------------------- engine metadata checks
def _plan_meta(**changes: object) -> dict:
    meta = {"format": 1, **ENV.as_dict(), "precision": "fp16", "onnx_sha256": "abc", "plan_sha256": "def",
            "profiles": [{"image": {"min": [1, 8, 8, 3], "opt": [1, 64, 64, 3], "max": [2, 128, 128, 3]}}],
            "metadata_props": STYLIZER.to_props(),
            "inputs": [{"name": "image", "dtype": "uint8", "shape": [None, None, None, 3]}],
            "outputs": [{"name": "stylized", "dtype": "uint8", "shape": [None, None, None, 3]}]}
    meta.update(changes)
    return meta


def test_a_current_engine_passes_and_each_mismatch_is_named(tmp_path: Path) -> None:
    plan = tmp_path / "repo" / "swirl" / "3" / "model.plan"
    assert stale_reasons(_plan_meta(), ENV, "abc") == []
    check_plan(plan, _plan_meta(), ENV, "abc")
    assert stale_reasons(_plan_meta(), None, None) == []  # nothing to compare against
    other_trt = Environment("10.4.0", ENV.gpu_name, ENV.compute_capability)
    other_gpu = Environment(ENV.tensorrt_version, "NVIDIA L4", "8.9")
    assert stale_reasons(_plan_meta(), other_trt) == ["built for TensorRT 10.3.0, this machine has 10.4.0"]
    assert stale_reasons(_plan_meta(), other_gpu) == [
        "built for GPU NVIDIA H100 80GB HBM3, this machine has NVIDIA L4",
        "built for compute capability 9.0, this machine has 8.9"]
    assert stale_reasons(_plan_meta(), ENV, "changed") == ["model.onnx has changed since the engine was built"]
    with pytest.raises(ModelLoadError, match=r"stale \(model.onnx has changed.*run `artforge build-engine swirl "
                                             r"--repo .*repo --version 3 --rebuild-stale` again"):
        check_plan(plan, _plan_meta(), ENV, "changed")


def test_plan_metadata_file_problems_are_load_errors(tmp_path: Path) -> None:
    plan = tmp_path / "model.plan"
    with pytest.raises(ModelLoadError, match="no model.plan.json beside it"):
        read_plan_metadata(plan)
    meta_file = tmp_path / "model.plan.json"
    meta_file.write_text("{not json")
    with pytest.raises(ModelLoadError, match="not readable JSON"):
        read_plan_metadata(plan)
    meta_file.write_text(json.dumps({"format": 1}))
    with pytest.raises(ModelLoadError, match="lacks tensorrt_version"):
        read_plan_metadata(plan)
    meta_file.write_text(json.dumps(_plan_meta(format=99)))
    with pytest.raises(ModelLoadError, match="format 99"):
        read_plan_metadata(plan)
    meta_file.write_text(json.dumps(_plan_meta()))
    assert read_plan_metadata(plan)["precision"] == "fp16"


def test_timing_cache_is_keyed_by_gpu_and_tensorrt_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = timing_cache_path(ENV, tmp_path)
    assert path == tmp_path / "timing-nvidia-h100-80gb-hbm3-sm90-trt10-3-0.cache"
    assert timing_cache_path(Environment("10.3.0", "NVIDIA L4", "8.9"), tmp_path) != path
    assert timing_cache_path(Environment("10.4.0", ENV.gpu_name, "9.0"), tmp_path) != path
    monkeypatch.setenv("ARTFORGE_CACHE_DIR", str(tmp_path / "cache"))
    assert timing_cache_path(ENV).parent == tmp_path / "cache" / "tensorrt"


def test_runtime_shape_checks_and_batch_splitting() -> None:
    profile = {"min": [1, 8, 8, 3], "opt": [1, 64, 64, 3], "max": [2, 128, 128, 3]}
    assert profile_problem("image", (5, 64, 128, 3), profile) is None  # batch is split, not refused
    assert "has 132 on axis 2; this engine was built for 8..128" in profile_problem("image", (1, 64, 132, 3), profile)
    assert "rank 4" in profile_problem("image", (1, 64, 64), profile)
    assert list(batch_slices(5, 2)) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert list(batch_slices(2, 8)) == [slice(0, 2)]


def test_cuda_graphs_are_captured_on_a_repeated_shape_and_dropped_when_it_changes() -> None:
    a, b = ((1, 64, 64, 3),), ((1, 32, 32, 3),)
    assert graph_step(False, a, a, False) == "plain"  # graphs off
    assert graph_step(True, None, a, False) == "plain"  # first launch: TensorRT's shape setup
    assert graph_step(True, a, a, False) == "capture"
    assert graph_step(True, a, a, True) == "replay"
    assert graph_step(True, a, b, True) == "plain"  # a graph for the old shape is never replayed


# ------------------------------------------------ instance-norm decomposition
def test_decomposed_instance_norm_matches_onnx_runtime_on_the_zoo_stylizer() -> None:
    model = onnx.load(str(SWIRL))
    decomposed, count = decompose_instance_norm(model)
    assert count == sum(n.op_type == "InstanceNormalization" for n in model.graph.node) > 0
    assert not any(n.op_type == "InstanceNormalization" for n in decomposed.graph.node)
    onnx.checker.check_model(decomposed, full_check=True)
    assert {p.key: p.value for p in decomposed.metadata_props} == {p.key: p.value for p in model.metadata_props}
    original, rewritten = _cpu_session(model), _cpu_session(decomposed)
    rng = np.random.default_rng(0)
    for shape in ((1, 48, 64, 3), (2, 32, 32, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        expected = original.run(None, {"image": image})[0]
        got = rewritten.run(None, {"image": image})[0]
        result = compare_outputs("stylized", expected, got, TOLERANCES["fp32"])
        assert result.passed and result.max_abs_diff <= 1, result


@pytest.mark.parametrize("opset", [17, 18])
def test_decomposition_matches_in_float_for_both_reduce_mean_forms(opset: int) -> None:
    # Opset 18 moved ReduceMean's axes to an input; both forms must be right.
    rng = np.random.default_rng(1)
    channels = 5
    graph = helper.make_graph(
        [helper.make_node("InstanceNormalization", ["x", "scale", "bias"], ["y"], epsilon=1e-3)], "norm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, "H", "W"])],
        initializer=[numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "scale"),
                     numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    decomposed, count = decompose_instance_norm(model)
    assert count == 1
    x = (rng.standard_normal((2, channels, 7, 9)) * 30 + 5).astype(np.float32)
    expected = _cpu_session(model).run(None, {"x": x})[0]
    got = _cpu_session(decomposed).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-5)


# ------------------------------------------------------------ comparison
def test_uint8_comparison_counts_pixels_off_and_the_largest_difference() -> None:
    expected = np.full((1, 10, 10, 3), 100, np.uint8)
    near = expected.copy()
    near[0, 0, 0, 1] = 102  # within fp16's 2 levels
    assert compare_outputs("image", expected, near, TOLERANCES["fp16"]).passed
    one_pixel = expected.copy()
    one_pixel[0, 0, 0] = 104  # 1 pixel of 100 off: exactly fp16's 1% allowance
    result = compare_outputs("image", expected, one_pixel, TOLERANCES["fp16"])
    assert result.off_fraction == pytest.approx(0.01) and result.passed
    two_pixels = one_pixel.copy()
    two_pixels[0, 5, 5, 2] = 90
    assert not compare_outputs("image", expected, two_pixels, TOLERANCES["fp16"]).passed
    spike = expected.copy()
    spike[0, 3, 3, 0] = 200  # one pixel, but far beyond max_levels
    result = compare_outputs("image", expected, spike, TOLERANCES["fp16"])
    assert result.max_abs_diff == 100 and not result.passed
    with pytest.raises(ParityError, match="'image' is uint8 \\[1, 10, 10\\]"):
        compare_outputs("image", expected, expected[..., 0], TOLERANCES["fp16"])


def test_probability_comparison_uses_atol_and_top1_on_clear_rows_only() -> None:
    expected = np.array([[0.7, 0.2, 0.1], [0.5, 0.495, 0.005]], np.float32)
    flipped_tie = np.array([[0.7, 0.2, 0.1], [0.496, 0.499, 0.005]], np.float32)
    result = compare_outputs("probabilities", expected, flipped_tie, TOLERANCES["fp16"])
    assert result.passed and result.top1_agreement == 1.0  # the near-tie row is excused
    off = expected + np.array([[0.0, 0.02, -0.02], [0, 0, 0]], np.float32)
    assert not compare_outputs("probabilities", expected, off, TOLERANCES["fp16"]).passed
    assert compare_outputs("probabilities", expected, off, TOLERANCES["int8"]).passed
    nan = expected.copy()
    nan[0, 0] = np.nan
    assert not compare_outputs("probabilities", expected, nan, TOLERANCES["int8"]).passed


class _OrtRunner:
    """Stands in for the engine runner: ONNX Runtime, optionally corrupting its outputs."""

    def __init__(self, model: onnx.ModelProto, corrupt: bool = False) -> None:
        self.session = _cpu_session(model)
        self.dtypes = {i.name: np.dtype(np.uint8) for i in self.session.get_inputs()}
        self.corrupt = corrupt

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        out = dict(zip(names, self.session.run(names, feeds), strict=True))
        if self.corrupt:
            out = {k: (255 - v) if v.dtype == np.uint8 else v for k, v in out.items()}
        return out


def test_check_parity_reports_every_profile_shape_and_refuses_a_bad_engine() -> None:
    model = stylizer_model()
    profile = {"image": ShapeRange((1, 8, 8, 3), (1, 16, 16, 3), (2, 24, 24, 3))}
    report = trt_build.check_parity(_OrtRunner(model), model, profile, "fp16")
    assert report["passed"] and [c["profile_shape"] for c in report["cases"]] == ["min", "opt", "max"]
    with pytest.raises(ParityError, match="fp16 engine disagrees.*'stylized' at the profile's min shape"):
        trt_build.check_parity(_OrtRunner(model, corrupt=True), model, profile, "fp16")


# ------------------------------------------------------------ calibration
def _image_folder(folder: Path) -> Path:
    rng = np.random.default_rng(2)
    for i, (h, w) in enumerate([(40, 60), (64, 64), (30, 90), (50, 20), (33, 33)]):
        write_image(folder / f"img{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def test_calibration_batches_are_the_runtime_preprocessing(tmp_path: Path) -> None:
    folder = _image_folder(tmp_path / "images")
    meta = ModelMetadata(contract.CLASSIFIER, labels=("a",), input_size=16)
    batches = list(calibration_batches(meta, (2, 16, 16, 3), folder))
    assert len(batches) == 2 and all(b.shape == (2, 16, 16, 3) and b.dtype == np.uint8 for b in batches)
    # broken.jpg is skipped, img4 is a short last batch and dropped
    expected = classifier_batch([folder / f"img{i}.png" for i in range(4)], 16)
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    stylized = list(calibration_batches(STYLIZER, (5, 24, 24, 3), folder))
    assert len(stylized) == 1 and stylized[0].shape == (5, 24, 24, 3)
    latents = list(calibration_batches(GENERATOR, (4, 100), None, limit=12))
    assert len(latents) == 3 and latents[0].dtype == np.float32 and latents[0].shape == (4, 100)


def test_calibration_folder_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="calibration folder .*missing does not exist"):
        list(calibration_batches(STYLIZER, (1, 8, 8, 3), tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="holds no images"):
        list(calibration_batches(STYLIZER, (1, 8, 8, 3), tmp_path / "empty"))
    with pytest.raises(InvalidInputError, match="needs --calibration DIR"):
        list(calibration_batches(STYLIZER, (1, 8, 8, 3), None))


# --------------------------------------------------- CLI and backend on CPU
@pytest.mark.skipif(MISSING is None, reason="TensorRT and a GPU are present, so build-engine would run")
def test_build_engine_without_tensorrt_is_one_sentence_and_imports_no_torch(tmp_path: Path) -> None:
    add_model(tmp_path, "invert", stylizer_model())
    code = ("import sys\nfrom artforge.cli import main\n"
            "rc = main(['build-engine', 'invert', '--repo', sys.argv[1], '--precision', 'fp16'])\n"
            "assert 'torch' not in sys.modules and 'tensorrt' not in sys.modules\nsys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"artforge: error: build-engine needs TensorRT and a CUDA GPU, and {MISSING}"]


def test_the_builder_needs_no_torch() -> None:
    # The command line and the builder share artforge/export/options.py, so their choices cannot disagree.
    # A GPU box with the runtime and [tensorrt] only (no torch) must be able to build.
    code = "import sys\nimport artforge.export.tensorrt\nassert 'torch' not in sys.modules\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(MISSING is None, reason="TensorRT and a GPU are present")
def test_backend_is_unavailable_here_and_loads_nothing(tmp_path: Path) -> None:
    assert TensorRTBackend.probe() is None
    assert TensorRTBackend.options() == ("fp32", "fp16", "int8")
    assert "tensorrt" not in sys.modules
    plan = tmp_path / "invert" / "1" / "model.plan"
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"not an engine")
    with pytest.raises(ModelLoadError, match="no model.plan.json beside it.*build-engine invert"):
        TensorRTBackend(plan)
    (tmp_path / "invert" / "1" / "model.plan.json").write_text(json.dumps(_plan_meta()))
    with pytest.raises(ModelLoadError, match="TensorRT cannot run here: the tensorrt Python package"):
        TensorRTBackend(plan)
    with pytest.raises(ModelLoadError, match="needs TensorRT and a CUDA GPU"):
        trt_build.build_engine(add_model(tmp_path / "repo", "invert", stylizer_model()).parents[2], "invert")


def test_inspect_reads_specs_and_metadata_from_the_json_alone(tmp_path: Path) -> None:
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"")
    (tmp_path / "model.plan.json").write_text(json.dumps(_plan_meta()))
    backend = TensorRTBackend.inspect(plan)
    assert [s.describe() for s in backend.inputs] == ["image uint8[?,?,?,3]"]
    assert [s.describe() for s in backend.outputs] == ["stylized uint8[?,?,?,3]"]
    assert ModelMetadata.from_props(backend.metadata_props).size_multiple == 4
    assert backend.display_name == "tensorrt:fp16" and backend.profiles["image"]["max"] == [2, 128, 128, 3]
    with pytest.raises(ModelLoadError, match="inspection only"):
        backend.run({"image": np.zeros((1, 8, 8, 3), np.uint8)})


# ------------------------------------- the build flow, ONNX Runtime standing in
_ORT_DTYPES = {"tensor(uint8)": np.dtype(np.uint8), "tensor(float)": np.dtype(np.float32)}


class _OrtEngineRunner:
    """EngineRunner's interface over an ONNX Runtime session; the "plan" is the ONNX graph the builder got."""

    def __init__(self, plan: bytes, source: str, contexts: int | None = None, graphs: bool | None = None,
                 device: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(plan, options, providers=["CPUExecutionProvider"])

        def spec(value: ort.NodeArg) -> TensorSpec:
            return TensorSpec(value.name, _ORT_DTYPES[value.type],
                              tuple(d if isinstance(d, int) else None for d in value.shape))

        self.inputs = tuple(spec(v) for v in self.session.get_inputs())
        self.outputs = tuple(spec(v) for v in self.session.get_outputs())
        self.dtypes = {s.name: s.dtype for s in (*self.inputs, *self.outputs)}
        self.profiles: dict = {}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip([s.name for s in self.outputs], self.session.run(None, feeds), strict=True))

    def close(self) -> None:
        pass


class _BrokenEngineRunner(_OrtEngineRunner):
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: 255 - out for name, out in super().run(feeds).items()}


def test_build_flow_on_cpu_with_onnx_runtime_standing_in_for_tensorrt(tmp_path: Path, zoo_copy: Callable[..., Path],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Only _build_plan and EngineRunner (the code that needs TensorRT) are replaced; profiles, the
    # instance-norm choice, the timing cache file, parity, metadata, --rebuild-stale and the backend's
    # load checks are the real code.
    environment = Environment("10.9.0", "NVIDIA H100 80GB HBM3", "9.0")
    monkeypatch.setattr(trt_backend, "missing_requirements", lambda: None)
    monkeypatch.setattr(trt_backend, "cuda_environment", lambda device=0: environment)
    monkeypatch.setattr(trt_backend, "EngineRunner", _OrtEngineRunner)
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setenv("ARTFORGE_CACHE_DIR", str(tmp_path / "cache"))
    built: list[tuple[bool, dict, bytes]] = []

    def fake_build(onnx_bytes: bytes, source: str, profile: dict, options: trt_build.BuildOptions,
                   timing_cache: bytes, *rest: object) -> tuple[bytes, bytes]:
        graph = onnx.load_from_string(onnx_bytes)
        built.append((trt_build.has_op(graph, "InstanceNormalization"), profile, timing_cache))
        return onnx_bytes, timing_cache + b"t"

    monkeypatch.setattr(trt_build, "_build_plan", fake_build)
    repo = zoo_copy("swirl")
    options = trt_build.BuildOptions(max_batch=2, min_side=32, opt_side=48, max_side=64)
    plan = trt_build.build_engine(repo, "swirl", options=options, log=None)

    assert [native for native, _, _ in built] == [True, False]  # auto: native, then decomposed
    assert built[0][1]["image"] == ShapeRange((1, 32, 32, 3), (1, 48, 48, 3), (2, 64, 64, 3))
    cache_file = timing_cache_path(environment)
    assert built[1][2] == b"t" and cache_file.read_bytes() == b"tt"  # one cache threaded through both builds
    meta = read_plan_metadata(plan)
    assert meta["instance_norm"]["choice"] in ("native", "decomposed")
    assert set(meta["instance_norm"]["timings_ms"]) == {"native", "decomposed"}
    assert meta["parity"]["passed"] and [c["profile_shape"] for c in meta["parity"]["cases"]] == ["min", "opt", "max"]
    assert meta["gpu_name"] == environment.gpu_name and meta["precision"] == "fp16"
    assert meta["onnx_sha256"] == trt_backend.file_sha256(repo / "swirl" / "1" / "model.onnx")
    assert meta["metadata_props"][contract.KEY_KIND] == contract.STYLIZER
    assert meta["profiles"][0]["image"]["max"] == [2, 64, 64, 3]

    # --rebuild-stale keeps a current engine; a new TensorRT version makes it stale.
    assert trt_build.build_engine(repo, "swirl", options=trt_build.BuildOptions(rebuild_stale=True),
                                  log=None) == plan and len(built) == 2
    from artforge.runtime import Repository

    model = Repository(repo).load("swirl", backend="tensorrt")
    assert model.backend_name == "tensorrt:fp16"
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    expected = Repository(repo).load("swirl", backend="onnxruntime:cpu").stylize(image)
    np.testing.assert_array_equal(model.stylize(image), expected)
    newer = Environment("10.10.0", environment.gpu_name, environment.compute_capability)
    monkeypatch.setattr(trt_backend, "cuda_environment", lambda device=0: newer)
    with pytest.raises(ModelLoadError, match="built for TensorRT 10.9.0, this machine has 10.10.0.*build-engine swirl"):
        Repository(repo).load("swirl", backend="tensorrt")
    trt_build.build_engine(repo, "swirl", options=trt_build.BuildOptions(rebuild_stale=True, instance_norm="native",
                                                                         max_side=64), log=None)
    assert len(built) == 3 and read_plan_metadata(plan)["tensorrt_version"] == "10.10.0"

    # An engine that disagrees with ONNX Runtime is refused and nothing is written.
    monkeypatch.setattr(trt_backend, "EngineRunner", _BrokenEngineRunner)
    plan.unlink()
    with pytest.raises(ParityError, match="disagrees with ONNX Runtime on 'stylized' at the profile's min"):
        trt_build.build_engine(repo, "swirl", options=trt_build.BuildOptions(instance_norm="native", max_side=64),
                               log=None)
    assert not plan.exists()


def test_instance_norm_variants_and_their_calibration_caches(tmp_path: Path) -> None:
    assert trt_build.instance_norm_variants("auto", True) == ["native", "decomposed"]
    assert trt_build.instance_norm_variants("decomposed", True) == ["decomposed"]
    assert trt_build.instance_norm_variants("native", True) == ["native"]
    assert trt_build.instance_norm_variants("auto", False) == ["native"]
    cache = tmp_path / "calibration.cache"
    assert trt_build.calibration_cache_for(cache, "native") == cache
    assert trt_build.calibration_cache_for(cache, "decomposed") == tmp_path / "calibration.decomposed.cache"


# ------------------------------------------------------------------- GPU
def _gpu_repo(zoo_copy: Callable[..., Path]) -> Path:
    repo = zoo_copy("swirl")
    add_model(repo, "colours", classifier_model(size=16), config='name: "colours"\nmax_batch_size: 8\n')
    return repo


@pytest.mark.gpu
@needs_gpu
def test_gpu_stylizer_engine_builds_checks_and_runs(tmp_path: Path, zoo_copy: Callable[..., Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from artforge.runtime import Repository
    from artforge.runtime.backends import register_backend

    register_backend(TensorRTBackend)  # a no-op once runtime/backends/__init__.py registers it
    monkeypatch.setenv("ARTFORGE_CACHE_DIR", str(tmp_path / "cache"))
    repo = _gpu_repo(zoo_copy)
    options = trt_build.BuildOptions(precision="fp16", max_batch=2, min_side=32, opt_side=64, max_side=128)
    plan = trt_build.build_engine(repo, "swirl", options=options, log=None)
    meta = read_plan_metadata(plan)
    assert meta["precision"] == "fp16" and meta["parity"]["passed"]
    assert meta["instance_norm"]["choice"] in ("native", "decomposed")
    assert set(meta["instance_norm"]["timings_ms"]) == {"native", "decomposed"}
    assert meta["metadata_props"][contract.KEY_KIND] == contract.STYLIZER
    assert list((tmp_path / "cache" / "tensorrt").glob("timing-*.cache"))
    # An up-to-date engine is kept as it is.
    assert trt_build.build_engine(repo, "swirl", options=trt_build.BuildOptions(rebuild_stale=True), log=None) == plan
    assert read_plan_metadata(plan)["plan_sha256"] == meta["plan_sha256"]

    model = Repository(repo).load("swirl", backend="tensorrt")
    assert model.backend_name == "tensorrt:fp16"
    reference = Repository(repo).load("swirl", backend="onnxruntime:cpu")
    rng = np.random.default_rng(0)
    for h, w in ((40, 60), (128, 96), (33, 77)):  # dynamic shapes inside the profile, padded by the pipeline
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        got, expected = model.stylize(image), reference.stylize(image)
        assert got.shape == expected.shape == (h, w, 3)
        assert compare_outputs("stylized", expected[None], got[None], TOLERANCES["fp16"]).passed
    batch = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)  # over the profile's max batch: split
    assert model.infer({"image": batch})["stylized"].shape == (5, 64, 64, 3)
    with pytest.raises(InvalidInputError, match="built for 32..128"):
        model.infer({"image": np.zeros((1, 256, 256, 3), np.uint8)})

    monkeypatch.setenv(trt_backend.ENV_CUDA_GRAPHS, "1")
    graphed = Repository(repo).load("swirl", backend="tensorrt")
    feeds = {"image": batch[:1]}
    # plain launch, capture + launch, replay; then a shape change drops the graph and launches plainly
    runs = [graphed.infer(feeds)["stylized"] for _ in range(3)]
    for result in runs[1:]:
        np.testing.assert_array_equal(runs[0], result)
    np.testing.assert_array_equal(runs[0], model.infer(feeds)["stylized"])
    other = {"image": batch[:1, :32, :32]}
    np.testing.assert_array_equal(graphed.infer(other)["stylized"], model.infer(other)["stylized"])
    np.testing.assert_array_equal(graphed.infer(feeds)["stylized"], runs[0])

    onnx_file = repo / "swirl" / "1" / "model.onnx"
    changed = onnx.load(str(onnx_file))
    changed.doc_string = "re-exported"
    onnx.save(changed, str(onnx_file))
    with pytest.raises(ModelLoadError, match="model.onnx has changed.*build-engine swirl"):
        Repository(repo).load("swirl", backend="tensorrt")


@pytest.mark.gpu
@needs_gpu
def test_gpu_classifier_engine_classifies_like_onnx_runtime(tmp_path: Path, zoo_copy: Callable[..., Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from artforge.runtime import Repository
    from artforge.runtime.backends import register_backend

    register_backend(TensorRTBackend)
    monkeypatch.setenv("ARTFORGE_CACHE_DIR", str(tmp_path / "cache"))
    repo = _gpu_repo(zoo_copy)
    plan = trt_build.build_engine(repo, "colours", log=None)
    meta = read_plan_metadata(plan)
    assert meta["profiles"][0]["image"]["max"] == [8, 16, 16, 3]  # config.pbtxt's max_batch_size
    assert meta["instance_norm"]["present"] is False
    model = Repository(repo).load("colours", backend="tensorrt")
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    assert model.classify(red, top_k=1)[0][0] == "red"
