"""The backend registry and the ONNX Runtime backend, on real sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx_builders import classifier_model, save, stylizer_model

from artforge.contract import KEY_KIND
from artforge.errors import InvalidInputError, ModelLoadError, NotFoundError
from artforge.runtime import available_backends, create_backend
from artforge.runtime.backends import OnnxRuntimeBackend, inspect_backend


@pytest.fixture(scope="module")
def stylizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(stylizer_model(), tmp_path_factory.mktemp("backend") / "7" / "model.onnx")


def test_onnxruntime_is_always_available() -> None:
    backends = available_backends()
    assert "onnxruntime" in backends
    assert backends["onnxruntime"].option in ("cpu", "cuda")


def test_auto_reports_choice_and_reason(stylizer_file: Path) -> None:
    for path in (stylizer_file, stylizer_file.parent):  # a file or its version folder
        backend = create_backend(path, threads=1)
        assert backend.name in available_backends() and backend.path == stylizer_file
        # Which backend wins is measured (tests/test_runtime_auto.py); the reason names it.
        assert "auto" in backend.reason and backend.display_name in backend.reason


def test_specs_and_metadata(stylizer_file: Path) -> None:
    backend = create_backend(stylizer_file, "onnxruntime:cpu", threads=1)
    assert backend.display_name == "onnxruntime:cpu" and backend.threads == 1
    (image,), (stylized,) = backend.inputs, backend.outputs
    assert (image.name, image.dtype, image.shape) == ("image", np.dtype(np.uint8), (None, None, None, 3))
    assert stylized.describe() == "stylized uint8[?,?,?,3]"
    assert backend.metadata_props[KEY_KIND] == "stylizer"
    x = np.zeros((1, 4, 8, 3), np.uint8)
    (out,) = backend.run({"image": x}).values()
    assert out.shape == (1, 4, 8, 3) and (out == 255).all()
    assert backend.session.get_providers() == ["CPUExecutionProvider"]


def test_run_errors_are_artforge_errors(stylizer_file: Path) -> None:
    backend = create_backend(stylizer_file, "onnxruntime", threads=1)
    with pytest.raises(InvalidInputError, match="rejected its input"):
        backend.run({"image": np.zeros((1, 4, 4, 3), np.float32)})


def test_inspect_is_cpu_and_unoptimised(stylizer_file: Path) -> None:
    backend = inspect_backend(stylizer_file.parent)
    assert isinstance(backend, OnnxRuntimeBackend) and backend.option == "cpu"


def test_bad_names_and_paths(stylizer_file: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown backend 'tensorflow'.*onnxruntime"):
        create_backend(stylizer_file, "tensorflow")
    with pytest.raises(InvalidInputError, match="unknown option 'tpu'.*cpu"):
        create_backend(stylizer_file, "onnxruntime:tpu")
    with pytest.raises(NotFoundError, match="does not exist"):
        create_backend(tmp_path / "nothing")
    with pytest.raises(NotFoundError, match="model.onnx"):
        create_backend(tmp_path)
    with pytest.raises(InvalidInputError, match="threads"):
        create_backend(stylizer_file, threads=0)


def test_garbage_file_is_a_load_error(tmp_path: Path) -> None:
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"\x00 this is not protobuf \xff" * 10)
    with pytest.raises(ModelLoadError, match="ONNX Runtime cannot load"):
        create_backend(garbage)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="this ONNX Runtime build has CUDA, so forcing it is not an error")
def test_forcing_an_unavailable_provider_says_so(tmp_path: Path) -> None:
    path = save(classifier_model(), tmp_path / "model.onnx")
    with pytest.raises(ModelLoadError, match="'cuda'.*not available"):
        create_backend(path, "onnxruntime:cuda")


@pytest.mark.gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                    reason="needs onnxruntime-gpu with CUDAExecutionProvider")
def test_cuda_provider_runs(tmp_path: Path) -> None:
    path = save(classifier_model(), tmp_path / "model.onnx")
    backend = create_backend(path, "onnxruntime:cuda")
    assert backend.session.get_providers()[0] == "CUDAExecutionProvider"
    probabilities = backend.run({"image": np.zeros((2, 8, 8, 3), np.uint8)})["probabilities"]
    assert probabilities.shape == (2, 3)


def test_onnxruntime_session_keeps_its_arena_and_does_not_spin(stylizer_file: Path) -> None:
    backend = create_backend(stylizer_file, "onnxruntime:cpu", threads=1)
    options = backend.session.get_session_options()
    assert options.enable_cpu_mem_arena
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_onnxruntime_runs_either_side_of_its_retain_bound(stylizer_file: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARTFORGE_ONNXRUNTIME_RETAIN_PIXELS", "64")
    backend = create_backend(stylizer_file, "onnxruntime:cpu", threads=1)
    assert backend.retain_pixels == 64
    for shape in ((1, 8, 8, 3), (2, 8, 8, 3), (1, 16, 16, 3)):  # 64 pixels (kept), then 128 and 256 (shrunk)
        x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        (out,) = backend.run({"image": x}).values()
        np.testing.assert_array_equal(out, 255 - x)
    monkeypatch.setenv("ARTFORGE_ONNXRUNTIME_RETAIN_PIXELS", "-1")
    with pytest.raises(InvalidInputError, match="ARTFORGE_ONNXRUNTIME_RETAIN_PIXELS is '-1'"):
        create_backend(stylizer_file, "onnxruntime:cpu")
