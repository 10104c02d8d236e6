"""artforge.v1.ImageService with real PNG / JPEG bytes and the generated stubs."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest
from serving_support import decode, encode, noise, rpc_error, solid

from artforge.proto.artforge.v1 import image_service_pb2 as api
from artforge.runtime import Repository

MAX_PIXELS = 100_000
MAX_MESSAGE_MB = 0.25


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    # max_batch_size 2 makes Generate split a count of 5 into three graph runs.
    return {"max_image_pixels": MAX_PIXELS, "max_message_mb": MAX_MESSAGE_MB, "max_request_batch": 8,
            "max_batch_size": 2}


def classify(image_api, image: bytes, model: str = "colours", **fields) -> api.ClassifyResponse:
    return image_api.Classify(api.ClassifyRequest(model=model, image=image, **fields), timeout=10)


def good_request(image_api) -> None:
    """The server still serves after a bad request."""
    assert classify(image_api, encode(solid((0, 255, 0)))).labels[0].label == "green"


def png_header(width: int, height: int) -> bytes:
    """Only a PNG signature and header chunk: claims a size, holds no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


# ------------------------------------------------------------------ Classify


def test_classify_png_and_jpeg(image_api) -> None:
    red = classify(image_api, encode(solid((255, 0, 0), 20, 30)))
    assert (red.model, red.model_version) == ("colours", "2")
    assert [label.label for label in red.labels] == ["red", "green", "blue"]  # top_k 0 = 5, capped at 3 classes
    assert red.labels[0].index == 0 and red.labels[0].score > 0.9
    assert red.labels[0].score >= red.labels[1].score >= red.labels[2].score
    blue = classify(image_api, encode(solid((0, 0, 255), 30, 40), ".jpg"), top_k=1)
    assert [(label.label, label.index) for label in blue.labels] == [("blue", 2)]


# ------------------------------------------------------------------ Generate


def test_generate_matches_in_process_generator(image_api, repo_path: Path) -> None:
    response = image_api.Generate(api.GenerateRequest(model="dreams", count=5, seed=7), timeout=10)
    assert (response.format, response.seed, len(response.images)) == ("png", 7, 5)
    local = Repository(repo_path).load("dreams", threads=1).generate(5, seed=7)
    for data, expected in zip(response.images, local, strict=True):
        np.testing.assert_array_equal(decode(data), expected)


def test_generate_random_seed_is_reported_and_reproducible(image_api) -> None:
    first = image_api.Generate(api.GenerateRequest(model="dreams", format="jpeg", quality=80), timeout=10)
    assert len(first.images) == 1 and first.format == "jpeg" and first.images[0][:2] == b"\xff\xd8"
    again = image_api.Generate(api.GenerateRequest(model="dreams", format="jpeg", quality=80, seed=first.seed),
                               timeout=10)
    assert again.images == first.images
    zero = image_api.Generate(api.GenerateRequest(model="dreams", seed=0), timeout=10)
    assert zero.seed == 0


# ------------------------------------------------------------------ Stylize


def test_stylize_png_keeps_size_and_format(image_api) -> None:
    image = noise(7, 10)  # not multiples of the model's 4: padded, then cropped back
    response = image_api.Stylize(api.StylizeRequest(model="invert", image=encode(image), request_id="x"), timeout=10)
    assert (response.width, response.height, response.format, response.request_id) == (10, 7, "png", "x")
    np.testing.assert_array_equal(decode(response.image), 255 - image)


def test_stylize_jpeg_webp_alpha_and_max_side(image_api) -> None:
    jpeg = image_api.Stylize(api.StylizeRequest(model="invert", image=encode(solid((10, 20, 30), 12, 12), ".jpg")),
                        timeout=10)
    assert jpeg.format == "jpeg" and jpeg.image[:2] == b"\xff\xd8"
    webp = image_api.Stylize(api.StylizeRequest(model="invert", image=encode(noise(8, 8)), format="webp"), timeout=10)
    assert webp.format == "webp" and webp.image[8:12] == b"WEBP"
    rgba = noise(8, 8, channels=4, seed=2)
    styled = decode(image_api.Stylize(api.StylizeRequest(model="invert", image=encode(rgba)), timeout=10).image)
    np.testing.assert_array_equal(styled[..., 3], rgba[..., 3])  # alpha kept as it was
    np.testing.assert_array_equal(styled[..., :3], 255 - rgba[..., :3])
    small = image_api.Stylize(api.StylizeRequest(model="invert", image=encode(noise(7, 10)), max_side=5), timeout=10)
    assert (small.width, small.height) == (5, 4)
    assert decode(small.image).shape == (4, 5, 3)


def test_stylize_stream_reports_bad_items_in_band(image_api) -> None:
    images = [noise(8, 8, seed=i) for i in range(3)]
    requests = [
        api.StylizeRequest(model="invert", image=encode(images[0]), request_id="first"),
        api.StylizeRequest(model="invert", image=encode(images[1])),
        api.StylizeRequest(model="invert", image=b"definitely not an image"),
        api.StylizeRequest(model="colours", image=encode(images[2])),
        api.StylizeRequest(model="invert", image=encode(images[2])),
    ]
    responses = list(image_api.StylizeStream(iter(requests), timeout=20))
    assert [r.request_id for r in responses] == ["first", "1", "2", "3", "4"]
    for response, image in zip([responses[0], responses[1], responses[4]], images, strict=True):
        assert not response.HasField("error")
        np.testing.assert_array_equal(decode(response.image), 255 - image)
    assert responses[2].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "could not be decoded" in responses[2].error.message and not responses[2].image
    assert responses[3].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "colours is a classifier; Stylize needs a stylizer" in responses[3].error.message


# ------------------------------------------------------------------ ListModels


def test_list_models(image_api) -> None:
    models = {m.name: m for m in image_api.ListModels(api.ListModelsRequest(), timeout=10).models}
    assert list(models) == ["broken", "colours", "dreams", "invert"]
    colours = models["colours"]
    assert (colours.kind, colours.ready, colours.reason) == ("classifier", True, "")
    assert list(colours.versions) == ["1", "2"] and list(colours.labels) == ["red", "green", "blue"]
    assert colours.backend.startswith("onnxruntime")
    assert [(t.name, t.datatype, list(t.shape)) for t in colours.inputs] == [("image", "UINT8", [-1, 8, 8, 3])]
    assert models["invert"].kind == "stylizer" and models["dreams"].outputs[0].datatype == "UINT8"
    broken = models["broken"]
    assert not broken.ready and "ONNX Runtime cannot load" in broken.reason and not broken.backend


# ------------------------------------------------------------------ bad requests

GREEN_PNG = encode(solid((0, 255, 0)))
BAD_REQUESTS = {
    "garbage bytes": ("Classify", api.ClassifyRequest(model="colours", image=b"\x00garbage" * 10),
                      grpc.StatusCode.INVALID_ARGUMENT, "ClassifyRequest.image could not be decoded"),
    "truncated png": ("Classify", api.ClassifyRequest(model="colours", image=encode(noise(32, 32))[:200]),
                      grpc.StatusCode.INVALID_ARGUMENT, "could not be decoded"),
    "truncated jpeg": ("Stylize", api.StylizeRequest(model="invert", image=encode(noise(32, 32), ".jpg")[:100]),
                       grpc.StatusCode.INVALID_ARGUMENT, "StylizeRequest.image could not be decoded"),
    "empty image": ("Classify", api.ClassifyRequest(model="colours"),
                    grpc.StatusCode.INVALID_ARGUMENT, "no data in ClassifyRequest.image"),
    "unknown model": ("Classify", api.ClassifyRequest(model="monet", image=GREEN_PNG),
                      grpc.StatusCode.NOT_FOUND, "no model named 'monet'"),
    "model failed to load": ("Classify", api.ClassifyRequest(model="broken", image=GREEN_PNG),
                             grpc.StatusCode.FAILED_PRECONDITION, "model broken is not ready"),
    "wrong kind": ("Classify", api.ClassifyRequest(model="invert", image=GREEN_PNG),
                   grpc.StatusCode.FAILED_PRECONDITION, "invert is a stylizer; Classify needs a classifier"),
    "negative top_k": ("Classify", api.ClassifyRequest(model="colours", image=GREEN_PNG, top_k=-1),
                       grpc.StatusCode.INVALID_ARGUMENT, "top_k must be positive"),
    "unknown format": ("Stylize", api.StylizeRequest(model="invert", image=GREEN_PNG, format="gif"),
                       grpc.StatusCode.INVALID_ARGUMENT, "format 'gif' is not supported"),
    "quality out of range": ("Stylize", api.StylizeRequest(model="invert", image=GREEN_PNG, format="jpeg",
                                                           quality=101),
                             grpc.StatusCode.INVALID_ARGUMENT, "quality must be from 1 to 100"),
    "negative max_side": ("Stylize", api.StylizeRequest(model="invert", image=GREEN_PNG, max_side=-3),
                          grpc.StatusCode.INVALID_ARGUMENT, "max_side must be positive"),
    "too many images": ("Generate", api.GenerateRequest(model="dreams", count=9),
                        grpc.StatusCode.RESOURCE_EXHAUSTED, "at most 8 images per request"),
    "negative count": ("Generate", api.GenerateRequest(model="dreams", count=-2),
                       grpc.StatusCode.INVALID_ARGUMENT, "count must be positive"),
    "negative seed": ("Generate", api.GenerateRequest(model="dreams", seed=-1),
                      grpc.StatusCode.INVALID_ARGUMENT, "seed must not be negative"),
    "oversized image, refused from its header": (
        "Classify", api.ClassifyRequest(model="colours", image=png_header(50_000, 50_000)),
        grpc.StatusCode.RESOURCE_EXHAUSTED, "is 50000x50000 .* over the limit"),
    "oversized real image": ("Stylize", api.StylizeRequest(model="invert", image=encode(solid((1, 2, 3), 400, 400))),
                             grpc.StatusCode.RESOURCE_EXHAUSTED, "is 400x400"),
    "message over the size limit": ("Classify", api.ClassifyRequest(model="colours", image=b"\xff" * 300_000),
                                    grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_then_good_one(image_api, case: str) -> None:
    method, request, code, message = BAD_REQUESTS[case]
    error = rpc_error(getattr(image_api, method), request, timeout=10)
    assert error.code() == code, error.details()
    assert re.search(message, error.details()), error.details()
    good_request(image_api)
