"""Operations: health, reflection, metrics, auth, TLS, reload, graceful shutdown, the CLI entry point."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as triton
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from onnx_builders import add_model, classifier_model, stylizer_model
from serving_support import channel, encode, image_stub, kserve_stub, repository, rpc_error, running, solid
from tritonclient.utils import InferenceServerException

from artforge.cli import build_parser, main
from artforge.cli.serve import server_options
from artforge.proto.artforge.v1 import image_service_pb2 as api
from artforge.proto.inference import grpc_service_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
RED_PNG = encode(solid((255, 0, 0)))


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    return {"metrics_port": 0, "model_control": "explicit"}


def health_status(ch: grpc.Channel, service: str) -> int:
    return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_overall_and_per_model(server, repo_path: Path) -> None:
    with channel(server) as ch:
        assert health_status(ch, "") == health_pb2.HealthCheckResponse.SERVING
        assert health_status(ch, "colours") == health_pb2.HealthCheckResponse.SERVING
        assert health_status(ch, "broken") == health_pb2.HealthCheckResponse.NOT_SERVING
        assert rpc_error(health_status, ch, "nope").code() == grpc.StatusCode.NOT_FOUND
        stub = kserve_stub(ch)
        stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="invert"))
        try:
            assert health_status(ch, "invert") == health_pb2.HealthCheckResponse.NOT_SERVING
            assert health_status(ch, "") == health_pb2.HealthCheckResponse.SERVING
        finally:
            stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="invert"))
        assert health_status(ch, "invert") == health_pb2.HealthCheckResponse.SERVING


def test_reflection_describes_every_service(server) -> None:
    with channel(server) as ch:
        database = ProtoReflectionDescriptorDatabase(ch)
        services = set(database.get_services())
        assert {"inference.GRPCInferenceService", "artforge.v1.ImageService", "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection"} <= services
        pool = descriptor_pool.DescriptorPool(database)
        infer = pool.FindServiceByName("inference.GRPCInferenceService").methods_by_name["ModelInfer"]
        assert infer.input_type.full_name == "inference.ModelInferRequest"
        classify = pool.FindServiceByName("artforge.v1.ImageService").methods_by_name["Classify"]
        assert [f.name for f in classify.input_type.fields] == ["model", "image", "top_k"]
        assert pool.FindMessageTypeByName("inference.ModelConfig").fields_by_name["max_batch_size"].number == 4
        assert pool.FindServiceByName("grpc.health.v1.Health").methods_by_name["Check"]


def test_prometheus_endpoint(server) -> None:
    with channel(server) as ch:
        image_stub(ch).Classify(api.ClassifyRequest(model="colours", image=RED_PNG), timeout=10)
        rpc_error(image_stub(ch).Classify, api.ClassifyRequest(model="colours", image=b"junk"), timeout=10)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for name in ("artforge_requests_total", "artforge_request_failures_total", "artforge_request_duration_seconds",
                 "artforge_queue_duration_seconds", "artforge_batch_size", "artforge_inference_duration_seconds",
                 "artforge_queue_depth", "artforge_model_ready"):
        assert f"\n{name}" in text, name
    assert ('artforge_request_failures_total{code="INVALID_ARGUMENT",method="Classify",model="colours",'
            'protocol="grpc"} 1.0') in text
    assert 'artforge_model_ready{model="broken"} 0.0' in text
    assert 'artforge_model_ready{model="colours"} 1.0' in text


def test_bearer_token(repo_path: Path) -> None:
    with running(repo_path, token="s3cret") as server, channel(server) as ch:
        request = api.ClassifyRequest(model="colours", image=RED_PNG)
        for metadata in (None, [("authorization", "Bearer wrong")], [("authorization", "s3cret")]):
            error = rpc_error(image_stub(ch).Classify, request, metadata=metadata, timeout=10)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "authorization: Bearer" in error.details()
        good = [("authorization", "Bearer s3cret")]
        assert image_stub(ch).Classify(request, metadata=good, timeout=10).labels[0].label == "red"
        # Streams are checked too; health is open to probes.
        error = rpc_error(lambda: list(image_stub(ch).StylizeStream(iter([]), timeout=10)))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert health_status(ch, "") == health_pb2.HealthCheckResponse.SERVING
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        with pytest.raises(InferenceServerException, match="UNAUTHENTICATED|credentials"):
            client.is_server_ready()
        assert client.is_server_ready(headers={"authorization": "Bearer s3cret"})
        client.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the test certificate")
def test_tls(repo_path: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with running(repo_path, tls_cert=cert, tls_key=key) as server:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{server.port}", credentials) as ch:
            assert image_stub(ch).Classify(api.ClassifyRequest(model="colours", image=RED_PNG), timeout=10).labels
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}", ssl=True, root_certificates=str(cert))
        assert client.is_server_live()
        client.close()
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as plain:
            assert rpc_error(kserve_stub(plain).ServerLive, pb.ServerLiveRequest(), timeout=5).code() == \
                grpc.StatusCode.UNAVAILABLE


def test_reload_picks_up_fixed_new_and_deleted_models(tmp_path: Path) -> None:
    repo = repository(tmp_path / "repo")
    with running(repo) as server, channel(server) as ch:
        stub = kserve_stub(ch)
        assert not stub.ModelReady(pb.ModelReadyRequest(name="broken")).ready
        add_model(repo, "broken", classifier_model(), version=1)  # fixed in place
        add_model(repo, "newcomer", stylizer_model())
        shutil.rmtree(repo / "dreams")
        server.reload()  # what SIGHUP does
        assert stub.ModelReady(pb.ModelReadyRequest(name="broken")).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name="newcomer")).ready
        names = {m.name for m in image_stub(ch).ListModels(api.ListModelsRequest()).models}
        assert names == {"broken", "colours", "invert", "newcomer"}
        error = rpc_error(image_stub(ch).Generate, api.GenerateRequest(model="dreams"), timeout=5)
        assert error.code() == grpc.StatusCode.NOT_FOUND


def test_server_imports_no_torch() -> None:
    script = ("import sys, artforge.serving.server; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx') "
              "or m.startswith(('artforge.training', 'artforge.export', 'artforge.models'))))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_cli_arguments_map_to_options(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--repo", str(tmp_path), "--port", "0", "--metrics-port", "9100",
                              "--max-batch-size", "4", "--max-queue-delay-ms", "2.5", "--instances", "2",
                              "--queue-size", "7", "--max-image-pixels", "1000", "--max-message-mb", "8",
                              "--token", "t", "--preferred-batch-sizes", "2", "4"])
    options = server_options(args)
    assert (options.repo, options.port, options.metrics_port, options.max_batch_size) == (tmp_path, 0, 9100, 4)
    assert (options.max_queue_delay_ms, options.instances, options.queue_size) == (2.5, 2, 7)
    assert (options.max_image_pixels, options.max_message_bytes, options.token) == (1000, 8 << 20, "t")
    assert options.preferred_batch_sizes == (2, 4)
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--repo", str(tmp_path), "--instances", "0"])


def test_start_failure_exits_nonzero(tmp_path: Path) -> None:
    # A missing repository is the user's mistake: one sentence and exit 2, like every command.
    assert main(["serve", "--repo", str(tmp_path / "missing"), "--port", "0", "--no-metrics"]) == 2


def _serve_on_taken_port(repo: Path, *flags: str) -> tuple[subprocess.CompletedProcess, float]:
    """`artforge serve` while another socket listens on the port one of `flags` names; (result, seconds)."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "artforge", "serve", "--repo", str(repo), "--host", "127.0.0.1",
                             "--threads", "1", *flags], capture_output=True, text=True, timeout=120, cwd=ROOT)
    return result, time.monotonic() - started


@pytest.mark.parametrize("which", ["--port", "--metrics-port", "--http-port"])
def test_taken_port_is_one_sentence_before_any_model_loads(repo_path: Path, which: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = [flag for other in ("--port", "--metrics-port", "--http-port") if other != which
                  for flag in (other, "0")]
        result, _ = _serve_on_taken_port(repo_path, which, str(port), *others)
    assert result.returncode == 2, result.stderr
    # One line: no "loaded <model>" log line came first, and no gRPC core error or traceback after it.
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    where = {"--port": "cannot listen on", "--metrics-port": "cannot serve metrics on",
             "--http-port": "cannot serve HTTP on"}[which]
    assert result.stderr.startswith(f"artforge: error: {where} 127.0.0.1:{port}: the port is in use"), result.stderr
    assert which in result.stderr


# ------------------------------------------------------------------ graceful shutdown


def _wait_for_ports(process: subprocess.Popen, lines: list[str]) -> tuple[int, int, int]:
    """(gRPC port, metrics port, HTTP port) from the server's start line."""
    while line := process.stderr.readline():
        lines.append(line)
        if "artforge serving" in line:
            ports = re.search(r"\| grpc \S+:(\d+) \| metrics \S+:(\d+) \| http \S+:(\d+)", line).groups()
            return int(ports[0]), int(ports[1]), int(ports[2])
    raise AssertionError("the server did not start:\n" + "".join(lines))


def _metric(port: int, sample: str) -> str | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(sample + " "):
                return line.split()[-1]
    return None


def _wait_until_ready(ch: grpc.Channel, model: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not kserve_stub(ch).ModelReady(pb.ModelReadyRequest(name=model), timeout=5).ready:
        assert time.monotonic() < deadline, f"model {model} never became ready"
        time.sleep(0.05)


def test_sighup_reloads_then_sigterm_drains_and_exits_0(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    # The request waits 1 s in the queue for a batch; SIGTERM arrives meanwhile.
    add_model(repo, "slow", classifier_model(),
              config="max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 1000000 }\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "artforge", "serve", "--repo", str(repo), "--host", "127.0.0.1", "--port", "0",
         "--metrics-port", "0", "--http-port", "0", "--threads", "1", "--workers", "1", "--grace", "20"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    try:
        port, metrics_port, http_port = _wait_for_ports(process, lines)
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
        reader.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = image_stub(ch)
            stub.ListModels(api.ListModelsRequest(), timeout=10)  # connected
            add_model(repo, "late", stylizer_model())
            process.send_signal(signal.SIGHUP)
            _wait_until_ready(ch, "late")
            future = stub.Classify.future(api.ClassifyRequest(model="slow", image=RED_PNG), timeout=20)
            over_http: list[bytes] = []
            http_call = threading.Thread(target=lambda: over_http.append(urllib.request.urlopen(
                urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/models/slow/classify", data=RED_PNG),
                timeout=20).read()))
            http_call.start()
            deadline = time.monotonic() + 20
            while _metric(metrics_port, 'artforge_queue_depth{model="slow"}') != "2.0":  # both in flight
                assert time.monotonic() < deadline and not future.done()
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            assert future.result().labels[0].label == "red"
            http_call.join(20)
            assert json.loads(over_http[0])["labels"][0]["label"] == "red"  # HTTP drains too
        assert process.wait(timeout=30) == 0
        reader.join(timeout=5)
        assert any("shutting down" in line for line in lines), "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
