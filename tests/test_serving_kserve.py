"""The KServe v2 service, driven by the real tritonclient (and raw stubs for malformed requests)."""

from __future__ import annotations

import json
import queue
import re
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from serving_support import noise, rpc_error
from tritonclient.utils import InferenceServerException

from artforge.proto.inference import grpc_service_pb2 as pb
from artforge.runtime import Repository

RED = np.zeros((1, 8, 8, 3), np.uint8)
RED[..., 0] = 255


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    return {"model_control": "explicit"}  # the load / unload tests (from loopback, no token)


@pytest.fixture(scope="module")
def client(target: str):
    client = triton.InferenceServerClient(url=target)
    yield client
    client.close()


def tensor(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    item = triton.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array)
    return item


def good_request(client: triton.InferenceServerClient) -> None:
    """The server still serves: a red image classifies as red."""
    result = client.infer("colours", [tensor("image", RED, "UINT8")])
    assert result.as_numpy("probabilities").argmax() == 0


# ------------------------------------------------------------------ health and metadata


def test_live_and_ready(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    # `broken` failed to load, yet the server is ready: the others serve.
    assert client.is_server_ready()
    assert client.is_model_ready("colours")
    assert client.is_model_ready("colours", "2")
    assert not client.is_model_ready("colours", "1")  # only the latest version loads
    assert not client.is_model_ready("broken")
    assert not client.is_model_ready("nope")


def test_server_metadata(client: triton.InferenceServerClient) -> None:
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "artforge"
    assert {"model_repository", "statistics", "binary_tensor_data"} <= set(meta["extensions"])


def test_model_metadata(client: triton.InferenceServerClient) -> None:
    meta = client.get_model_metadata("invert", as_json=True)
    assert meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": ["-1", "-1", "-1", "3"]}]
    assert meta["outputs"][0]["name"] == "stylized"
    with pytest.raises(InferenceServerException, match="no model named 'nope'") as info:
        client.get_model_metadata("nope")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="model broken is not ready") as info:
        client.get_model_metadata("broken")
    assert info.value.status() == "StatusCode.FAILED_PRECONDITION"


def test_model_config(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config("colours", as_json=True)["config"]
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 8  # from colours/config.pbtxt
    assert config["input"] == [{"name": "image", "data_type": "TYPE_UINT8", "format": "FORMAT_NHWC",
                                "dims": ["8", "8", "3"]}]
    assert config["output"] == [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": ["3"]}]
    assert config["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 128
    assert config["instance_group"][0]["count"] == 1
    assert json.loads(config["parameters"]["artforge.labels"]["string_value"]) == ["red", "green", "blue"]
    generator = client.get_model_config("dreams", as_json=True)["config"]
    assert generator["max_batch_size"] == 64 and generator["input"][0]["data_type"] == "TYPE_FP32"


# ------------------------------------------------------------------ inference


def test_classifier_uint8(client: triton.InferenceServerClient) -> None:
    images = np.zeros((3, 8, 8, 3), np.uint8)
    for i in range(3):
        images[i, ..., i] = 255
    result = client.infer("colours", [tensor("image", images, "UINT8")], request_id="req-7")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (3, 3)
    assert list(probabilities.argmax(axis=1)) == [0, 1, 2]
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("req-7", "colours", "2")


def test_generator_fp32_matches_in_process_model(client: triton.InferenceServerClient, repo_path: Path) -> None:
    latents = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    images = client.infer("dreams", [tensor("latent", latents, "FP32")]).as_numpy("image")
    assert images.dtype == np.uint8 and images.shape == (5, 4, 4, 3)
    local = Repository(repo_path).load("dreams", threads=1)
    np.testing.assert_array_equal(images, local.infer({"latent": latents})["image"])


@pytest.mark.parametrize("datatype", ["FP16", "FP64"])
def test_generator_converts_other_float_latents(client: triton.InferenceServerClient, datatype: str) -> None:
    # Values exact in FP16, so every datatype carries the same numbers.
    latents = np.array([[0.5, -1.25, 2.0, 0.0]], np.float32)
    expected = client.infer("dreams", [tensor("latent", latents, "FP32")]).as_numpy("image")
    wide = latents.astype(np.float16 if datatype == "FP16" else np.float64)
    got = client.infer("dreams", [tensor("latent", wide, datatype)]).as_numpy("image")
    np.testing.assert_array_equal(got, expected)


def test_stylizer_uint8(client: triton.InferenceServerClient) -> None:
    images = noise(8, 12)[np.newaxis]
    result = client.infer("invert", [tensor("image", images, "UINT8")])
    np.testing.assert_array_equal(result.as_numpy("stylized"), 255 - images)


def test_int64_pixels_convert_to_uint8(client: triton.InferenceServerClient) -> None:
    result = client.infer("colours", [tensor("image", RED.astype(np.int64), "INT64")])
    assert result.as_numpy("probabilities").argmax() == 0


def test_typed_contents_in_typed_contents_out(kserve_api) -> None:
    request = pb.ModelInferRequest(model_name="colours", id="typed", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="image", datatype="UINT8", shape=[1, 8, 8, 3],
        contents=pb.InferTensorContents(uint_contents=RED.reshape(-1).tolist()))])
    response = kserve_api.ModelInfer(request)
    assert response.id == "typed" and not response.raw_output_contents
    (output,) = response.outputs
    assert output.datatype == "FP32" and list(output.shape) == [1, 3]
    assert np.argmax(output.contents.fp32_contents) == 0

    latents = pb.ModelInferRequest(model_name="dreams", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="latent", datatype="FP64", shape=[1, 4], contents=pb.InferTensorContents(fp64_contents=[0.1] * 4))])
    image = kserve_api.ModelInfer(latents).outputs[0]
    assert image.datatype == "UINT8" and len(image.contents.uint_contents) == 4 * 4 * 3


def test_classification_extension(client: triton.InferenceServerClient) -> None:
    requested = [triton.InferRequestedOutput("probabilities", class_count=2)]
    top = client.infer("colours", [tensor("image", RED, "UINT8")], outputs=requested).as_numpy("probabilities")
    assert top.shape == (1, 2)
    score, index, label = top[0, 0].decode().split(":")
    assert (index, label) == ("0", "red") and float(score) > 0.9


def test_stream_infer(client: triton.InferenceServerClient) -> None:
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer("colours", [tensor("image", RED, "UINT8")], request_id="a")
        client.async_stream_infer("nope", [tensor("image", RED, "UINT8")], request_id="b")
        latents = np.zeros((2, 4), np.float32)
        client.async_stream_infer("dreams", [tensor("latent", latents, "FP32")], request_id="c")
        got = [results.get(timeout=10) for _ in range(3)]
    finally:
        client.stop_stream()
    (first, err1), (_, err2), (third, err3) = got
    assert err1 is None and err3 is None
    assert first.get_response().id == "a" and first.as_numpy("probabilities").argmax() == 0
    assert "no model named 'nope'" in str(err2)  # in-band; the stream went on
    assert third.get_response().id == "c" and third.as_numpy("image").shape == (2, 4, 4, 3)


# ------------------------------------------------------------------ statistics and repository


def test_statistics(client: triton.InferenceServerClient) -> None:
    before = client.get_inference_statistics("invert", as_json=True)["model_stats"][0]
    images = noise(4, 4, seed=1)[np.newaxis].repeat(2, axis=0)
    client.infer("invert", [tensor("image", images, "UINT8")])
    stats = client.get_inference_statistics("invert", as_json=True)["model_stats"][0]
    assert stats["name"] == "invert" and stats["version"] == "1"
    assert int(stats["inference_count"]) == int(before.get("inference_count", 0)) + 2
    assert int(stats["execution_count"]) == int(before.get("execution_count", 0)) + 1
    success = stats["inference_stats"]["success"]
    assert int(success["count"]) == int(before["inference_stats"].get("success", {}).get("count", 0)) + 1
    assert int(success["ns"]) > 0 and int(stats["last_inference"]) > 0
    assert any(b["batch_size"] == "2" for b in stats["batch_stats"])
    everything = client.get_inference_statistics(as_json=True)["model_stats"]
    assert {s["name"] for s in everything} == {"colours", "dreams", "invert"}
    with pytest.raises(InferenceServerException, match="no model named"):
        client.get_inference_statistics("nope")


def test_repository_index(client: triton.InferenceServerClient) -> None:
    index = {m["name"]: m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index["colours"] == {"name": "colours", "version": "2", "state": "READY"}
    assert index["broken"]["state"] == "UNAVAILABLE"
    assert "ONNX Runtime cannot load" in index["broken"]["reason"]
    ready = client.get_model_repository_index(as_json=True)
    assert "broken" in {m["name"] for m in ready["models"]}


def test_repository_index_ready_only(kserve_api) -> None:
    names = {m.name for m in kserve_api.RepositoryIndex(pb.RepositoryIndexRequest(ready=True)).models}
    assert names == {"colours", "dreams", "invert"}


def test_unload_and_load(client: triton.InferenceServerClient) -> None:
    client.unload_model("invert")
    try:
        assert not client.is_model_ready("invert")
        with pytest.raises(InferenceServerException, match="model invert is not ready: unloaded") as info:
            client.infer("invert", [tensor("image", noise(4, 4)[np.newaxis], "UINT8")])
        assert info.value.status() == "StatusCode.FAILED_PRECONDITION"
        good_request(client)
    finally:
        client.load_model("invert")
    assert client.is_model_ready("invert")
    client.infer("invert", [tensor("image", noise(4, 4)[np.newaxis], "UINT8")])


def test_load_with_config_override(client: triton.InferenceServerClient) -> None:
    client.load_model("dreams", config=json.dumps({"max_batch_size": 3, "instance_group": [{"count": 2}]}))
    try:
        config = client.get_model_config("dreams", as_json=True)["config"]
        assert config["max_batch_size"] == 3 and config["instance_group"][0]["count"] == 2
        with pytest.raises(InferenceServerException, match="over its max_batch_size of 3"):
            client.infer("dreams", [tensor("latent", np.zeros((4, 4), np.float32), "FP32")])
    finally:
        client.load_model("dreams")
    assert client.get_model_config("dreams", as_json=True)["config"]["max_batch_size"] == 64


def test_load_errors(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="no model named 'nope'") as info:
        client.load_model("nope")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="ONNX Runtime cannot load") as info:
        client.load_model("broken")
    assert info.value.status() == "StatusCode.FAILED_PRECONDITION"
    with pytest.raises(InferenceServerException, match="no model named 'nope'"):
        client.unload_model("nope")
    good_request(client)


# ------------------------------------------------------------------ bad requests


def _image_input(**fields) -> pb.ModelInferRequest.InferInputTensor:
    fields = {"name": "image", "datatype": "UINT8", "shape": [1, 8, 8, 3], **fields}
    return pb.ModelInferRequest.InferInputTensor(**fields)


RAW_RED = RED.tobytes()
BAD_REQUESTS = {
    "unknown model": (pb.ModelInferRequest(model_name="nope", inputs=[_image_input()], raw_input_contents=[RAW_RED]),
                      grpc.StatusCode.NOT_FOUND, "no model named 'nope'"),
    "unknown version": (pb.ModelInferRequest(model_name="colours", model_version="7", inputs=[_image_input()],
                                             raw_input_contents=[RAW_RED]),
                        grpc.StatusCode.NOT_FOUND, "has no version 7"),
    "version not a number": (pb.ModelInferRequest(model_name="colours", model_version="latest",
                                                  inputs=[_image_input()], raw_input_contents=[RAW_RED]),
                             grpc.StatusCode.INVALID_ARGUMENT, "whole number"),
    "model failed to load": (pb.ModelInferRequest(model_name="broken", inputs=[_image_input()],
                                                  raw_input_contents=[RAW_RED]),
                             grpc.StatusCode.FAILED_PRECONDITION, "model broken is not ready"),
    "no inputs": (pb.ModelInferRequest(model_name="colours"),
                  grpc.StatusCode.INVALID_ARGUMENT, "takes input.*image UINT8.*the request has none"),
    "wrong input name": (pb.ModelInferRequest(model_name="colours", inputs=[_image_input(name="pixels")],
                                              raw_input_contents=[RAW_RED]),
                         grpc.StatusCode.INVALID_ARGUMENT, "the request has 'pixels'"),
    "float image": (pb.ModelInferRequest(model_name="colours", inputs=[_image_input(datatype="FP32")],
                                         raw_input_contents=[RED.astype(np.float32).tobytes()]),
                    grpc.StatusCode.INVALID_ARGUMENT, "FP32 but the model takes UINT8"),
    "bytes image": (pb.ModelInferRequest(model_name="colours", inputs=[_image_input(
        datatype="BYTES", contents=pb.InferTensorContents(bytes_contents=[b"x"] * 192))]),
                    grpc.StatusCode.INVALID_ARGUMENT, "BYTES but the model takes UINT8"),
    "image as one encoded BYTES element": (pb.ModelInferRequest(model_name="colours", inputs=[_image_input(
        datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"png..."]))]),
                                           grpc.StatusCode.INVALID_ARGUMENT, "shape \\[1\\]; the model takes"),
    "unknown datatype": (pb.ModelInferRequest(model_name="colours", inputs=[_image_input(datatype="COMPLEX")],
                                              raw_input_contents=[RAW_RED]),
                         grpc.StatusCode.INVALID_ARGUMENT, "datatype 'COMPLEX'; supported"),
    "wrong shape": (pb.ModelInferRequest(model_name="colours", inputs=[_image_input(shape=[1, 9, 8, 3])],
                                         raw_input_contents=[b"\0" * 216]),
                    grpc.StatusCode.INVALID_ARGUMENT, "has shape \\[1,9,8,3\\]; the model takes image UINT8"),
    "raw bytes do not match the shape": (
        pb.ModelInferRequest(model_name="colours", inputs=[_image_input()], raw_input_contents=[RAW_RED[:-1]]),
        grpc.StatusCode.INVALID_ARGUMENT, "raw data is 191 bytes but shape \\[1,8,8,3\\] of UINT8 needs 192"),
    "contents do not match the shape": (
        pb.ModelInferRequest(model_name="colours", inputs=[_image_input(
            contents=pb.InferTensorContents(uint_contents=[1, 2, 3]))]),
        grpc.StatusCode.INVALID_ARGUMENT, "contents.uint_contents has 3 elements but shape"),
    "contents in the wrong field": (
        pb.ModelInferRequest(model_name="colours", inputs=[_image_input(
            contents=pb.InferTensorContents(fp32_contents=[0.0] * 192))]),
        grpc.StatusCode.INVALID_ARGUMENT, "contents.uint_contents has 0 elements"),
    "pixel values out of range": (
        pb.ModelInferRequest(model_name="colours", inputs=[_image_input(
            datatype="INT64", contents=pb.InferTensorContents(int64_contents=[300] * 192))]),
        grpc.StatusCode.INVALID_ARGUMENT, "values 300..300 do not fit in UINT8"),
    "empty batch": (pb.ModelInferRequest(model_name="colours", inputs=[_image_input(shape=[0, 8, 8, 3])],
                                         raw_input_contents=[b""]),
                    grpc.StatusCode.INVALID_ARGUMENT, "an empty batch"),
    "batch over max_batch_size": (
        pb.ModelInferRequest(model_name="colours", inputs=[_image_input(shape=[9, 8, 8, 3])],
                             raw_input_contents=[RAW_RED * 9]),
        grpc.StatusCode.INVALID_ARGUMENT, "a batch of 9 is over its max_batch_size of 8"),
    "raw count mismatch": (pb.ModelInferRequest(model_name="colours", inputs=[_image_input()],
                                                raw_input_contents=[RAW_RED, RAW_RED]),
                           grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents has 2 entries for 1 input"),
    "stylizer size not a multiple": (
        pb.ModelInferRequest(model_name="invert", inputs=[_image_input(shape=[1, 6, 8, 3])],
                             raw_input_contents=[b"\0" * 144]),
        grpc.StatusCode.INVALID_ARGUMENT, "must be multiples of 4"),
    "unknown output": (pb.ModelInferRequest(model_name="colours", inputs=[_image_input()], raw_input_contents=[RAW_RED],
                                            outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="logits")]),
                       grpc.StatusCode.INVALID_ARGUMENT, "has no output 'logits'"),
    "bad classification count": (pb.ModelInferRequest(
        model_name="colours", inputs=[_image_input()], raw_input_contents=[RAW_RED],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(
            name="probabilities", parameters={"classification": pb.InferParameter(int64_param=-1)})]),
        grpc.StatusCode.INVALID_ARGUMENT, "classification needs a positive int64 class count"),
    "fp16 without raw data": (pb.ModelInferRequest(model_name="dreams", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="latent", datatype="FP16", shape=[1, 4], contents=pb.InferTensorContents(fp32_contents=[0.0] * 4))]),
                              grpc.StatusCode.INVALID_ARGUMENT, "FP16 has no typed contents field"),
    "fp64 latents overflow fp32": (pb.ModelInferRequest(
        model_name="dreams", inputs=[pb.ModelInferRequest.InferInputTensor(
            name="latent", datatype="FP64", shape=[1, 4], contents=pb.InferTensorContents(fp64_contents=[1e300] * 4))]),
        grpc.StatusCode.INVALID_ARGUMENT, "some values do not fit in FP32"),
    "sequence parameters": (pb.ModelInferRequest(
        model_name="colours", inputs=[_image_input()], raw_input_contents=[RAW_RED],
        parameters={"sequence_id": pb.InferParameter(int64_param=3)}),
        grpc.StatusCode.INVALID_ARGUMENT, "sequence batching is not supported"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_then_good_one(kserve_api, client: triton.InferenceServerClient, case: str) -> None:
    request, code, message = BAD_REQUESTS[case]
    error = rpc_error(kserve_api.ModelInfer, request, timeout=10)
    assert error.code() == code, error.details()
    assert re.search(message, error.details()), error.details()
    good_request(client)
