"""KServe v2 over HTTP/REST, driven by the real tritonclient.http (JSON and binary tensors) and raw requests."""

from __future__ import annotations

import gzip
import json
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from serving_support import noise
from tritonclient.utils import InferenceServerException

from artforge.runtime import Repository

RED = np.zeros((1, 8, 8, 3), np.uint8)
RED[..., 0] = 255


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    return {"http_port": 0, "model_control": "explicit"}  # the load / unload tests (from loopback, no token)


@pytest.fixture(scope="module")
def base(server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


@pytest.fixture(scope="module")
def client(server):
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.http_port}")
    yield client
    client.close()
    # Its __del__ closes again, in whichever thread the garbage collector runs (a server thread, say), which
    # gevent refuses; once is enough.
    client.close = lambda: None


def tensor(name: str, array: np.ndarray, datatype: str, binary: bool = True) -> triton.InferInput:
    item = triton.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array, binary_data=binary)
    return item


def output(name: str, binary: bool, **kwargs: object) -> triton.InferRequestedOutput:
    return triton.InferRequestedOutput(name, binary_data=binary, **kwargs)


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of a POST, error statuses included."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def good_request(client: triton.InferenceServerClient) -> None:
    """The server still serves: a red image classifies as red."""
    result = client.infer("colours", [tensor("image", RED, "UINT8")])
    assert result.as_numpy("probabilities").argmax() == 0


# ------------------------------------------------------------------ health and metadata


def test_live_and_ready(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("colours")
    assert client.is_model_ready("colours", "2")
    assert not client.is_model_ready("colours", "1")
    assert not client.is_model_ready("broken")
    assert not client.is_model_ready("nope")


def test_server_and_model_metadata(client: triton.InferenceServerClient) -> None:
    meta = client.get_server_metadata()
    assert meta["name"] == "artforge" and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("invert")
    assert model["platform"] == "onnxruntime_onnx" and model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}]
    with pytest.raises(InferenceServerException, match="no model named 'nope'") as info:
        client.get_model_metadata("nope")
    assert info.value.status() == "404"
    with pytest.raises(InferenceServerException, match="model broken is not ready") as info:
        client.get_model_metadata("broken")
    assert info.value.status() == "503"


def test_model_config(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("colours")
    assert config["max_batch_size"] == 8
    assert config["input"] == [{"name": "image", "data_type": "TYPE_UINT8", "format": "FORMAT_NHWC",
                                "dims": [8, 8, 3]}]
    assert json.loads(config["parameters"]["artforge.labels"]["string_value"]) == ["red", "green", "blue"]


# ------------------------------------------------------------------ inference: three kinds, JSON and binary


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_classifier(client: triton.InferenceServerClient, binary: bool) -> None:
    images = np.zeros((3, 8, 8, 3), np.uint8)
    for i in range(3):
        images[i, ..., i] = 255
    result = client.infer("colours", [tensor("image", images, "UINT8", binary)], request_id="req-7",
                          outputs=[output("probabilities", binary)])
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (3, 3)
    assert list(probabilities.argmax(axis=1)) == [0, 1, 2]
    response = result.get_response()
    assert (response["id"], response["model_name"], response["model_version"]) == ("req-7", "colours", "2")
    assert ("binary_data_size" in response["outputs"][0].get("parameters", {})) == binary


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_generator_matches_in_process_model(client: triton.InferenceServerClient, repo_path: Path,
                                            binary: bool) -> None:
    latents = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    images = client.infer("dreams", [tensor("latent", latents, "FP32", binary)],
                          outputs=[output("image", binary)]).as_numpy("image")
    assert images.dtype == np.uint8 and images.shape == (5, 4, 4, 3)
    local = Repository(repo_path).load("dreams", threads=1)
    np.testing.assert_array_equal(images, local.infer({"latent": latents})["image"])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_stylizer(client: triton.InferenceServerClient, binary: bool) -> None:
    images = noise(8, 12)[np.newaxis]
    result = client.infer("invert", [tensor("image", images, "UINT8", binary)], outputs=[output("stylized", binary)])
    np.testing.assert_array_equal(result.as_numpy("stylized"), 255 - images)


def test_default_outputs_come_back_binary(client: triton.InferenceServerClient) -> None:
    # No outputs named: tritonclient asks binary_data_output, and every output comes back binary.
    result = client.infer("invert", [tensor("image", noise(4, 4)[np.newaxis], "UINT8")])
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 48


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_responses(client: triton.InferenceServerClient, algorithm: str) -> None:
    images = noise(8, 8, seed=2)[np.newaxis]
    result = client.infer("invert", [tensor("image", images, "UINT8")], request_compression_algorithm=algorithm,
                          response_compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("stylized"), 255 - images)


def test_fp16_latents_convert(client: triton.InferenceServerClient) -> None:
    latents = np.array([[0.5, -1.25, 2.0, 0.0]], np.float32)
    expected = client.infer("dreams", [tensor("latent", latents, "FP32")]).as_numpy("image")
    got = client.infer("dreams", [tensor("latent", latents.astype(np.float16), "FP16")]).as_numpy("image")
    np.testing.assert_array_equal(got, expected)


def test_classification_extension(client: triton.InferenceServerClient) -> None:
    for binary in (True, False):
        requested = [output("probabilities", binary, class_count=2)]
        top = client.infer("colours", [tensor("image", RED, "UINT8")], outputs=requested).as_numpy("probabilities")
        assert top.shape == (1, 2)
        first = top[0, 0].decode() if isinstance(top[0, 0], bytes) else top[0, 0]
        score, index, label = first.split(":")
        assert (index, label) == ("0", "red") and float(score) > 0.9


def test_nested_json_data_and_timeout(base: str) -> None:
    body = {"inputs": [{"name": "latent", "shape": [2, 4], "datatype": "FP32", "data": [[0.1] * 4, [0.2] * 4]}],
            "parameters": {"timeout": 10_000_000}}
    status, _, data = post(f"{base}/v2/models/dreams/versions/1/infer", json.dumps(body).encode())
    assert status == 200, data
    out = json.loads(data)["outputs"][0]
    assert out["datatype"] == "UINT8" and out["shape"] == [2, 4, 4, 3] and len(out["data"]) == 96


# ------------------------------------------------------------------ statistics and repository


def test_statistics(client: triton.InferenceServerClient) -> None:
    before = client.get_inference_statistics("invert")["model_stats"][0]
    client.infer("invert", [tensor("image", noise(4, 4, seed=1)[np.newaxis].repeat(2, axis=0), "UINT8")])
    stats = client.get_inference_statistics("invert")["model_stats"][0]
    assert stats["inference_count"] == before.get("inference_count", 0) + 2
    assert stats["inference_stats"]["success"]["count"] == \
        before["inference_stats"]["success"].get("count", 0) + 1
    assert {s["name"] for s in client.get_inference_statistics()["model_stats"]} == {"colours", "dreams", "invert"}
    with pytest.raises(InferenceServerException, match="no model named"):
        client.get_inference_statistics("nope")


def test_repository_index_load_unload(client: triton.InferenceServerClient) -> None:
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["colours"] == {"name": "colours", "version": "2", "state": "READY", "reason": ""}
    assert index["broken"]["state"] == "UNAVAILABLE"
    client.unload_model("invert")
    try:
        assert not client.is_model_ready("invert")
        with pytest.raises(InferenceServerException, match="model invert is not ready: unloaded") as info:
            client.infer("invert", [tensor("image", noise(4, 4)[np.newaxis], "UINT8")])
        assert info.value.status() == "503"
        good_request(client)
    finally:
        client.load_model("invert")
    assert client.is_model_ready("invert")
    client.load_model("dreams", config=json.dumps({"max_batch_size": 3}))
    try:
        assert client.get_model_config("dreams")["max_batch_size"] == 3
    finally:
        client.load_model("dreams")
    with pytest.raises(InferenceServerException, match="no model named 'nope'") as info:
        client.load_model("nope")
    assert info.value.status() == "404"
    good_request(client)


# ------------------------------------------------------------------ bad requests, each followed by a good one


def _raw(shape: list[int], size: int, extra: dict | None = None) -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"inputs": [{"name": "image", "shape": shape, "datatype": "UINT8",
                                     "parameters": {"binary_data_size": size}}], **(extra or {})}).encode()
    return header + RED.tobytes()[:size], {"Inference-Header-Content-Length": str(len(header))}


def _json_body(**fields: object) -> bytes:
    tensor_fields = {"name": "image", "shape": [1, 8, 8, 3], "datatype": "UINT8",
                     "data": RED.reshape(-1).tolist(), **fields}
    return json.dumps({"inputs": [tensor_fields]}).encode()


BAD_REQUESTS = {
    "not json": ("colours", b"{oops", {}, 400, "not valid JSON"),
    "no inputs": ("colours", b"{}", {}, 400, "needs 'inputs'"),
    "unknown model": ("nope", _json_body(), {}, 404, "no model named 'nope'"),
    "model failed to load": ("broken", _json_body(), {}, 503, "model broken is not ready"),
    "wrong input name": ("colours", _json_body(name="pixels"), {}, 400, "the request has 'pixels'"),
    "float image": ("colours", _json_body(datatype="FP32"), {}, 400, "FP32 but the model takes UINT8"),
    "data count": ("colours", _json_body(data=[1, 2, 3]), {}, 400, "data has 3 elements but shape"),
    "data not numbers": ("colours", _json_body(data=["a"] * 192), {}, 400, "must be JSON numbers"),
    "values out of range": ("colours", _json_body(data=[300] * 192), {}, 400, "outside the UINT8 range"),
    "wrong shape": ("colours", _json_body(shape=[1, 9, 8, 3]), {}, 400, "has shape \\[1,9,8,3\\]"),
    "header length past the body": ("colours", _json_body(), {"Inference-Header-Content-Length": "999999"}, 400,
                                    "Inference-Header-Content-Length"),
    "binary size past the data": ("colours", *_raw([1, 8, 8, 3], 192)[:1],
                                  {"Inference-Header-Content-Length": "20"}, 400, "JSON"),
    "raw data short": ("colours", *_raw([1, 8, 8, 3], 100), 400, "raw data is 100 bytes but shape"),
    "sequence parameters": ("colours", json.dumps({"inputs": json.loads(_json_body())["inputs"],
                                                   "parameters": {"sequence_id": 3}}).encode(), {}, 400,
                            "sequence batching is not supported"),
    "deeply nested JSON": ("colours", b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}, 400,
                           "not valid JSON"),
    "undecodable gzip": ("colours", b"not gzip", {"Content-Encoding": "gzip"}, 400, "cannot be inflated"),
    "gzip bomb": ("colours", gzip.compress(b" " * (65 << 20)), {"Content-Encoding": "gzip"}, 413,
                  "inflates to over this server's limit"),
    "bad timeout": ("colours", json.dumps({"inputs": json.loads(_json_body())["inputs"],
                                           "parameters": {"timeout": "soon"}}).encode(), {}, 400,
                    "parameter 'timeout'"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_then_good_one(base: str, client: triton.InferenceServerClient, case: str) -> None:
    model, body, headers, status, message = BAD_REQUESTS[case]
    got, _, data = post(f"{base}/v2/models/{model}/infer", body, headers)
    assert got == status, data
    assert re.search(message, json.loads(data)["error"]), data
    good_request(client)
