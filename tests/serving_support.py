"""Shared pieces of the tests/test_serving_*.py modules: repositories, servers, images, clients."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import grpc
import numpy as np
from onnx_builders import add_model, standard_repository

from artforge.proto.artforge.v1 import image_service_pb2_grpc
from artforge.proto.inference import grpc_service_pb2_grpc
from artforge.serving.options import ServerOptions
from artforge.serving.server import Server

BROKEN = b"\x08\x07 not an onnx model"


def repository(root: Path) -> Path:
    """colours (classifier v1, v2), dreams (generator), invert (stylizer) and `broken` (fails to load)."""
    standard_repository(root)
    add_model(root, "broken", BROKEN)
    return root


def options(repo: Path, **overrides: object) -> ServerOptions:
    """Loopback, ephemeral port, no metrics or HTTP port, one ORT thread: polite on 2 shared cores."""
    base = ServerOptions(repo=repo, host="127.0.0.1", port=0, metrics_port=None, http_port=None, threads=1,
                         workers=2, grace_s=1)
    return replace(base, **overrides)


@contextlib.contextmanager
def running(repo: Path, **overrides: object) -> Iterator[Server]:
    server = Server(options(repo, **overrides))
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=0)


def channel(server: Server) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{server.port}")


def kserve_stub(ch: grpc.Channel) -> grpc_service_pb2_grpc.GRPCInferenceServiceStub:
    return grpc_service_pb2_grpc.GRPCInferenceServiceStub(ch)


def image_stub(ch: grpc.Channel) -> image_service_pb2_grpc.ImageServiceStub:
    return image_service_pb2_grpc.ImageServiceStub(ch)


def solid(colour: tuple[int, ...], height: int = 16, width: int = 16) -> np.ndarray:
    return np.full((height, width, len(colour)), colour, dtype=np.uint8)


def noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def encode(rgb: np.ndarray, ext: str = ".png") -> bytes:
    """Real encoded image bytes, RGB(A) in."""
    code = cv2.COLOR_RGBA2BGRA if rgb.shape[2] == 4 else cv2.COLOR_RGB2BGR
    ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, code))
    assert ok
    return data.tobytes()


def decode(data: bytes) -> np.ndarray:
    """Encoded bytes back to RGB(A)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, "the server sent bytes OpenCV cannot decode"
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    """The RpcError a call raises (fails the test when it succeeds)."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"{call} succeeded; an error was expected")
