"""One image pipeline per kind: every path to a shipped model gives the same bytes for the same input.

The in-process API, the batch tool (its PNG output, lossless, so the pixels
before encoding), the image API over gRPC and HTTP (PNG responses) and
KServe over gRPC and REST (the raw graph call on what the pipeline built)
must agree exactly, because they all call artforge/runtime/pipeline.py and
Model.run.
"""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.http as triton_http
from serving_support import decode, encode

from artforge import contract
from artforge.batch.driver import run_stylize
from artforge.batch.local import LocalExecutor
from artforge.batch.options import BatchOptions
from artforge.proto.artforge.v1 import image_service_pb2 as api
from artforge.runtime import Repository

ZOO = Path(__file__).resolve().parent.parent / "zoo"


@pytest.fixture(scope="module")
def repo_path() -> Path:
    """The shipped zoo itself (read only): the module's server serves it."""
    return ZOO / "repository"


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    return {"backend": "onnxruntime", "http_port": 0}  # the in-process side loads ONNX Runtime too


@pytest.fixture(scope="module")
def repo(repo_path: Path) -> Repository:
    return Repository(repo_path)


@pytest.fixture(scope="module")
def kserve(target: str):
    client = triton.InferenceServerClient(target)
    yield client
    client.close()


@pytest.fixture(scope="module")
def rest(server):
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    yield client
    client.close()
    # Its __del__ closes again, in whichever thread the garbage collector runs (a server thread, say), which
    # gevent refuses; once is enough.
    client.close = lambda: None


def _http(server, path: str, body: bytes = b"") -> bytes:
    """POST to the server's HTTP image endpoints; the response body."""
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}{path}", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def _rest_raw(rest, model: str, name: str, array: np.ndarray, output: str) -> np.ndarray:
    tensor = triton_http.InferInput(name, list(array.shape), "UINT8" if array.dtype == np.uint8 else "FP32")
    tensor.set_data_from_numpy(array)
    return rest.infer(model, [tensor], outputs=[triton_http.InferRequestedOutput(output)]).as_numpy(output)


def _photo_rgba() -> np.ndarray:
    """A real photo, small and odd-sized (the stylizer pads it), with a gradient alpha to carry through."""
    bgr = cv2.imread(str(ZOO / "samples" / "chelsea.jpg"))
    rgb = cv2.cvtColor(cv2.resize(bgr, (75, 53), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1], dtype=np.uint8), (rgb.shape[0], 1))
    return np.dstack((rgb, alpha))


def _raw(kserve, model: str, name: str, array: np.ndarray, output: str) -> np.ndarray:
    tensor = triton.InferInput(name, list(array.shape), "UINT8" if array.dtype == np.uint8 else "FP32")
    tensor.set_data_from_numpy(array)
    return kserve.infer(model, [tensor], outputs=[triton.InferRequestedOutput(output)]).as_numpy(output)


def test_stylizer_paths_agree(repo: Repository, image_api, kserve, rest, server, tmp_path: Path) -> None:
    image = _photo_rgba()
    data = encode(image)
    model = repo.stylizer("mosaic", backend="onnxruntime", threads=1)
    in_process = model.stylize(data)
    assert in_process.shape == image.shape  # same size, alpha kept

    source = tmp_path / "in"
    source.mkdir()
    (source / "photo.png").write_bytes(data)
    run_stylize(LocalExecutor([model]), source, tmp_path / "out", BatchOptions(fmt="png"), progress=False)
    batch_tool = decode((tmp_path / "out" / "photo.png").read_bytes())

    response = image_api.Stylize(api.StylizeRequest(model="mosaic", image=data, format="png"), timeout=60)
    via_api = decode(response.image)

    prepared = model.prepare(data)
    row = _raw(kserve, "mosaic", "image", model.padded(prepared)[np.newaxis], "stylized")[0]
    kserve_path = np.dstack((row[:prepared.height, :prepared.width], prepared.alpha))
    via_http = decode(_http(server, "/v1/models/mosaic/stylize?format=png", data))
    row = _rest_raw(rest, "mosaic", "image", model.padded(prepared)[np.newaxis], "stylized")[0]
    rest_path = np.dstack((row[:prepared.height, :prepared.width], prepared.alpha))

    for other in (batch_tool, via_api, kserve_path, via_http, rest_path):
        np.testing.assert_array_equal(other, in_process)


def test_classifier_paths_agree(repo: Repository, image_api, kserve, rest, server) -> None:
    data = (ZOO / "samples" / "coffee.jpg").read_bytes()
    model = repo.classifier("art_style", backend="onnxruntime", threads=1)
    in_process = model.classify(data, top_k=len(model.labels))

    request = api.ClassifyRequest(model="art_style", image=data, top_k=len(model.labels))
    via_api = [(label.label, label.score) for label in image_api.Classify(request, timeout=60).labels]

    row = _raw(kserve, "art_style", "image", model.prepare([data]), "probabilities")[0]
    kserve_path = [(model.labels[i], float(row[i])) for i in model.best(row, len(model.labels))]
    answer = json.loads(_http(server, f"/v1/models/art_style/classify?top_k={len(model.labels)}", data))
    via_http = [(label["label"], label["score"]) for label in answer["labels"]]
    row = _rest_raw(rest, "art_style", "image", model.prepare([data]), "probabilities")[0]
    rest_path = [(model.labels[i], float(row[i])) for i in model.best(row, len(model.labels))]

    assert via_api == in_process == kserve_path == via_http == rest_path


def test_generator_paths_agree(repo: Repository, image_api, kserve, rest, server) -> None:
    model = repo.generator("abstract_dcgan", backend="onnxruntime", threads=1)
    in_process = model.generate(3, seed=11)

    request = api.GenerateRequest(model="abstract_dcgan", count=3, seed=11, format="png")
    via_api = [decode(data) for data in image_api.Generate(request, timeout=60).images]

    latents = contract.latents(3, model.latent_size, seed=11)
    kserve_path = list(_raw(kserve, "abstract_dcgan", "latent", latents, "image"))
    with zipfile.ZipFile(io.BytesIO(_http(server, "/v1/models/abstract_dcgan/generate?count=3&seed=11"))) as archive:
        via_http = [decode(archive.read(name)) for name in sorted(archive.namelist())]
    rest_path = list(_rest_raw(rest, "abstract_dcgan", "latent", latents, "image"))

    for images in (via_api, kserve_path, via_http, rest_path):
        assert len(images) == 3
        for got, want in zip(images, in_process, strict=True):
            np.testing.assert_array_equal(got, want)
