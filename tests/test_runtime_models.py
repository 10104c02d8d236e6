"""Classifier, Generator and Stylizer end to end on tiny real ONNX graphs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx_builders import add_model, classifier_model, generator_model, save, standard_repository, stylizer_model

from artforge.contract import CLASSIFIER, ModelMetadata
from artforge.errors import InvalidInputError, ModelLoadError, ResourceExhaustedError
from artforge.runtime import Classifier, Generator, Repository, Stylizer, encode_image, load_model
from artforge.runtime.pipeline import center_square, pad_to_multiple


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repository:
    return Repository(standard_repository(tmp_path_factory.mktemp("repo")))


@pytest.fixture(scope="module")
def classifier(repo: Repository) -> Classifier:
    return repo.load("colours", threads=1)


@pytest.fixture(scope="module")
def generator(repo: Repository) -> Generator:
    return repo.load("dreams", threads=1)


@pytest.fixture(scope="module")
def stylizer(repo: Repository) -> Stylizer:
    return repo.load("invert", threads=1)


def solid(colour: tuple[int, ...], height: int = 12, width: int = 20) -> np.ndarray:
    return np.full((height, width, len(colour)), colour, dtype=np.uint8)


def noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


# -- classifier ------------------------------------------------------------------

def test_classifier_identity(classifier: Classifier) -> None:
    assert isinstance(classifier, Classifier)
    assert (classifier.name, classifier.version, classifier.kind) == ("colours", 2, CLASSIFIER)
    assert classifier.metadata.labels == ("red", "green", "blue") and classifier.input_size == 8
    assert classifier.backend_name.startswith("onnxruntime")


def test_classify_any_image_form(classifier: Classifier, tmp_path: Path) -> None:
    green_file = tmp_path / "green.png"
    green_file.write_bytes(encode_image(solid((0, 255, 0))))
    blue_jpeg = encode_image(solid((0, 0, 255), 300, 200), "jpeg")
    results = classifier.classify_batch([solid((255, 0, 0)), green_file, str(green_file), blue_jpeg], top_k=1)
    assert [r[0][0] for r in results] == ["red", "green", "green", "blue"]
    top = classifier.classify(solid((255, 0, 0)), top_k=5)  # top_k above the class count is clamped
    assert [label for label, _ in top] == ["red", "green", "blue"]
    assert top[0][1] > 0.99 and abs(sum(p for _, p in top) - 1) < 1e-5
    assert all(isinstance(p, float) for _, p in top)


def test_classify_grayscale_sixteen_bit_and_rgba(classifier: Classifier) -> None:
    gray16 = np.full((10, 10), 65535, np.uint16)
    probabilities = classifier.probabilities([gray16])
    np.testing.assert_allclose(probabilities, 1 / 3, atol=1e-6)  # white: all classes equal
    # Transparent pixels are composited over white whatever colour they store:
    # a half-transparent red square on a transparent red canvas is pinkish, so still red.
    rgba = solid((255, 0, 0, 0), 16, 16)
    rgba[4:12, 4:12, 3] = 255
    assert classifier.classify(rgba, top_k=1)[0][0] == "red"
    assert classifier.probabilities([rgba])[0, 0] < classifier.probabilities([rgba[..., :3]])[0, 0]


def test_classify_rejects_bad_top_k(classifier: Classifier) -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidInputError, match="top_k"):
            classifier.classify(solid((1, 2, 3)), top_k=bad)
    assert classifier.probabilities([]).shape == (0, 3)


def test_center_square_is_resize_then_crop() -> None:
    image = noise(32, 48)  # an exact factor of 4, so both orders give identical pixels
    resized = cv2.resize(image, (12, 8), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(center_square(image, 8), resized[:, 2:10])
    np.testing.assert_array_equal(center_square(image.transpose(1, 0, 2), 8), resized.transpose(1, 0, 2)[2:10])
    out = np.zeros((2, 8, 8, 3), np.uint8)
    center_square(noise(3, 5), 8, out=out[1])  # upscales tiny images, straight into the batch
    assert out[1].any() and not out[0].any()


def test_fixed_batch_graphs_and_max_batch_size(tmp_path: Path) -> None:
    images = [solid(c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))] * 2 + [solid((255, 0, 0))]
    expected = ["red", "green", "blue"] * 2 + ["red"]
    add_model(tmp_path, "fixed", classifier_model(batch=2))  # 7 images -> 4 runs, the last padded
    add_model(tmp_path, "capped", classifier_model(), config="max_batch_size: 3\n")
    repo = Repository(tmp_path)
    for name in ("fixed", "capped"):
        model = repo.load(name, threads=1)
        assert [r[0][0] for r in model.classify_batch(images, top_k=1)] == expected
    assert repo.max_batch_size("capped") == 3 and repo.max_batch_size("fixed") is None
    with pytest.raises(InvalidInputError, match="batch of 4 is over its max_batch_size of 3"):
        repo.load("capped", threads=1).infer({"image": np.zeros((4, 8, 8, 3), np.uint8)})


# -- generator -------------------------------------------------------------------

def test_generate_is_reproducible(generator: Generator) -> None:
    first = generator.generate(3, seed=42)
    assert len(first) == 3 and all(i.shape == (4, 4, 3) and i.dtype == np.uint8 for i in first)
    again = generator.generate(3, seed=42)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], generator.generate(1, seed=43)[0])
    latents = generator.latents(2, seed=42)
    assert latents.dtype == np.float32 and latents.shape == (2, 4)
    np.testing.assert_array_equal(latents, np.random.default_rng(42).standard_normal((2, 4), dtype=np.float32))
    np.testing.assert_array_equal(generator.infer({"latent": latents})["image"][1], first[1])


def test_generate_count_limits(generator: Generator) -> None:
    with pytest.raises(InvalidInputError, match="count"):
        generator.generate(0)
    with pytest.raises(ResourceExhaustedError, match="at most"):
        generator.generate(10**6)


# -- stylizer --------------------------------------------------------------------

@pytest.mark.parametrize("size", [(1, 1), (7, 9), (8, 8), (5, 13)])
def test_stylize_pads_and_crops_back(stylizer: Stylizer, size: tuple[int, int]) -> None:
    # The graph fails unless H and W are multiples of 4, so this also proves the padding.
    image = noise(*size)
    result = stylizer.stylize(image)
    assert result.shape == image.shape and result.flags.c_contiguous
    np.testing.assert_array_equal(result, 255 - image)


def test_stylize_keeps_alpha_and_downscales(stylizer: Stylizer, tmp_path: Path) -> None:
    rgba = noise(9, 11, channels=4)
    result = stylizer.stylize(rgba)
    assert result.shape == (9, 11, 4)
    np.testing.assert_array_equal(result[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(result[..., :3], 255 - rgba[..., :3])
    small = stylizer.stylize(rgba, max_side=5)
    assert small.shape == (4, 5, 4)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encode_image(noise(300, 400), "jpeg"))
    assert stylizer.stylize(photo, max_side=64).shape == (48, 64, 3)  # reduced JPEG decode, then resize
    assert stylizer.stylize(noise(6, 4), max_side=100).shape == (6, 4, 3)  # never upscales
    with pytest.raises(InvalidInputError, match="max_side"):
        stylizer.stylize(rgba, max_side=0)


def test_stylize_batch_matches_single(stylizer: Stylizer) -> None:
    images = [noise(7, 9, seed=1), noise(5, 5, seed=2), noise(6, 10, seed=3), noise(8, 8, seed=4)]
    results = stylizer.stylize_batch(images)
    assert [r.shape for r in results] == [i.shape for i in images]
    for image, result in zip(images, results, strict=True):
        np.testing.assert_array_equal(result, stylizer.stylize(image))


def test_reflect_padding_mirrors_edges() -> None:
    image = noise(5, 6)
    padded = pad_to_multiple(image, 4)
    np.testing.assert_array_equal(padded, np.pad(image, ((0, 3), (0, 2), (0, 0)), mode="reflect"))
    already = noise(4, 8)
    assert pad_to_multiple(already, 4) is already  # nothing to pad: no copy


# -- raw infer and the contract at load --------------------------------------------

def test_infer_validates_inputs(classifier: Classifier, stylizer: Stylizer) -> None:
    good = np.zeros((2, 8, 8, 3), np.uint8)
    assert classifier.infer({"image": good})["probabilities"].shape == (2, 3)
    bad_inputs = [
        ({"image": good.astype(np.float32)}, "must be uint8, got float32"),
        ({"image": good[0]}, r"must have shape image uint8\[\?,8,8,3\], got \[8, 8, 3\]"),
        ({"image": np.zeros((2, 9, 8, 3), np.uint8)}, "must have shape"),
        ({"pixels": good}, "takes input"),
        ({}, "got none"),
        ({"image": good.tolist()}, "got list"),
    ]
    for feeds, message in bad_inputs:
        with pytest.raises(InvalidInputError, match=message):
            classifier.infer(feeds)
    strided = np.zeros((1, 8, 16, 3), np.uint8)[:, :, ::2]  # non-contiguous is accepted
    assert stylizer.infer({"image": strided})["stylized"].shape == (1, 8, 8, 3)


def test_contract_mismatch_is_a_load_error(tmp_path: Path) -> None:
    wrong_size = ModelMetadata(CLASSIFIER, labels=("a", "b", "c"), input_size=16).to_props()
    wrong_labels = ModelMetadata(CLASSIFIER, labels=("a", "b"), input_size=8).to_props()
    generator_as_stylizer = stylizer_model().metadata_props
    cases = {
        "size": (classifier_model(props=wrong_size), "says artforge.input_size 16 but the graph has image uint8"),
        "labels": (classifier_model(props=wrong_labels), "says 2 labels"),
        "outputs": (stylizer_model(output_name="image_out"), "must have output"),
        "kind": (generator_model(props={p.key: p.value for p in generator_as_stylizer}), "must have input"),
        "plain": (classifier_model(props={}), "not an artforge model"),
    }
    for name, (model, message) in cases.items():
        path = save(model, tmp_path / name / "model.onnx")
        with pytest.raises(ModelLoadError, match=message):
            load_model(path)


def test_load_model_outside_a_repository(tmp_path: Path) -> None:
    model = load_model(save(stylizer_model(), tmp_path / "invert" / "3" / "model.onnx"), threads=1)
    assert isinstance(model, Stylizer) and (model.name, model.version) == ("invert", 3)
    bare = load_model(save(generator_model(), tmp_path / "dcgan.onnx"), backend="onnxruntime:cpu", threads=1)
    assert isinstance(bare, Generator) and bare.name == "dcgan" and bare.version is None
    with pytest.raises(ModelLoadError, match="is a generator, not a stylizer"):
        Stylizer(bare.backend)
