"""The HTTP front end against OpenAPI: its own /openapi.json (generated from the routes), and schemathesis
running the published Open Inference Protocol document against the live server.

Checks left out of the schemathesis runs, and why:

- `status_code_conformance`: the published document lists only 200 (and 400 for metadata and infer) for
  every operation, while its own text requires failures to be "indicated by an HTTP error status"; this
  server answers an unknown model 404, a model that is not ready 503, and so on (docs/serving.md).
- `positive_data_acceptance` (second run only): a request the document's schema allows (any tensor names,
  shapes, datatypes) is not one a given model accepts; it gets 400 with the reason, as the text asks.

The second run names the repository's loaded models; it leaves out `broken`, the model that failed to load,
because every request to it is answered 503 (not ready) by design, which `not_a_server_error` would count.

Everything else runs, `not_a_server_error` (no 5xx) and `response_schema_conformance` among them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT.parent / "shared" / "schemas" / "open-inference-protocol" / "open_inference_rest.yaml"
needs_document = pytest.mark.skipif(not PUBLISHED.exists(), reason=f"the published document is not at {PUBLISHED} "
                                    "(the shared/ folder beside the repository)")


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    return {"http_port": 0}


@pytest.fixture(scope="module")
def base(server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def test_openapi_is_generated_from_the_routes(base: str) -> None:
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as response:
        document = json.loads(response.read())
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in ("/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/{name}", "/v2/models/{name}/ready",
                 "/v2/models/{name}/versions/{version}/infer", "/v2/models/{name}/infer", "/v2/repository/index",
                 "/v1/models", "/v1/models/{name}/classify", "/v1/models/{name}/stylize",
                 "/v1/models/{name}/generate"):
        assert path in paths, path
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert {"400", "404", "413", "429", "503", "504"} <= set(infer["responses"])
    stylize = paths["/v1/models/{name}/stylize"]["post"]
    assert {p["name"] for p in stylize["parameters"]} >= {"name", "format", "quality", "max_side", "timeout"}
    assert "image/png" in stylize["responses"]["200"]["content"]
    assert "InferenceRequest" in document["components"]["schemas"]
    assert "HTTPBearer" in document["components"]["securitySchemes"]


def _schemathesis(document: Path, base: str, exclude: list[str], workdir: Path) -> subprocess.CompletedProcess:
    """schemathesis' CLI run (in `workdir`: it keeps a cache folder where it runs)."""
    return subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", str(document), "--url", base, "--checks", "all",
         "--exclude-checks", ",".join(exclude), "--max-examples", "25", "--seed", "1",
         "--generation-deterministic", "--phases", "examples,coverage,fuzzing"],
        capture_output=True, text=True, timeout=600, cwd=workdir)


@needs_document
def test_published_document_as_is(base: str, tmp_path: Path) -> None:
    # Its paths spell parameters `${MODEL_NAME}`, so generated requests name models like "$x": every model
    # lookup fails, and what is checked is that failures are well-formed, never 5xx.
    result = _schemathesis(PUBLISHED, base, ["status_code_conformance"], tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


@needs_document
def test_published_document_on_real_models(base: str, tmp_path: Path) -> None:
    # The same document with standard path templates and the repository's names and versions, so the
    # generated metadata, ready and infer requests reach loaded models.
    document = yaml.safe_load(PUBLISHED.read_text())
    paths = {}
    for path, item in document["paths"].items():
        for parameter in item.get("parameters", []):
            values = {"MODEL_NAME": ["colours", "dreams", "invert"], "MODEL_VERSION": ["1", "2"]}
            parameter["schema"] = {"type": "string", "enum": values[parameter["name"]]}
        paths[path.replace("${", "{")] = item
    document["paths"] = paths
    rewritten = tmp_path / "open_inference_rest.json"
    rewritten.write_text(json.dumps(document))
    result = _schemathesis(rewritten, base, ["status_code_conformance", "positive_data_acceptance"], tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
