"""Repository listing, version resolution and malformed models."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx_builders import add_model, classifier_model, standard_repository, stylizer_model

from artforge.errors import InvalidInputError, ModelLoadError, NotFoundError, WrongKindError
from artforge.runtime import Classifier, Generator, Repository, Stylizer


@pytest.fixture(scope="module")
def repo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = standard_repository(tmp_path_factory.mktemp("repo"))
    add_model(root, "garbage", b"\x08\x07 definitely not an onnx model")
    add_model(root, "anonymous", classifier_model(props={}))  # no artforge metadata
    (root / "empty" / "1").mkdir(parents=True)  # a version folder still being copied in
    (root / ".cache" / "1").mkdir(parents=True)
    (root / "notes").mkdir()
    (root / "README.md").write_text("not a model")
    return root


def test_missing_repository(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="model repository .*nowhere"):
        Repository(tmp_path / "nowhere")


def test_names_and_versions(repo_path: Path) -> None:
    repo = Repository(repo_path)
    assert repo.names() == ["anonymous", "colours", "dreams", "empty", "garbage", "invert"]
    assert repo.versions("colours") == [1, 2]
    assert repo.versions("empty") == []


def test_load_latest_and_specific_versions(repo_path: Path) -> None:
    repo = Repository(repo_path)
    assert repo.load("colours", threads=1).version == 2
    for version in (1, "1"):
        model = repo.load("colours", version=version, backend="onnxruntime:cpu", threads=1)
        assert isinstance(model, Classifier) and model.version == 1
    assert isinstance(repo.load("dreams", threads=1), Generator)
    assert isinstance(repo.load("invert", threads=1), Stylizer)


def test_unknown_names_and_versions(repo_path: Path) -> None:
    repo = Repository(repo_path)
    with pytest.raises(NotFoundError, match="no model named 'monet'.*available: anonymous, colours, dreams"):
        repo.load("monet")
    with pytest.raises(NotFoundError, match="no model named '../colours'"):
        repo.load("../colours")
    with pytest.raises(NotFoundError, match="no version 7; available versions: 1, 2"):
        repo.load("colours", version=7)
    with pytest.raises(InvalidInputError, match="whole number"):
        repo.load("colours", version="latest")
    with pytest.raises(NotFoundError, match="has no versions"):
        repo.load("empty")


def test_empty_repository_says_so(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="repository is empty"):
        Repository(tmp_path).load("anything")


def test_malformed_models_fail_alone(repo_path: Path) -> None:
    repo = Repository(repo_path)
    with pytest.raises(ModelLoadError, match=r"garbage/1/model.onnx: ONNX Runtime cannot load"):
        repo.load("garbage")
    with pytest.raises(ModelLoadError, match="anonymous/1/model.onnx: not an artforge model"):
        repo.load("anonymous")
    entries = {e["name"]: e for e in repo.describe()}
    assert set(entries) == set(repo.names())
    assert "ONNX Runtime cannot load" in entries["garbage"]["error"]
    assert "not an artforge model" in entries["anonymous"]["error"]
    assert "has no versions" in entries["empty"]["error"]
    colours = entries["colours"]
    assert "error" not in colours and colours["kind"] == "classifier" and colours["version"] == 2
    assert colours["versions"] == [1, 2] and colours["labels"] == ["red", "green", "blue"]
    assert colours["inputs"] == [{"name": "image", "dtype": "uint8", "shape": [None, 8, 8, 3]}]
    assert colours["max_batch_size"] == 8
    assert entries["invert"]["size_multiple"] == 4 and entries["dreams"]["latent_size"] == 4


def test_new_versions_appear_without_reopening(tmp_path: Path) -> None:
    repo = Repository(tmp_path)
    add_model(tmp_path, "fresh", stylizer_model(multiple=2), 1)
    assert repo.names() == ["fresh"]
    add_model(tmp_path, "fresh", stylizer_model(multiple=8), 10)  # 10 > 9: numeric, not text, order
    add_model(tmp_path, "fresh", stylizer_model(multiple=4), 9)
    model = repo.load("fresh", threads=1)
    assert model.version == 10 and model.size_multiple == 8


def test_typed_accessors(repo_path: Path) -> None:
    repo = Repository(repo_path)
    assert isinstance(repo.classifier("colours", backend="onnxruntime"), Classifier)
    assert isinstance(repo.generator("dreams", backend="onnxruntime"), Generator)
    assert isinstance(repo.stylizer("invert", backend="onnxruntime"), Stylizer)
    # The wrong kind is one sentence naming the models that would do, decided before any backend loads.
    with pytest.raises(WrongKindError, match=r"model colours is a classifier, not a stylizer; stylizers in .*: invert"):
        repo.stylizer("colours")
    with pytest.raises(NotFoundError):
        repo.classifier("nowhere")
