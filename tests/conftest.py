"""Fixtures shared by the test modules: a copy of the serving test repository
and a server on it (one per module), channels and stubs to that server, and
copies of shipped zoo models. Helpers that are not fixtures live in
serving_support.py and onnx_builders.py."""

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from serving_support import channel, image_stub, kserve_stub, repository, running

from artforge.proto.artforge.v1 import image_service_pb2_grpc
from artforge.proto.inference import grpc_service_pb2_grpc
from artforge.serving.server import Server

# Backend choices and engines are cached under ARTFORGE_CACHE_DIR; the suite
# (and the CLI subprocesses it starts, which inherit it) must never write to
# the user's ~/.cache.
if not os.environ.get("ARTFORGE_CACHE_DIR"):
    os.environ["ARTFORGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="artforge-test-cache-")
    atexit.register(shutil.rmtree, os.environ["ARTFORGE_CACHE_DIR"], True)

# Tests share 2 cores with each other's subprocesses; keep libraries from
# oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")

SHIPPED_REPOSITORY = Path(__file__).resolve().parents[1] / "zoo" / "repository"


@pytest.fixture(scope="module")
def repo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own copy of serving_support.repository(): colours, dreams, invert, broken.

    A module that needs more models overrides this fixture, asks for it by the
    same name and adds to it before its server starts.
    """
    return repository(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    """ServerOptions fields the module's shared server starts with (see serving_support.options);
    a module overrides this fixture to change them."""
    return {}


@pytest.fixture(scope="module")
def server(repo_path: Path, server_overrides: dict[str, object]) -> Iterator[Server]:
    """One server per module on repo_path, on 127.0.0.1 with an ephemeral port."""
    with running(repo_path, **server_overrides) as server:
        yield server


@pytest.fixture(scope="module")
def target(server: Server) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def ch(server: Server) -> Iterator[grpc.Channel]:
    """A plain channel to the module's server."""
    with channel(server) as ch:
        yield ch


@pytest.fixture(scope="module")
def image_api(ch: grpc.Channel) -> image_service_pb2_grpc.ImageServiceStub:
    return image_stub(ch)


@pytest.fixture(scope="module")
def kserve_api(ch: grpc.Channel) -> grpc_service_pb2_grpc.GRPCInferenceServiceStub:
    return kserve_stub(ch)


@pytest.fixture
def zoo_copy(tmp_path: Path) -> Callable[..., Path]:
    """zoo_copy(*names): tmp_path/repo holding copies of those shipped zoo models, for tests that write there."""

    def copy(*names: str) -> Path:
        root = tmp_path / "repo"
        for name in names:
            shutil.copytree(SHIPPED_REPOSITORY / name, root / name)
        return root

    return copy
