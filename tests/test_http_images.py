"""The HTTP image endpoints (/v1/models/...) with real image bytes, and every error status they map to."""

from __future__ import annotations

import io
import json
import re
import struct
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from onnx_builders import add_model, classifier_model
from serving_support import decode, encode, noise, running, solid

from artforge.proto.artforge.v1 import image_service_pb2 as api

MAX_PIXELS = 100_000
MAX_MESSAGE_MB = 0.25
GREEN = encode(solid((0, 255, 0)))


@pytest.fixture(scope="module")
def repo_path(repo_path: Path) -> Path:
    # Holds requests for 3 s waiting for a batch, in a queue of 2: a full queue and a deadline on demand.
    add_model(repo_path, "narrow", classifier_model(), config=(
        "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 3000000 "
        "default_queue_policy { max_queue_size: 2 } }\n"))
    return repo_path


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    return {"http_port": 0, "max_image_pixels": MAX_PIXELS, "max_message_mb": MAX_MESSAGE_MB}


@pytest.fixture(scope="module")
def base(server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def call(url: str, body: bytes | None = b"", headers: dict[str, str] | None = None,
         method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request, error statuses included."""
    request = urllib.request.Request(url, data=body if method == "POST" else None, headers=headers or {},
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def good_request(base: str) -> None:
    """The server still serves: a green image classifies as green."""
    status, _, body = call(f"{base}/v1/models/colours/classify", GREEN)
    assert status == 200, body
    assert json.loads(body)["labels"][0]["label"] == "green"


def multipart(field: str, data: bytes, filename: str = "photo.png") -> tuple[bytes, dict[str, str]]:
    boundary = "artforge-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# ------------------------------------------------------------------ the endpoints


def test_classify_body_and_multipart(base: str) -> None:
    status, headers, body = call(f"{base}/v1/models/colours/classify?top_k=1", encode(solid((255, 0, 0), 20, 30)))
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"model": "colours", "model_version": "2",
                                "labels": [{"label": "red", "score": pytest.approx(1, abs=0.1), "index": 0}]}
    status, _, body = call(f"{base}/v1/models/colours/classify", *multipart("image", encode(solid((0, 0, 255)))))
    assert status == 200 and json.loads(body)["labels"][0]["label"] == "blue"


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_stylize_is_the_image_api_result(base: str, image_api, fmt: str) -> None:
    photo = encode(noise(20, 30))
    status, headers, body = call(f"{base}/v1/models/invert/stylize?format={fmt}&quality=90", photo)
    assert status == 200 and headers["content-type"] == f"image/{fmt}"
    assert (headers["artforge-width"], headers["artforge-height"], headers["artforge-model"]) == ("30", "20", "invert")
    expected = image_api.Stylize(api.StylizeRequest(model="invert", image=photo, format=fmt, quality=90), timeout=10)
    assert body == expected.image  # one code path below both front ends
    if fmt == "png":
        np.testing.assert_array_equal(decode(body), 255 - decode(photo))


def test_stylize_keeps_the_input_format_and_max_side(base: str) -> None:
    status, headers, body = call(f"{base}/v1/models/invert/stylize?max_side=10", encode(noise(20, 40), ".jpg"))
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert decode(body).shape[:2] == (5, 10)


def test_generate_one_many_and_grid(base: str) -> None:
    status, headers, one = call(f"{base}/v1/models/dreams/generate?seed=7")
    assert status == 200 and headers["content-type"] == "image/png" and headers["artforge-seed"] == "7"
    assert decode(one).shape == (4, 4, 3)
    status, headers, zipped = call(f"{base}/v1/models/dreams/generate?seed=7&count=3")
    assert status == 200 and headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        names = archive.namelist()
        assert len(names) == 3 and archive.read(names[0]) == one  # the same seed, the same first image
    status, headers, grid = call(f"{base}/v1/models/dreams/generate?seed=7&count=4&grid=2&format=webp")
    assert status == 200 and headers["content-type"] == "image/webp"
    assert decode(grid).shape == (2 * 4 + 3 * 2, 2 * 4 + 3 * 2, 3)


def test_model_list(base: str) -> None:
    status, _, body = call(f"{base}/v1/models", None, method="GET")
    models = {m["name"]: m for m in json.loads(body)["models"]}
    assert status == 200 and models["colours"]["labels"] == ["red", "green", "blue"]
    assert models["invert"]["kind"] == "stylizer" and models["invert"]["inputs"][0]["shape"] == [-1, -1, -1, 3]
    assert not models["broken"]["ready"] and "ONNX Runtime cannot load" in models["broken"]["reason"]


# ------------------------------------------------------------------ errors, each followed by a good request


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and header chunk claiming a size, holding no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


ERRORS = {
    "undecodable image": ("colours/classify", b"junk", 400, "cannot be decoded|not an image|decode"),
    "no image": ("colours/classify", b"", 400, "the request has no image"),
    "bad format": ("invert/stylize?format=gif", GREEN, 400, "format 'gif' is not supported"),
    "bad option type": ("colours/classify?top_k=many", GREEN, 400, "top_k"),
    "wrong kind": ("colours/stylize", GREEN, 400, "model colours is a classifier; stylize needs a stylizer"),
    "unknown model": ("nope/classify", GREEN, 404, "no model named 'nope'"),
    "body too large": ("colours/classify", b"\0" * int(MAX_MESSAGE_MB * 1024 * 1024 + 1), 413,
                       "over this server's limit"),
    "too many pixels": ("colours/classify", png_header(1000, 1000), 413, "over the limit|pixels"),
    "too many images": ("dreams/generate?count=1000", b"", 413, "at most"),
    "model not ready": ("broken/classify", GREEN, 503, "model broken is not ready"),
    "deadline": ("narrow/classify?timeout=0.1", GREEN, 504, "deadline passed"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_error_status_then_good_request(base: str, case: str) -> None:
    path, body, status, message = ERRORS[case]
    got, headers, data = call(f"{base}/v1/models/{path}", body)
    assert got == status, data
    assert headers["content-type"] == "application/json"
    assert re.search(message, json.loads(data)["error"]), data
    good_request(base)


def test_full_queue_is_429_with_retry_after(base: str, server) -> None:
    results: list[int] = []
    waiting = [threading.Thread(target=lambda: results.append(call(f"{base}/v1/models/narrow/classify", GREEN)[0]))
               for _ in range(2)]
    for thread in waiting:
        thread.start()
    deadline = time.monotonic() + 10  # both queued (waiting out the 3 s batch delay), seen by the server itself
    while server.metrics.registry.get_sample_value("artforge_queue_depth", {"model": "narrow"}) != 2:
        assert time.monotonic() < deadline, "the two requests never reached the queue"
        time.sleep(0.01)
    status, headers, data = call(f"{base}/v1/models/narrow/classify", GREEN)
    assert status == 429, data
    assert headers["retry-after"] == "1" and "model narrow has 2 requests waiting" in json.loads(data)["error"]
    for thread in waiting:
        thread.join(10)
    assert results == [200, 200]
    assert call(f"{base}/v1/models/narrow/classify", GREEN)[0] == 200  # room again
    good_request(base)


def test_token_is_401_except_health_and_the_page(repo_path: Path) -> None:
    with running(repo_path, http_port=0, token="s3cret") as server:
        base = f"http://127.0.0.1:{server.http_port}"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, answer, data = call(f"{base}/v1/models/colours/classify", GREEN, headers)
            assert status == 401 and answer["www-authenticate"] == "Bearer", data
            assert "Authorization: Bearer" in json.loads(data)["error"]
            assert call(f"{base}/v2/models/colours", None, headers, "GET")[0] == 401
            assert call(f"{base}/v1/models", None, headers, "GET")[0] == 401
        for open_path in ("/v2/health/live", "/v2/health/ready", "/"):
            assert call(base + open_path, None, method="GET")[0] == 200, open_path
        status, _, data = call(f"{base}/v1/models/colours/classify", GREEN, {"Authorization": "bearer s3cret"})
        assert status == 200 and json.loads(data)["labels"][0]["label"] == "green"
