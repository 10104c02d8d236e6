"""create_backend(path, "exact" | "auto"): the measured fp32 trial, its cache, the rules fallback and forced names.

The accuracy budget's side of "auto" (reduced precision, variants) is in test_accuracy_budget.py.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from onnx_builders import classifier_model, save, stylizer_model

from artforge.errors import InvalidInputError, ModelLoadError
from artforge.runtime.backends import OnnxRuntimeBackend, OpenVinoBackend, Probe, auto, create_backend

pytest.importorskip("openvino", reason="auto only has a choice to measure with OpenVINO installed")

CPU_CHOICES = ("onnxruntime:cpu", "openvino:fp32")
MEASURED = re.compile(r"auto measured (\S+) [\d.]+ ms vs (\S+) [\d.]+ ms on (\S+) "
                      r"\((measured now|cached \d{4}-\d\d-\d\d)\)")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("ARTFORGE_CACHE_DIR", str(folder))
    monkeypatch.delenv(auto.ENV_MODE, raising=False)
    monkeypatch.setattr(auto, "TRIAL_SECONDS", 0.02)  # the tiny test graphs need no more to rank
    return folder


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return save(stylizer_model(), tmp_path / "stylizer" / "1" / "model.onnx")


def _decisions(cache: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((cache / "auto").glob("*.json"))]


def test_measures_picks_and_says_why(model: Path, cache: Path) -> None:
    backend = create_backend(model.parent, "exact", threads=1)
    match = MEASURED.fullmatch(backend.reason)
    assert match, backend.reason
    assert match[1] == backend.display_name and {match[1], match[2]} == set(CPU_CHOICES)
    assert match[3] == "1x256x256x3" and match[4] == "measured now"
    out = backend.run({"image": np.zeros((1, 8, 8, 3), np.uint8)})["stylized"]
    assert (out == 255).all()
    (decision,) = _decisions(cache)
    assert decision["format"] == auto.CACHE_FORMAT and decision["choice"] == backend.display_name
    assert set(decision["timings_ms"]) == set(CPU_CHOICES) and decision["input"] == "1x256x256x3"
    assert decision["fingerprint"]["threads"] == 1 and "onnxruntime" in decision["fingerprint"]["libraries"]
    assert list(decision["artifacts"].values()) == [auto.artifact_sha256(model)]


def test_second_load_reuses_the_cached_decision(model: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = create_backend(model, "exact", threads=1)
    (file,) = (cache / "auto").glob("*.json")
    # Flip the recorded winner: the next load must follow the file, not measure.
    decision = json.loads(file.read_text())
    other = next(c for c in CPU_CHOICES if c != first.display_name)
    decision["choice"] = other
    file.write_text(json.dumps(decision))

    def no_trial(*args: object) -> None:
        raise AssertionError("a cached decision must not be measured again")

    monkeypatch.setattr(auto, "_measure", no_trial)
    second = create_backend(model, "exact", threads=1)
    assert second.display_name == other
    assert re.search(r"\(cached \d{4}-\d\d-\d\d\)$", second.reason), second.reason


def test_changed_artifact_or_threads_measure_again(model: Path, cache: Path) -> None:
    create_backend(model, "exact", threads=1)
    create_backend(model, "exact", threads=2)  # another fingerprint
    assert len(_decisions(cache)) == 2
    save(stylizer_model(multiple=2), model)  # new bytes at the same path
    assert "measured now" in create_backend(model, "exact", threads=1).reason
    assert len(_decisions(cache)) == 3


def test_corrupt_cache_file_is_measured_again(model: Path, cache: Path) -> None:
    create_backend(model, "exact", threads=1)
    (file,) = (cache / "auto").glob("*.json")
    file.write_text("{ not json")
    assert "measured now" in create_backend(model, "exact", threads=1).reason
    assert json.loads(file.read_text())["format"] == auto.CACHE_FORMAT


def test_unwritable_cache_never_breaks_loading(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # A path under a regular file cannot be created even by root (chmod would not stop root).
    monkeypatch.setenv("ARTFORGE_CACHE_DIR", str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, logger=auto.__name__):
        for _ in range(2):
            backend = create_backend(model, "exact", threads=1)
            assert "measured now" in backend.reason and backend.display_name in CPU_CHOICES
    assert "could not cache the backend choice" in caplog.text


def test_rules_mode(model: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auto.ENV_MODE, "rules")
    backend = create_backend(model, threads=1)
    assert backend.display_name == "openvino:fp32"
    assert backend.reason.startswith("auto picked openvino by preference rules (ARTFORGE_AUTO=rules)")
    assert not (cache / "auto").exists()
    monkeypatch.setenv(auto.ENV_MODE, "fastest")
    with pytest.raises(InvalidInputError, match="ARTFORGE_AUTO is 'fastest'; use one of measure, rules"):
        create_backend(model)


def test_a_gpu_backend_wins_by_rules(model: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A score of 20 or more marks a GPU backend; dressing OpenVINO up as one keeps this test on CPU.
    monkeypatch.setattr(OpenVinoBackend, "probe", classmethod(lambda cls: Probe(30, "fp32", "pretend GPU")))
    backend = create_backend(model, threads=1)
    assert backend.display_name == "openvino:fp32"
    assert "by preference rules (a GPU backend is present and GPUs come first); pretend GPU" in backend.reason
    assert not (cache / "auto").exists()


def test_a_failing_trial_falls_back_to_rules(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auto, "trial_input", lambda backend: {"image": np.zeros((1, 8, 8), np.uint8)})
    backend = create_backend(model, threads=1)
    assert backend.display_name == "openvino:fp32"
    assert "by preference rules (the trial run failed:" in backend.reason


def test_a_single_candidate_needs_no_trial(model: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OpenVinoBackend, "probe", classmethod(lambda cls: None))
    backend = create_backend(model, threads=1)
    assert backend.display_name == "onnxruntime:cpu"
    assert backend.reason.startswith("auto picked onnxruntime, the only backend available here")
    assert not (cache / "auto").exists()


def test_forced_names_skip_the_trial(model: Path, cache: Path) -> None:
    for name, shown in (("onnxruntime", "onnxruntime:cpu"), ("onnxruntime:cpu", "onnxruntime:cpu"),
                        ("openvino", "openvino:fp32"), ("openvino:fp32", "openvino:fp32")):
        backend = create_backend(model, name, threads=1)
        assert backend.display_name == shown and f"backend {name!r} was asked for" in backend.reason
    assert not (cache / "auto").exists()
    with pytest.raises(InvalidInputError, match="unknown option 'fp16' for backend openvino; use one of fp32, bf16"):
        create_backend(model, "openvino:fp16")
    with pytest.raises(InvalidInputError, match="unknown backend 'openvion'"):
        create_backend(model, "openvion")


def test_trial_inputs_follow_the_metadata(tmp_path: Path) -> None:
    classifier = OnnxRuntimeBackend.inspect(save(classifier_model(size=12), tmp_path / "c.onnx"))
    assert {k: (v.shape, v.dtype) for k, v in auto.trial_input(classifier).items()} == {
        "image": ((1, 12, 12, 3), np.dtype(np.uint8))}
    stylizer = OnnxRuntimeBackend.inspect(save(stylizer_model(multiple=24), tmp_path / "s.onnx"))
    assert auto.trial_input(stylizer)["image"].shape == (1, 264, 264, 3)  # 256 rounded up to a multiple of 24


def test_every_backend_refusing_the_file_names_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"\x00 not protobuf \xff" * 10)
    with pytest.raises(ModelLoadError, match="model.onnx: ONNX Runtime cannot load this model"):
        create_backend(garbage)


def test_auto_bf16_lets_the_trial_consider_reduced_precision(model: Path, cache: Path) -> None:
    from artforge.runtime.backends.openvino_backend import cpu_capabilities

    if "BF16" not in cpu_capabilities():
        pytest.skip("this CPU has no bf16 support for OpenVINO to use")
    backend = create_backend(model, "auto:bf16", threads=1)
    assert backend.reason.startswith("auto measured ")
    (decision,) = _decisions(cache)
    assert set(decision["timings_ms"]) == {*CPU_CHOICES, "openvino:bf16"}
    # exact never considers bf16, and keeps a decision of its own.
    create_backend(model, "exact", threads=1)
    decisions = _decisions(cache)
    assert len(decisions) == 2 and sum("openvino:bf16" in d["timings_ms"] for d in decisions) == 1


def test_auto_with_an_unknown_precision_is_refused(model: Path) -> None:
    with pytest.raises(InvalidInputError, match="auto:bf16"):
        create_backend(model, "auto:fp8")
