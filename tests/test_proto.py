"""The protocol definitions: stubs match proto/, and the KServe v2 API is Triton's on the wire.

tritonclient ships Triton's own generated descriptors; comparing against them
field by field is what lets us promise that an unmodified Triton client talks
to an artforge server, and the round trip at the end shows one doing it.
"""

from __future__ import annotations

import importlib.util
import queue
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from google.protobuf import descriptor_pb2, text_format
from tritonclient.grpc import model_config_pb2 as triton_config
from tritonclient.grpc import service_pb2 as triton_service
from tritonclient.utils import InferenceServerException

from artforge.proto.artforge.v1 import image_service_pb2, image_service_pb2_grpc
from artforge.proto.inference import grpc_service_pb2 as pb
from artforge.proto.inference import grpc_service_pb2_grpc as pb_grpc
from artforge.proto.inference import model_config_pb2

ROOT = Path(__file__).resolve().parent.parent

# The RPCs artforge serves; Triton's shared-memory, trace and log-settings
# RPCs are deliberately absent (see proto/inference/grpc_service.proto).
SERVED_RPCS = {
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
    "ModelStreamInfer", "ModelConfig", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad",
    "RepositoryModelUnload",
}
# Model-config messages artforge defines only in part; Triton's other field
# numbers must be reserved there. Every other message must be complete.
PARTIAL_MESSAGES = {
    "inference.ModelConfig", "inference.ModelInput", "inference.ModelOutput",
    "inference.ModelInstanceGroup", "inference.ModelDynamicBatching",
}


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ (a) stubs


def test_committed_stubs_match_proto_sources():
    gen = _load_generator()
    problems = gen.stale(gen.generate(), gen.committed())
    assert not problems, "artforge/proto is stale; run `python scripts/gen_proto.py`:\n" + "\n".join(problems)


def test_stubs_coexist_with_tritonclient():
    # Both define inference.ModelInferRequest; ours live in a private pool, so
    # importing both (as this module does) works and they stay distinct types.
    assert pb.ModelInferRequest is not triton_service.ModelInferRequest
    assert pb.ModelInferRequest.DESCRIPTOR.full_name == triton_service.ModelInferRequest.DESCRIPTOR.full_name


# ---------------------------------------------------- (b) wire compatibility


def _messages(container) -> Iterator:
    types = container.message_types_by_name.values() if hasattr(container, "message_types_by_name") \
        else container.nested_types
    for message in types:
        yield message
        yield from _messages(message)


def _enums(file) -> Iterator:
    yield from file.enum_types_by_name.values()
    for message in _messages(file):
        yield from message.enum_types


def _field_signature(field) -> dict:
    return {
        "name": field.name,
        "type": field.type,
        "repeated": field.is_repeated,
        "presence": field.has_presence,
        "packed": field.is_packed,
        "message": field.message_type.full_name if field.message_type else None,
        "enum": field.enum_type.full_name if field.enum_type else None,
        "oneof": field.containing_oneof.name if field.containing_oneof else None,
    }


def _reserved_numbers(message) -> set[int]:
    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    return {n for r in proto.reserved_range for n in range(r.start, r.end)}


OURS = (pb.DESCRIPTOR, model_config_pb2.DESCRIPTOR)
TRITON = (triton_service.DESCRIPTOR, triton_config.DESCRIPTOR)
TRITON_MESSAGES = {m.full_name: m for f in TRITON for m in _messages(f)}
TRITON_ENUMS = {e.full_name: e for f in TRITON for e in _enums(f)}
OUR_MESSAGES = {m.full_name: m for f in OURS for m in _messages(f)}
OUR_ENUMS = {e.full_name: e for f in OURS for e in _enums(f)}


def test_every_inference_type_is_tritons():
    assert OUR_MESSAGES.keys() <= TRITON_MESSAGES.keys(), "messages Triton does not define"
    assert OUR_ENUMS.keys() <= TRITON_ENUMS.keys(), "enums Triton does not define"


@pytest.mark.parametrize("name", sorted(OUR_MESSAGES))
def test_message_matches_triton(name):
    ours, theirs = OUR_MESSAGES[name], TRITON_MESSAGES[name]
    assert ours.GetOptions().map_entry == theirs.GetOptions().map_entry
    for field in ours.fields:
        assert field.number in theirs.fields_by_number, f"{name}.{field.name}: Triton has no field {field.number}"
        assert _field_signature(field) == _field_signature(theirs.fields_by_number[field.number]), \
            f"{name}.{field.name} differs from Triton's field {field.number}"
    # Whatever Triton defines and we leave out is reserved, so nobody can
    # reuse its number; only the model-config messages may leave anything out.
    missing = set(theirs.fields_by_number) - set(ours.fields_by_number)
    assert missing <= _reserved_numbers(ours), f"{name}: Triton fields {sorted(missing)} neither defined nor reserved"
    if name not in PARTIAL_MESSAGES:
        assert not missing, f"{name} must define every field Triton does"
    assert {o.name for o in ours.oneofs} <= {o.name for o in theirs.oneofs}


@pytest.mark.parametrize("name", sorted(OUR_ENUMS))
def test_enum_matches_triton(name):
    ours, theirs = OUR_ENUMS[name], TRITON_ENUMS[name]
    assert [(v.name, v.number) for v in ours.values] == [(v.name, v.number) for v in theirs.values]


def test_service_methods_match_triton():
    ours = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton_service.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    # The full name is the gRPC path prefix: /inference.GRPCInferenceService/ModelInfer.
    assert ours.full_name == theirs.full_name == "inference.GRPCInferenceService"
    assert set(ours.methods_by_name) == SERVED_RPCS
    for method in ours.methods:
        twin = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == \
            (twin.input_type.full_name, twin.output_type.full_name), method.name
        assert (method.client_streaming, method.server_streaming) == \
            (twin.client_streaming, twin.server_streaming), method.name


def test_triton_bytes_parse_and_reserialize_identically():
    request = text_format.Parse("""
        model_name: "m" model_version: "2" id: "req-1"
        parameters { key: "priority" value { uint64_param: 3 } }
        inputs { name: "x" datatype: "FP32" shape: [1, 2]
                 parameters { key: "k" value { string_param: "v" } }
                 contents { fp32_contents: [1.5, -2] } }
        outputs { name: "y" parameters { key: "binary_data" value { bool_param: true } } }
        raw_input_contents: "\\001\\002"
    """, triton_service.ModelInferRequest())
    wire = request.SerializeToString(deterministic=True)
    ours = pb.ModelInferRequest.FromString(wire)
    assert ours.inputs[0].contents.fp32_contents == [1.5, -2.0]
    assert ours.parameters["priority"].uint64_param == 3
    assert ours.SerializeToString(deterministic=True) == wire


def test_image_service_shape():
    service = image_service_pb2.DESCRIPTOR.services_by_name["ImageService"]
    assert service.full_name == "artforge.v1.ImageService"
    streaming = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert streaming == {"Classify": (False, False), "Generate": (False, False), "Stylize": (False, False),
                         "StylizeStream": (True, True), "ListModels": (False, False)}
    # A stream response can carry a per-image error instead of ending the stream.
    assert image_service_pb2.StylizeResponse.DESCRIPTOR.fields_by_name["error"].message_type.name == "Status"
    assert hasattr(image_service_pb2_grpc, "ImageServiceServicer")
    # seed is proto3-optional so that 0 is a real seed, distinct from "unset".
    assert image_service_pb2.GenerateRequest(seed=0).HasField("seed")
    assert not image_service_pb2.GenerateRequest().HasField("seed")


# ------------------------------------------------ (c) real tritonclient round trip


class PlusOne(pb_grpc.GRPCInferenceServiceServicer):
    """A one-model server: `plus_one` adds 1 to an INT64 tensor."""

    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)

    def ModelConfig(self, request, context):
        config = model_config_pb2.ModelConfig(
            name="plus_one", backend="python", max_batch_size=8,
            input=[model_config_pb2.ModelInput(name="INPUT0", data_type=model_config_pb2.TYPE_INT64, dims=[-1])],
            output=[model_config_pb2.ModelOutput(name="OUTPUT0", data_type=model_config_pb2.TYPE_INT64, dims=[-1])],
            dynamic_batching=model_config_pb2.ModelDynamicBatching(preferred_batch_size=[4, 8],
                                                                   max_queue_delay_microseconds=500))
        return pb.ModelConfigResponse(config=config)

    def _infer(self, request) -> pb.ModelInferResponse:
        if request.model_name != "plus_one":
            raise LookupError(f"unknown model {request.model_name!r}; the only model is 'plus_one'")
        tensor = request.inputs[0]
        assert tensor.datatype == "INT64"
        # tritonclient sends tensor data as raw little-endian bytes.
        x = np.frombuffer(request.raw_input_contents[0], dtype="<i8").reshape(tuple(tensor.shape))
        y = (x + 1).astype("<i8")
        out = pb.ModelInferResponse.InferOutputTensor(name="OUTPUT0", datatype="INT64", shape=y.shape)
        return pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id,
                                     outputs=[out], raw_output_contents=[y.tobytes()])

    def ModelInfer(self, request, context):
        try:
            return self._infer(request)
        except LookupError as e:
            context.abort(grpc.StatusCode.NOT_FOUND, str(e))

    def ModelStreamInfer(self, request_iterator, context):
        for request in request_iterator:
            try:
                yield pb.ModelStreamInferResponse(infer_response=self._infer(request))
            except LookupError as e:
                yield pb.ModelStreamInferResponse(error_message=str(e))


@pytest.fixture(scope="module")
def client():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(PlusOne(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
    try:
        yield client
    finally:
        client.close()
        server.stop(grace=None)


def _input(array: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("INPUT0", list(array.shape), "INT64")
    tensor.set_data_from_numpy(array)
    return tensor


def test_tritonclient_health(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_tritonclient_infer(client):
    x = np.arange(6, dtype=np.int64).reshape(2, 3) - 2**40
    result = client.infer("plus_one", [_input(x)], request_id="r1")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x + 1)
    assert result.get_response().id == "r1"


def test_tritonclient_error_and_unimplemented(client):
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.infer("nope", [_input(np.zeros((1, 1), np.int64))])
    # An RPC artforge leaves out answers UNIMPLEMENTED, surfaced as Triton errors are.
    with pytest.raises(InferenceServerException) as info:
        client.get_system_shared_memory_status()
    assert "UNIMPLEMENTED" in str(info.value.status())


def test_tritonclient_model_config(client):
    config = client.get_model_config("plus_one", as_json=True)["config"]
    assert config["input"][0]["data_type"] == "TYPE_INT64"
    assert config["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == "500"


def test_tritonclient_stream(client):
    results: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        x = np.array([[7, 8]], dtype=np.int64)
        client.async_stream_infer("plus_one", [_input(x)], request_id="a")
        client.async_stream_infer("nope", [_input(x)], request_id="b")
        client.async_stream_infer("plus_one", [_input(x * 2)], request_id="c")
        got = [results.get(timeout=10) for _ in range(3)]
    finally:
        client.stop_stream()
    (first, err1), (_, err2), (third, err3) = got
    assert err1 is None and err3 is None
    np.testing.assert_array_equal(first.as_numpy("OUTPUT0"), x + 1)
    np.testing.assert_array_equal(third.as_numpy("OUTPUT0"), x * 2 + 1)
    # The failed request came back in-band and the stream carried on.
    assert "unknown model 'nope'" in str(err2)
