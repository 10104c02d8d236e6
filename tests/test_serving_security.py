"""What a client on the network can and cannot do: model control, token on health and metrics, undecodable
requests, bounded messages, the repository's path, timeouts, TLS files (docs/security.md)."""

from __future__ import annotations

import json
import logging
import math
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serving_support import channel, encode, image_stub, kserve_stub, rpc_error, running, solid
from tritonclient.utils import InferenceServerException

from artforge.cli import build_parser, main
from artforge.cli.serve import server_options
from artforge.errors import InvalidInputError
from artforge.proto.artforge.v1 import image_service_pb2 as api
from artforge.proto.inference import grpc_service_pb2 as pb
from artforge.serving.auth import check_model_control, is_loopback
from artforge.serving.options import ServerOptions
from artforge.serving.server import exposure_warning
from artforge.serving.status import MAX_MESSAGE_CHARS, status_of

RED_PNG = encode(solid((255, 0, 0)))
TOKEN = "s3cret"
GOOD = [("authorization", f"Bearer {TOKEN}")]
#: no protobuf message parses from these: field 0 and an unterminated varint
GARBAGE = b"\x00\xff\xff\xff"
LONG = "x" * 16384


def red_infer(model: str = "colours", **parameters: object) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="image", datatype="UINT8", shape=[1, 8, 8, 3])], raw_input_contents=[np.zeros((1, 8, 8, 3), np.uint8)
                                                                                   .tobytes()])
    for key, value in parameters.items():
        if isinstance(value, float):
            request.parameters[key].double_param = value
        else:
            request.parameters[key].int64_param = value
    return request


def health(ch: grpc.Channel, service: str, metadata=None) -> int:
    stub = health_pb2_grpc.HealthStub(ch)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), metadata=metadata, timeout=5).status


def make_cert(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}-cert.pem", folder / f"{name}-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes certificates")


# ------------------------------------------------------------------ defaults


def test_defaults_are_loopback_and_no_model_control(tmp_path: Path) -> None:
    options = server_options(build_parser().parse_args(["serve", "--repo", str(tmp_path)]))
    assert (options.host, options.model_control, options.token, options.metrics_host) == \
        ("127.0.0.1", "none", None, None)
    explicit = server_options(build_parser().parse_args(["serve", "--repo", str(tmp_path), "--host", "0.0.0.0",
                                                         "--model-control", "explicit", "--metrics-host", "10.0.0.1"]))
    assert (explicit.host, explicit.model_control, explicit.metrics_host) == ("0.0.0.0", "explicit", "10.0.0.1")


def test_listening_beyond_loopback_without_token_or_tls_is_warned_about(tmp_path: Path) -> None:
    def warning(**fields: object) -> str | None:
        return exposure_warning(ServerOptions(repo=tmp_path, **fields))

    assert warning() is None and warning(host="localhost") is None and warning(host="::1") is None
    assert "without --token" in (warning(host="0.0.0.0") or "")
    assert "without --token" in (warning(metrics_host="0.0.0.0") or "")
    assert warning(metrics_host="0.0.0.0", metrics_port=None) is None
    assert "without TLS" in (warning(host="::", token="t") or "")
    assert warning(host="0.0.0.0", token="t", tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem") is None


# ------------------------------------------------------------------ model control


def test_model_control_is_off_by_default(target: str) -> None:
    client = triton.InferenceServerClient(target)
    try:
        for call in (lambda: client.unload_model("colours"),
                     lambda: client.load_model("colours", config=json.dumps({"dynamic_batching": {
                         "max_queue_delay_microseconds": 3_600_000_000}}))):
            with pytest.raises(InferenceServerException, match="--model-control explicit") as info:
                call()
            assert info.value.status() == "StatusCode.FAILED_PRECONDITION"
        assert client.is_model_ready("colours")
        config = client.get_model_config("colours", as_json=True)["config"]
        assert int(config["dynamic_batching"].get("max_queue_delay_microseconds", 0)) == 0
    finally:
        client.close()


def test_model_control_with_a_token_needs_the_token(repo_path: Path) -> None:
    with running(repo_path, token=TOKEN, model_control="explicit") as server:
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        try:
            with pytest.raises(InferenceServerException, match="UNAUTHENTICATED|credentials"):
                client.unload_model("invert")
            client.unload_model("invert", headers={"authorization": f"Bearer {TOKEN}"})
            assert not client.is_model_ready("invert", headers={"authorization": f"Bearer {TOKEN}"})
            client.load_model("invert", headers={"authorization": f"Bearer {TOKEN}"})
            assert client.is_model_ready("invert", headers={"authorization": f"Bearer {TOKEN}"})
        finally:
            client.close()


@pytest.mark.parametrize("peer, local", [
    ("ipv4:127.0.0.1:5000", True), ("ipv4:127.8.9.10:1", True), ("ipv6:%5B::1%5D:5000", True),
    ("ipv6:[::ffff:127.0.0.1]:5000", True), ("unix:/tmp/artforge.sock", True),
    ("ipv4:10.0.0.7:5000", False), ("ipv4:192.168.1.2:80", False), ("ipv6:%5B2001:db8::1%5D:5000", False),
    ("ipv6:[::ffff:10.0.0.7]:5000", False), ("ipv4:not-an-address:1", False), ("", False)])
def test_loopback_peers(peer: str, local: bool) -> None:
    assert is_loopback(peer) is local


def test_model_control_without_a_token_is_for_loopback_only() -> None:
    check_model_control("explicit", False, "ipv4:127.0.0.1:5000", "RepositoryModelLoad")  # allowed
    check_model_control("explicit", True, "ipv4:10.0.0.7:5000", "RepositoryModelLoad")  # the token was checked
    with pytest.raises(Exception) as info:
        check_model_control("explicit", False, "ipv4:10.0.0.7:5000", "RepositoryModelUnload")
    code, message = status_of(info.value)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "--token" in message and "loopback" in message


@pytest.mark.parametrize("config, field", [
    ({"dynamic_batching": {"max_queue_delay_microseconds": 3_600_000_000}}, "max_queue_delay_microseconds"),
    ({"dynamic_batching": {"default_queue_policy": {"max_queue_size": 1_000_000}}}, "max_queue_size"),
    ({"instance_group": [{"count": 1000}]}, "instance_group.count"),
    ({"instance_group": [{"count": 20}, {"count": 20}]}, "the sum of instance_group counts"),
    ({"instance_group": [{"count": -3}]}, "instance_group.count"),
    ({"max_batch_size": 100_000}, "max_batch_size"),
    ({"max_batch_size": -1}, "max_batch_size"),
    ({"dynamic_batching": {"preferred_batch_size": [0]}}, "preferred_batch_size"),
])
def test_load_config_out_of_bounds_is_invalid_argument(repo_path: Path, config: dict, field: str) -> None:
    with running(repo_path, model_control="explicit") as server:
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        try:
            before = client.get_model_config("colours", as_json=True)["config"]
            with pytest.raises(InferenceServerException, match=field) as info:
                client.load_model("colours", config=json.dumps(config))
            assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
            assert "must be from" in info.value.message() and len(info.value.message().splitlines()) == 1
            assert client.is_model_ready("colours")
            assert client.get_model_config("colours", as_json=True)["config"] == before
        finally:
            client.close()


# ------------------------------------------------------------------ token on health and metrics


def test_token_guards_per_model_health_and_metrics(repo_path: Path) -> None:
    with running(repo_path, token=TOKEN, metrics_port=0) as server, channel(server) as ch:
        assert health(ch, "") == health_pb2.HealthCheckResponse.SERVING  # probes send no credentials
        error = rpc_error(health, ch, "colours")
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert health(ch, "colours", GOOD) == health_pb2.HealthCheckResponse.SERVING
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service="colours"), timeout=5)
        with pytest.raises(grpc.RpcError) as info:
            next(watch)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

        url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401 and refused.value.headers["WWW-Authenticate"].startswith("Bearer")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert b"artforge_model_ready" in response.read()


def test_without_a_token_per_model_health_is_open(server) -> None:
    with channel(server) as ch:
        assert health(ch, "colours") == health_pb2.HealthCheckResponse.SERVING


@needs_openssl
def test_metrics_use_tls_and_their_own_host(repo_path: Path, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, "server")
    with running(repo_path, tls_cert=cert, tls_key=key, metrics_port=0, metrics_host="localhost") as server:
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"https://localhost:{server.metrics_port}/metrics", timeout=10,
                                    context=context) as response:
            assert b"artforge_model_ready" in response.read()
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to the HTTPS port
            urllib.request.urlopen(f"http://localhost:{server.metrics_port}/metrics", timeout=10)


# ------------------------------------------------------------------ undecodable requests

RAW_METHODS = [
    ("unary", "/inference.GRPCInferenceService/ModelInfer"),
    ("unary", "/inference.GRPCInferenceService/RepositoryModelLoad"),
    ("unary", "/artforge.v1.ImageService/Classify"),
    ("unary", "/grpc.health.v1.Health/Check"),
    ("stream", "/inference.GRPCInferenceService/ModelStreamInfer"),
    ("stream", "/artforge.v1.ImageService/StylizeStream"),
    ("stream", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
]


def send_raw(ch: grpc.Channel, kind: str, method: str, data: bytes, metadata=None) -> grpc.RpcError:
    """The error a call with these raw bytes as its (only) message gets."""
    if kind == "unary":
        return rpc_error(ch.unary_unary(method), data, metadata=metadata, timeout=10)
    return rpc_error(lambda: list(ch.stream_stream(method)(iter([data]), metadata=metadata, timeout=10)))


def test_undecodable_requests_are_invalid_argument_and_logged_once(server, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="artforge.serving"), channel(server) as ch:
        for kind, method in RAW_METHODS:
            error = send_raw(ch, kind, method, GARBAGE)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, error)
            assert "not a valid" in error.details() and "4 bytes" in error.details()
        assert image_stub(ch).Classify(api.ClassifyRequest(model="colours", image=RED_PNG), timeout=10).labels
    lines = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(lines) <= 1 and all(r.levelno == logging.WARNING and not r.exc_info for r in lines)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_stream_with_a_good_then_an_undecodable_item(server) -> None:
    good = api.StylizeRequest(model="invert", image=RED_PNG, request_id="a").SerializeToString()
    with channel(server) as ch:
        responses = []
        call = ch.stream_stream("/artforge.v1.ImageService/StylizeStream")(iter([good, GARBAGE]), timeout=10)
        with pytest.raises(grpc.RpcError) as info:
            for response in call:
                responses.append(response)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [api.StylizeResponse.FromString(r).request_id for r in responses] in ([], ["a"])


def test_with_a_token_undecodable_bytes_are_not_parsed_before_the_check(repo_path: Path) -> None:
    with running(repo_path, token=TOKEN) as server, channel(server) as ch:
        assert send_raw(ch, "unary", "/artforge.v1.ImageService/Classify", GARBAGE).code() == \
            grpc.StatusCode.UNAUTHENTICATED
        assert send_raw(ch, "unary", "/artforge.v1.ImageService/Classify", GARBAGE, GOOD).code() == \
            grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------ what messages echo and reveal


def _assert_short(error: grpc.RpcError, code: grpc.StatusCode, text: str) -> None:
    assert error.code() == code, error
    assert text in error.details(), error.details()
    assert len(error.details()) <= MAX_MESSAGE_CHARS and "16384 characters" in error.details()


def test_long_client_strings_are_shortened_in_messages(server) -> None:
    with channel(server) as ch:
        images, kserve = image_stub(ch), kserve_stub(ch)
        _assert_short(rpc_error(images.Classify, api.ClassifyRequest(model=LONG, image=RED_PNG), timeout=10),
                      grpc.StatusCode.NOT_FOUND, "no model named 'xxx")
        _assert_short(rpc_error(images.Stylize, api.StylizeRequest(model="invert", image=RED_PNG, format=LONG),
                                timeout=10), grpc.StatusCode.INVALID_ARGUMENT, "format 'xxx")
        _assert_short(rpc_error(kserve.ModelInfer, red_infer(LONG), timeout=10), grpc.StatusCode.NOT_FOUND,
                      "no model named")
        request = red_infer()
        request.inputs[0].name = LONG
        _assert_short(rpc_error(kserve.ModelInfer, request, timeout=10), grpc.StatusCode.INVALID_ARGUMENT,
                      "the request has 'xxx")
        request = red_infer()
        request.inputs[0].datatype = LONG
        _assert_short(rpc_error(kserve.ModelInfer, request, timeout=10), grpc.StatusCode.INVALID_ARGUMENT,
                      "datatype 'xxx")
        request = red_infer()
        request.outputs.add(name=LONG)
        _assert_short(rpc_error(kserve.ModelInfer, request, timeout=10), grpc.StatusCode.INVALID_ARGUMENT,
                      "no output 'xxx")
        request = red_infer()
        request.parameters["timeout"].string_param = LONG
        _assert_short(rpc_error(kserve.ModelInfer, request, timeout=10), grpc.StatusCode.INVALID_ARGUMENT,
                      "parameter 'timeout'")
        _assert_short(rpc_error(kserve.RepositoryIndex, pb.RepositoryIndexRequest(repository_name=LONG),
                                timeout=10), grpc.StatusCode.NOT_FOUND, "no repository named")
        error = rpc_error(kserve.ModelMetadata, pb.ModelMetadataRequest(name="colours", version=LONG), timeout=10)
        _assert_short(error, grpc.StatusCode.INVALID_ARGUMENT, "whole number")
        # Many inputs: the list is cut too.
        request = red_infer()
        for i in range(200):
            request.inputs.add(name=f"input{i}", datatype="UINT8", shape=[1])
        error = rpc_error(kserve.ModelInfer, request, timeout=10)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "more" in error.details()
        assert len(error.details()) < 500


def test_messages_name_the_repository_by_its_folder_not_its_path(server, repo_path: Path) -> None:
    hidden = str(repo_path.resolve().parent)
    with channel(server) as ch:
        error = rpc_error(image_stub(ch).Classify, api.ClassifyRequest(model="broken", image=RED_PNG), timeout=10)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"{repo_path.name}/broken" in error.details() and hidden not in error.details()
        index = kserve_stub(ch).RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10)
        listing = image_stub(ch).ListModels(api.ListModelsRequest(), timeout=10)
        reasons = [m.reason for m in index.models] + [m.reason for m in listing.models]
        assert any("broken" in reason for reason in reasons)
        assert not [reason for reason in reasons if hidden in reason]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0])
def test_timeout_parameter_must_be_finite(kserve_api, value: float) -> None:
    error = rpc_error(kserve_api.ModelInfer, red_infer(timeout=value), timeout=10)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "finite, non-negative" in error.details()


def test_huge_finite_timeout_is_just_long(kserve_api) -> None:
    for value in (1e300, 2 ** 63 - 1):
        response = kserve_api.ModelInfer(red_infer(timeout=value), timeout=10)
        assert response.model_name == "colours"


# ------------------------------------------------------------------ TLS files


@needs_openssl
def test_tls_files_are_checked_at_start_with_one_sentence(repo_path: Path, tmp_path: Path, capsys) -> None:
    cert_a, key_a = make_cert(tmp_path, "a")
    _, key_b = make_cert(tmp_path, "b")
    encrypted = tmp_path / "encrypted-key.pem"
    subprocess.run(["openssl", "pkey", "-in", str(key_a), "-aes256", "-passout", "pass:x", "-out", str(encrypted)],
                   check=True, capture_output=True)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a pem file\n")
    cases = [(cert_a, key_b, f"TLS key {key_b} does not belong to the certificate {cert_a}"),
             (cert_a, encrypted, "is encrypted"),
             (cert_a, junk, f"TLS key {junk} holds no PEM private key"),
             (junk, key_a, f"TLS certificate {junk} holds no PEM certificate")]
    for cert, key, sentence in cases:
        with pytest.raises(InvalidInputError, match="TLS") as info:
            with running(repo_path, tls_cert=cert, tls_key=key):
                pass
        assert sentence in str(info.value) and "bind" not in str(info.value)
        capsys.readouterr()
        assert main(["serve", "--repo", str(repo_path), "--port", "0", "--no-metrics", "--tls-cert", str(cert),
                     "--tls-key", str(key)]) == 2
        assert capsys.readouterr().err.strip() == f"artforge: error: {info.value}"
