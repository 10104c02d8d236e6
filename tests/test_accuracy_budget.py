"""The accuracy budget and the "auto" that honours it: real ONNX graphs, real ONNX Runtime and OpenVINO sessions.

The "variants" here are small real graphs written as <name>_int8 models with a variant's metadata: one
that is fast but wrong (it returns its input), one a level off, one exact. auto must measure each against
the fp32 reference and never pick one over budget.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_builders import add_model, generator_model, stylizer_model

from artforge import accuracy, contract
from artforge.accuracy import Budget
from artforge.errors import InvalidInputError, ModelLoadError
from artforge.files import file_sha256
from artforge.runtime import Repository
from artforge.runtime.backends import OpenVinoBackend, Probe, auto, create_backend
from artforge.runtime.representative import SAMPLES_DIR, representative_inputs

pytest.importorskip("openvino", reason="auto only has a choice to measure with OpenVINO installed")

CPU_CHOICES = {"onnxruntime:cpu", "openvino:fp32"}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("ARTFORGE_CACHE_DIR", str(folder))
    monkeypatch.delenv(auto.ENV_MODE, raising=False)
    monkeypatch.setattr(auto, "TRIAL_SECONDS", 0.02)  # the tiny test graphs need no more to rank
    return folder


def _decisions(cache: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((cache / "auto").glob("*.json"), key=lambda p: p.stat().st_mtime)]


def _as_variant(model: onnx.ModelProto, source: Path, precision: str = "int8") -> onnx.ModelProto:
    """model with the metadata `artforge quantize` gives a variant of the file at source."""
    props = {p.key: p.value for p in model.metadata_props}
    meta = replace(contract.ModelMetadata.from_props(props), precision=precision,
                   source_model={"name": source.parent.parent.name, "version": 1, "sha256": file_sha256(source)})
    del model.metadata_props[:]
    helper.set_model_props(model, meta.to_props())
    return model


def _stylizer(body: str, offset: int = 0) -> onnx.ModelProto:
    """A stylizer graph: "identity" returns its input (fast and wrong); "invert" is 255 - x - offset, clipped."""
    meta = contract.ModelMetadata(contract.STYLIZER, size_multiple=4)
    if body == "identity":
        nodes, inits = [helper.make_node("Identity", ["image"], ["stylized"])], []
    else:
        nodes = [helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
                 helper.make_node("Sub", ["white", "pixels"], ["inverted"]),
                 helper.make_node("Clip", ["inverted", "low", "high"], ["clipped"]),
                 helper.make_node("Cast", ["clipped"], ["stylized"], to=TensorProto.UINT8)]
        inits = [numpy_helper.from_array(np.array(value, np.float32), name)
                 for name, value in (("white", 255 - offset), ("low", 0), ("high", 255))]
    graph = helper.make_graph(nodes, "stylizer",
                              [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", "H", "W", 3])],
                              [helper.make_tensor_value_info("stylized", TensorProto.UINT8, ["N", "H", "W", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, meta.to_props())
    return model


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    add_model(root, "invert", stylizer_model())
    return root


def _variant(repo: Path, model: onnx.ModelProto, name: str = "invert", precision: str = "int8") -> Path:
    return add_model(repo, f"{name}_{precision}", _as_variant(model, repo / name / "1" / "model.onnx", precision))


# ------------------------------------------------------------------ the budget itself
def test_budget_is_stored_and_read_back(tmp_path: Path) -> None:
    folder = tmp_path / "swirl"
    folder.mkdir()
    assert accuracy.read_budget(folder) == Budget()  # an old model without budget.json: the kind's defaults
    assert Budget().for_kind(contract.STYLIZER) == {"min_psnr": 40.0, "max_level_diff": 12}
    file = accuracy.write_budget(folder, {"min_psnr": 35.0, "max_level_diff": 20})
    assert file == folder / accuracy.BUDGET_FILE
    assert accuracy.read_overrides(folder) == {"max_level_diff": 20, "min_psnr": 35.0}
    assert accuracy.read_budget(folder) == replace(Budget(), min_psnr=35.0, max_level_diff=20)
    accuracy.write_budget(folder, {})  # back to the defaults
    assert not file.exists() and accuracy.read_budget(folder) == Budget()
    assert accuracy.parse_budget("min-psnr=35, max_level_diff=8") == {"min_psnr": 35.0, "max_level_diff": 8}
    with pytest.raises(InvalidInputError, match="'psnr=3' is not KEY=VALUE"):
        accuracy.parse_budget("psnr=3")
    with pytest.raises(InvalidInputError, match="max_prob_diff must be a number from 0 to 1"):
        accuracy.write_budget(folder, {"max_prob_diff": 2.0})
    file.write_text("{ not json")
    with pytest.raises(InvalidInputError, match="budget.json is not a readable budget"):
        accuracy.read_budget(folder)


def test_deviation_and_judge_per_kind() -> None:
    ref = np.zeros((2, 4, 4, 3), np.uint8)
    off = ref.copy()
    off[0, 0, 0, 0] = 20
    metrics = accuracy.deviation(contract.STYLIZER, ref, off)
    assert metrics["max_level_diff"] == 20 and metrics["psnr_db"] < 99
    assert accuracy.judge(contract.STYLIZER, metrics, Budget()) == ["largest pixel difference (levels) 20 is not <= 12"]
    probs = np.array([[0.6, 0.4], [0.2, 0.8]], np.float32)
    flipped = np.array([[0.4, 0.6], [0.2, 0.8]], np.float32)
    assert accuracy.judge(contract.CLASSIFIER, accuracy.deviation(contract.CLASSIFIER, probs, flipped), Budget()) == [
        "top-1 agreement 0.5 is not >= 1", "largest probability difference 0.2 is not <= 0.1"]
    images = np.full((3, 2, 2, 3), 100, np.uint8)
    assert accuracy.deviation(contract.GENERATOR, images, images + 2)["mae_levels"] == 2.0


# ------------------------------------------------------------------ auto within budget
def test_auto_never_picks_a_fast_but_wrong_variant(repo: Path, cache: Path) -> None:
    _variant(repo, _stylizer("identity"))  # returns its input: nothing to compute, every pixel wrong
    backend = create_backend(repo / "invert" / "1", threads=1)
    assert "@int8" not in backend.display_name
    (decision,) = _decisions(cache)
    assert set(decision["over_budget"]) == {"onnxruntime:cpu@int8", "openvino:fp32@int8"}
    assert not any("@int8" in name for name in decision["timings_ms"])  # over budget: never even timed
    assert decision["deviations"]["openvino:fp32@int8"]["psnr_db"] < 10
    assert decision["reference"] == "onnxruntime:cpu" and decision["kind"] == contract.STYLIZER
    assert "; over budget: " in backend.reason and "onnxruntime:cpu@int8 (PSNR" in backend.reason
    # Only the budget kept it out: with a budget that takes anything it is measured for speed too,
    # and the changed budget is a new decision.
    accuracy.write_budget(repo / "invert", {"min_psnr": 0.0, "max_level_diff": 255})
    assert "measured now" in create_backend(repo / "invert" / "1", threads=1).reason
    latest = _decisions(cache)[-1]
    assert not latest["over_budget"] and {"onnxruntime:cpu@int8", "openvino:fp32@int8"} <= set(latest["timings_ms"])


def test_a_tight_budget_keeps_out_a_variant_the_defaults_allow(repo: Path, cache: Path) -> None:
    _variant(repo, _stylizer("invert", offset=1))  # one level off on most pixels: ~48 dB
    create_backend(repo / "invert" / "1", threads=1)
    decision = _decisions(cache)[-1]
    assert decision["deviations"]["onnxruntime:cpu@int8"]["max_level_diff"] == 1
    assert "onnxruntime:cpu@int8" in decision["timings_ms"] and not decision["over_budget"]
    accuracy.write_budget(repo / "invert", {"max_level_diff": 0})
    for _ in range(2):  # measured, then cached: neither picks it
        backend = create_backend(repo / "invert" / "1", threads=1)
        assert "@int8" not in backend.display_name
    decisions = _decisions(cache)
    assert len(decisions) == 2
    assert set(decisions[-1]["over_budget"]) == {"onnxruntime:cpu@int8", "openvino:fp32@int8"}
    assert decisions[-1]["budget"]["max_level_diff"] == 0


def test_the_decision_cache_follows_the_budget(repo: Path, cache: Path) -> None:
    first = create_backend(repo / "invert" / "1", threads=1)
    assert "measured now" in first.reason
    assert "(cached " in create_backend(repo / "invert" / "1", threads=1).reason
    accuracy.write_budget(repo / "invert", {"min_psnr": 45.0})
    assert "measured now" in create_backend(repo / "invert" / "1", threads=1).reason
    assert "(cached " in create_backend(repo / "invert" / "1", threads=1).reason
    assert len(_decisions(cache)) == 2


def test_exact_never_picks_reduced_precision(repo: Path, cache: Path) -> None:
    _variant(repo, stylizer_model())  # an exact copy marked int8: within any budget
    for name in ("exact", "auto:fp32"):
        backend = create_backend(repo / "invert" / "1", name, threads=1)
        assert backend.display_name in CPU_CHOICES and backend.variant is None
    decisions = _decisions(cache)
    assert len(decisions) == 1  # the same fp32 trial, cached
    assert set(decisions[0]["timings_ms"]) == CPU_CHOICES and "budget" not in decisions[0]
    # auto does consider it (and bf16 where the CPU has it), measured
    create_backend(repo / "invert" / "1", threads=1)
    assert {"onnxruntime:cpu@int8", "openvino:fp32@int8"} <= set(_decisions(cache)[-1]["timings_ms"])


def test_without_bf16_or_variants_auto_is_the_fp32_trial(repo: Path, cache: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OpenVinoBackend, "reduced_precisions", classmethod(lambda cls: ()))  # a CPU without bf16
    backend = create_backend(repo / "invert" / "1", threads=1)
    assert backend.display_name in CPU_CHOICES and "budget" not in backend.reason
    (decision,) = _decisions(cache)
    assert set(decision["timings_ms"]) == CPU_CHOICES and "deviations" not in decision
    # the same decision as exact's: nothing reduced was there to weigh
    assert "(cached " in create_backend(repo / "invert" / "1", "exact", threads=1).reason


def test_auto_bf16_is_measured_within_budget(repo: Path, cache: Path) -> None:
    if not OpenVinoBackend.reduced_precisions():
        pytest.skip("this CPU has no bf16 support for OpenVINO to use")
    _variant(repo, stylizer_model())
    create_backend(repo / "invert" / "1", "auto:bf16", threads=1)
    (decision,) = _decisions(cache)
    assert set(decision["timings_ms"]) == {*CPU_CHOICES, "openvino:bf16"}  # no variants: only bf16 was asked for
    assert decision["deviations"]["openvino:bf16"]["max_level_diff"] == 0  # 0..255 are exact in bf16


def test_a_chosen_variant_answers_under_the_asked_name(repo: Path) -> None:
    variant = _variant(repo, stylizer_model())
    model = Repository(repo).load("invert", backend="onnxruntime:cpu@int8", threads=1)
    assert model.backend.path == variant and model.backend_name == "onnxruntime:cpu@int8"
    assert (model.name, model.version, model.description) == ("invert", 1, "int8 stylizer")
    asked = Repository(repo).load("invert", backend="onnxruntime:cpu", threads=1)
    assert model.inputs == asked.inputs and model.outputs == asked.outputs
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    assert (model.stylize(red) == asked.stylize(red)).all()


def test_a_stale_variant_is_refused(repo: Path, cache: Path) -> None:
    _variant(repo, stylizer_model())
    add_model(repo, "invert", stylizer_model(multiple=2))  # the fp32 model changed after the variant was made
    with pytest.raises(ModelLoadError, match="is not a variant of .*make it again with `artforge quantize`"):
        create_backend(repo / "invert" / "1", "openvino:fp32@int8", threads=1)
    backend = create_backend(repo / "invert" / "1", threads=1)
    assert "@int8" not in backend.display_name
    unusable = backend.reason.rpartition("; ")[2]
    assert unusable.endswith(" could not run this model") and "onnxruntime:cpu@int8" in unusable
    assert "openvino:fp32@int8" in unusable
    with pytest.raises(InvalidInputError, match="unknown variant 'int4'"):
        create_backend(repo / "invert" / "1", "openvino@int4")
    with pytest.raises(InvalidInputError, match="auto picks variants itself"):
        create_backend(repo / "invert" / "1", "auto@int8")


def test_generator_variants_are_measured_on_seeded_latents(tmp_path: Path, cache: Path) -> None:
    repo = tmp_path / "repo"
    add_model(repo, "dreams", generator_model(latent=4, side=4))
    wrong = generator_model(latent=4, side=4)
    weights = next(t for t in wrong.graph.initializer if t.name == "weights")
    weights.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weights), "weights"))  # other images
    _variant(repo, wrong, name="dreams", precision="fp16")
    create_backend(repo / "dreams" / "1", threads=1)
    decision = _decisions(cache)[-1]
    assert decision["kind"] == contract.GENERATOR
    assert set(decision["over_budget"]) == {"onnxruntime:cpu@fp16", "openvino:fp32@fp16"}
    assert decision["deviations"]["onnxruntime:cpu@fp16"]["inputs"] == 16


def test_rules_with_a_gpu_measure_reduced_precision_first(repo: Path, cache: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The code path of a TensorRT fp16 engine on a GPU: dressed up as a GPU backend (score 30), OpenVINO's
    # bf16 is taken by preference rules only after measuring it within budget, and never by exact.
    if not OpenVinoBackend.reduced_precisions():
        pytest.skip("this CPU has no bf16 support for OpenVINO to use")
    monkeypatch.setattr(OpenVinoBackend, "probe", classmethod(lambda cls: Probe(30, "bf16", "pretend GPU")))
    backend = create_backend(repo / "invert" / "1", threads=1)
    assert backend.display_name == "openvino:bf16"
    assert "by preference rules (a GPU backend is present and GPUs come first)" in backend.reason
    assert "measured PSNR 99.0 dB, max 0 levels against fp32, within the budget" in backend.reason
    assert create_backend(repo / "invert" / "1", "exact", threads=1).display_name == "onnxruntime:cpu"
    assert not (cache / "auto").exists()


def test_representative_inputs_prefer_the_owners_samples(tmp_path: Path) -> None:
    from artforge.runtime import write_image

    meta = contract.ModelMetadata(contract.STYLIZER, size_multiple=4)
    procedural = representative_inputs(meta, 32)
    assert procedural.shape == (2, 32, 32, 3) and procedural.std() > 20  # edges and colour, not a flat field
    assert (representative_inputs(meta, 32) == procedural).all()  # seeded: the same on every machine
    folder = tmp_path / "invert"
    (folder / SAMPLES_DIR).mkdir(parents=True)
    for i, value in enumerate((10, 200)):
        write_image(folder / SAMPLES_DIR / f"{i}.png", np.full((40, 50, 3), value, np.uint8))
    samples = representative_inputs(meta, 32, folder)
    assert samples.shape == (2, 32, 32, 3) and sorted(np.unique(samples)) == [10, 200]


def test_budget_command_sets_shows_and_resets(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from artforge.cli import main
    from artforge.runtime import write_image

    assert main(["budget", "invert", "--repo", str(repo)]) == 0
    assert capsys.readouterr().out.splitlines() == ["invert (stylizer): PSNR >= 40 dB, max <= 12 levels",
                                                    "  min-psnr: 40 (default)", "  max-level-diff: 12 (default)"]
    assert main(["budget", "invert", "--repo", str(repo), "--min-psnr", "35"]) == 0
    assert main(["budget", "invert", "--repo", str(repo), "--max-level-diff", "30"]) == 0  # adds to what was set
    assert accuracy.read_overrides(repo / "invert") == {"min_psnr": 35.0, "max_level_diff": 30}
    assert "  min-psnr: 35 (set)" in capsys.readouterr().out
    assert Repository(repo).describe()[0]["budget"] == {"min_psnr": 35.0, "max_level_diff": 30}
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        write_image(photos / f"{i}.png", np.full((20, 30, 3), 60 * i, np.uint8))
    assert main(["budget", "invert", "--repo", str(repo), "--reset", "--samples", str(photos), "--measure"]) == 0
    out = capsys.readouterr().out
    assert "copied 3 sample image(s)" in out and "  min-psnr: 40 (default)" in out
    assert "auto picks " in out and "auto measured " in out
    assert not (repo / "invert" / accuracy.BUDGET_FILE).exists()
    assert len(list((repo / "invert" / SAMPLES_DIR).glob("*.png"))) == 3
    assert main(["budget", "invert", "--repo", str(repo), "--max-prob-diff", "2"]) == 2
    assert "max_prob_diff must be a number from 0 to 1" in capsys.readouterr().err
