"""A few hundred seeded malformed HTTP requests over both HTTP APIs (KServe v2 REST and the image endpoints):
never a server error (5xx other than 503 for a model that is not ready and 504 for a passed deadline), every
error a JSON body with one sentence, and a server that still serves after every batch.

The gRPC side has the same test in test_serving_fuzz.py.
"""

from __future__ import annotations

import collections
import http.client
import json
import logging
import random
import urllib.parse
from dataclasses import dataclass

import pytest
from serving_support import encode, noise, solid

SEED = 20261129
CASES = 600
BATCH = 25
GREEN = encode(solid((0, 255, 0)))
MODELS = ("colours", "dreams", "invert", "broken")
#: statuses that are answers, not failures: a model that failed to load (by design), a deadline that passed
EXPECTED_5XX = {503, 504}


@dataclass
class Case:
    what: str
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    return {"http_port": 0, "model_control": "explicit", "max_request_batch": 8, "max_message_mb": 1}


def _name(r: random.Random) -> str:
    return r.choice([*MODELS, "", "nope", "x" * r.choice((1, 300, 5000)), "../../etc/passwd", "ünï", "%00", "a b"])


def _path(r: random.Random) -> str:
    name = urllib.parse.quote(_name(r), safe="")
    version = r.choice(["", "1", "0", "-1", "abc", "99999999999999999999"])
    versioned = f"/v2/models/{name}" + (f"/versions/{version}" if version else "")
    return r.choice([
        "/", "/v2", "/v2/health/live", "/v2/health/ready", versioned, f"{versioned}/ready", f"{versioned}/infer",
        f"{versioned}/config", f"{versioned}/stats", "/v2/repository/index",
        f"/v2/repository/models/{name}/load", f"/v2/repository/models/{name}/unload", "/v1/models",
        f"/v1/models/{name}/classify", f"/v1/models/{name}/stylize", f"/v1/models/{name}/generate",
        "/openapi.json", "/" + "a/" * r.randint(1, 50), "/v2/models//infer"])


def _query(r: random.Random) -> str:
    options = {"top_k": ["0", "-1", "many", "1e9", "3"], "count": ["-5", "0", "9", "1000", "x"],
               "seed": ["-1", "abc", "1" * 30, "7"], "format": ["png", "jpeg", "gif", "", "%00"],
               "quality": ["0", "101", "1000", "q"], "max_side": ["0", "-3", "1", "big"],
               "timeout": ["nan", "inf", "-1", "0", "0.000001"], "grid": ["-1", "0", "3", "x"]}
    picked = r.sample(sorted(options), r.randint(0, 3))
    return "&".join(f"{key}={r.choice(options[key])}" for key in picked)


def _infer_json(r: random.Random) -> dict:
    tensor: dict = {"name": r.choice(["image", "latent", "nope", ""]),
                    "shape": r.choice([[1, 8, 8, 3], [1, 100], [], [-1], [2**40, 2], [1, 8, 8]]),
                    "datatype": r.choice(["UINT8", "FP32", "BYTES", "BOOL", "nope", 5])}
    tensor["data"] = r.choice([[0] * 192, [0.5] * 100, "x", [[1, 2], [3]], None, [float("inf")], {"a": 1}])
    body: dict = {"inputs": r.choice([[tensor], [], tensor, None, [tensor, tensor]])}
    if r.random() < 0.3:
        body["parameters"] = {r.choice(["timeout", "binary_data_output", "priority", "sequence_id"]):
                              r.choice([1, -1, "x", None, True, 1e300])}
    if r.random() < 0.3:
        body["outputs"] = [{"name": r.choice(["probabilities", "image", "stylized", "nope"]),
                            "parameters": {"classification": r.choice([0, 3, -2, "x"]), "binary_data": True}}]
    return body


def _body(r: random.Random) -> tuple[str, bytes, dict[str, str]]:
    kind = r.choice(["random bytes", "json", "mutated json", "image", "mutated image", "binary extension",
                     "nested", "empty"])
    headers: dict[str, str] = {}
    if kind == "random bytes":
        body = r.randbytes(r.choice((1, 64, 4096)))
    elif kind == "json":
        body = json.dumps(_infer_json(r), allow_nan=True).encode()
        headers["Content-Type"] = "application/json"
    elif kind == "mutated json":
        body = bytearray(json.dumps(_infer_json(r)).encode())
        for _ in range(r.randint(1, 5)):
            body[r.randrange(len(body))] = r.randrange(256)
        body = bytes(body)
    elif kind == "image":
        body = r.choice([GREEN, encode(noise(r.randint(1, 40), r.randint(1, 40))), b"\x89PNG\r\n\x1a\n"])
    elif kind == "mutated image":
        body = bytearray(encode(noise(16, 16)))
        for _ in range(r.randint(1, 8)):
            body[r.randrange(len(body))] = r.randrange(256)
        body = bytes(body)
    elif kind == "binary extension":
        header = json.dumps(_infer_json(r)).encode()
        body = header + r.randbytes(r.choice((0, 10, 192)))
        headers["Inference-Header-Content-Length"] = r.choice([str(len(header)), "0", "-1", "x", str(10**12)])
        headers["Content-Type"] = "application/octet-stream"
    elif kind == "nested":
        body = b"[" * r.choice((10, 10_000)) + b"]" * r.choice((0, 10))
        headers["Content-Type"] = "application/json"
    else:
        body = b""
    if r.random() < 0.2:
        headers["Content-Type"] = r.choice(["multipart/form-data; boundary=x", "text/plain", "image/png",
                                            "application/json; charset=utf-16"])
    if r.random() < 0.1:
        headers["Content-Encoding"] = r.choice(["gzip", "deflate", "br"])
    return kind, body, headers


def cases(seed: int, count: int) -> list[Case]:
    r = random.Random(seed)
    out = []
    for _ in range(count):
        kind, body, headers = _body(r)
        path, query = _path(r), _query(r)
        method = r.choices(["POST", "GET", "PUT", "DELETE"], weights=(6, 3, 1, 1))[0]
        out.append(Case(kind, method, f"{path}?{query}" if query else path, body, headers))
    return out


def send(port: int, case: Case) -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(case.method, case.path, body=case.body or None, headers=case.headers)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("content-type") or ""
    finally:
        conn.close()


def test_malformed_http_requests_never_break_the_server(server, caplog) -> None:
    port = server.http_port
    found: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()
    generated = cases(SEED, CASES)
    with caplog.at_level(logging.INFO, logger="artforge.serving"):
        for start in range(0, len(generated), BATCH):
            for case in generated[start:start + BATCH]:
                status, body, content_type = send(port, case)
                statuses[status] += 1
                where = f"{case.what}: {case.method} {case.path[:120]}"
                if status >= 500 and status not in EXPECTED_5XX:
                    found.append(f"{where} -> {status} {body[:200]!r}")
                elif status >= 400 and "json" in content_type:
                    answer = json.loads(body)
                    message = answer.get("error") or answer.get("detail")
                    if "ready" in answer:  # readiness answers "not ready" with its own body, as KServe's does
                        continue
                    if not message or len(str(message)) > 2048:
                        found.append(f"{where} -> {status} without one bounded sentence: {body[:200]!r}")
            # Model control is on, so a case may have unloaded the model legitimately: load it back first.
            status, body, _ = send(port, Case("load", "POST", "/v2/repository/models/colours/load", b"", {}))
            assert status == 200, (start, status, body)
            status, body, _ = send(port, Case("good", "POST", "/v1/models/colours/classify", GREEN, {}))
            assert status == 200 and json.loads(body)["labels"][0]["label"] == "green", (start, status, body)
    assert not found, "\n".join(found)
    # The generator reaches the handlers' own checks, not only routing.
    assert {200, 400, 404}.issubset(statuses), statuses
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
