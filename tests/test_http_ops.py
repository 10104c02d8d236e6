"""Operations of the HTTP front end: the metrics port's one path, protocol labels, Triton's metric names, flags."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from serving_support import encode, running, solid

from artforge.cli import build_parser
from artforge.cli.serve import server_options

GREEN = encode(solid((0, 255, 0)))


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    return {"http_port": 0, "metrics_port": 0}


def get(url: str, body: bytes | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_only_at_metrics_and_labelled_by_protocol(server, image_api) -> None:
    from artforge.proto.artforge.v1 import image_service_pb2 as api

    base = f"http://127.0.0.1:{server.http_port}"
    assert get(f"{base}/v1/models/colours/classify", GREEN)[0] == 200
    assert get(f"{base}/v1/models/colours/classify", b"junk")[0] == 400
    image_api.Classify(api.ClassifyRequest(model="colours", image=GREEN), timeout=10)
    metrics = f"http://127.0.0.1:{server.metrics_port}"
    for path in ("/", "/v2/health/ready", "/anything", "/metricsx"):
        status, text = get(metrics + path)
        assert status == 404 and "/metrics" in text, path
    status, text = get(metrics + "/metrics")
    assert status == 200
    assert 'artforge_requests_total{method="Classify",model="colours",protocol="http"} 2.0' in text
    assert 'artforge_requests_total{method="Classify",model="colours",protocol="grpc"} 1.0' in text
    assert ('artforge_request_failures_total{code="INVALID_ARGUMENT",method="Classify",model="colours",'
            'protocol="http"} 1.0') in text
    # Triton's names, from the same statistics as KServe's ModelStatistics (three requests, one failed).
    assert 'nv_inference_request_success{model="colours",version="2"} 2.0' in text
    assert 'nv_inference_request_failure{model="colours",version="2"} 1.0' in text
    assert 'nv_inference_count{model="colours",version="2"} 2.0' in text
    for name in ("nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                 "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
                 "nv_inference_compute_output_duration_us"):
        assert f'\n{name}{{model="colours",version="2"}}' in text, name


def test_ready_probe_on_the_http_port(server) -> None:
    status, text = get(f"http://127.0.0.1:{server.http_port}/v2/health/ready")
    assert status == 200 and json.loads(text) == {"ready": True}


def test_http_flags(tmp_path: Path) -> None:
    parser = build_parser()
    assert server_options(parser.parse_args(["serve", "--repo", str(tmp_path)])).http_port == 8000
    assert server_options(parser.parse_args(["serve", "--repo", str(tmp_path), "--http-port", "0"])).http_port == 0
    assert server_options(parser.parse_args(["serve", "--repo", str(tmp_path), "--no-http"])).http_port is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the test certificate")
def test_https_with_the_grpc_certificate(repo_path: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with running(repo_path, http_port=0, tls_cert=cert, tls_key=key) as server:
        context = ssl.create_default_context(cafile=str(cert))
        url = f"https://127.0.0.1:{server.http_port}/v1/models/colours/classify"
        with urllib.request.urlopen(urllib.request.Request(url, data=GREEN), timeout=10, context=context) as answer:
            assert json.loads(answer.read())["labels"][0]["label"] == "green"
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to the HTTPS port
            urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/v2/health/live", timeout=10).read()


def test_unknown_paths_and_methods_are_json(server) -> None:
    base = f"http://127.0.0.1:{server.http_port}"
    status, text = get(f"{base}/nowhere/" + "x" * 500)
    assert status == 404 and json.loads(text)["error"].startswith("no such endpoint: GET /nowhere/")
    assert len(json.loads(text)["error"]) < 120  # the path is cut, not echoed whole
    status, text = get(f"{base}/v1/models")  # GET is right here; POST is not
    assert status == 200
    status, text = get(f"{base}/v1/models", b"{}")
    assert status == 405 and "POST is not allowed on /v1/models" in json.loads(text)["error"]


def test_model_control_follows_the_grpc_rules(repo_path: Path) -> None:
    # Off by default: load and unload are refused with gRPC's sentence; nothing is unloaded.
    with running(repo_path, http_port=0) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        for action in ("load", "unload"):
            status, text = get(f"{base}/v2/repository/models/colours/{action}", b"{}")
            assert status == 400 and "is off on this server" in json.loads(text)["error"], text
        assert get(f"{base}/v1/models/colours/classify", GREEN)[0] == 200
    # Explicit, with a token: the token is needed, then it works.
    with running(repo_path, http_port=0, model_control="explicit", token="s3cret") as server:
        base = f"http://127.0.0.1:{server.http_port}"
        assert get(f"{base}/v2/repository/models/colours/unload", b"{}")[0] == 401
        request = urllib.request.Request(f"{base}/v2/repository/models/colours/load", data=b"{}",
                                         headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
