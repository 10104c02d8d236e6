"""The server's memory bound: admission against --max-memory, tiled large requests, batches capped by pixels.

RSS is measured, never time: the server runs in this process, so its growth
while a request runs is this process's growth.
"""

from __future__ import annotations

import struct
import threading
import zlib
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from serving_support import decode, encode, kserve_stub, rpc_error

from artforge.proto.artforge.v1 import image_service_pb2 as api
from artforge.proto.inference import grpc_service_pb2 as pb
from artforge.serving import memory

ZOO = Path(__file__).resolve().parent.parent / "zoo"
MAX_MEMORY = 600 * memory.MB


@pytest.fixture(scope="module")
def repo_path() -> Path:
    return ZOO / "repository"  # read only


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    # Tiles of 512 above 1 MP keep the test's images small; the rules are the defaults' (4 MP, 1024).
    return {"backend": "onnxruntime", "max_memory": MAX_MEMORY, "tile_above_mp": 1.0, "tile": 512,
            "max_queue_delay_ms": 1000}


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def photo(side: int) -> np.ndarray:
    return cv2.cvtColor(cv2.resize(cv2.imread(str(ZOO / "samples" / "astronaut.jpg")), (side, side)),
                        cv2.COLOR_BGR2RGB)


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def test_a_request_that_could_never_fit_is_refused(image_api) -> None:
    # 7000 x 7000 is under the pixel limit, but its buffers alone are over 600 MB: refused from the header.
    error = rpc_error(image_api.Stylize, api.StylizeRequest(model="mosaic", image=png_header(7000, 7000)), timeout=30)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-memory" in error.details() and "max_side" in error.details()
    # max_side shrinks what the request holds: the same kind of request fits once downscaled.
    small = image_api.Stylize(api.StylizeRequest(model="mosaic", image=encode(photo(64)), max_side=32), timeout=30)
    assert (small.width, small.height) == (32, 32)


def test_large_image_is_tiled_within_the_bound(image_api) -> None:
    image = photo(1600)  # 2.56 MP: a whole-image run would hold ~1 GB of activations
    data = encode(image, ".jpg")
    image_api.Stylize(api.StylizeRequest(model="mosaic", image=encode(photo(64)), format="png"), timeout=60)
    baseline, peak, done = rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            done.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        response = image_api.Stylize(api.StylizeRequest(model="mosaic", image=data, format="jpeg"), timeout=300)
    finally:
        done.set()
        sampler.join()
    styled = decode(response.image)
    assert styled.shape == image.shape
    assert np.abs(styled.astype(int) - image.astype(int)).mean() > 5  # stylized, not passed through
    assert peak[0] - baseline < MAX_MEMORY, f"RSS grew by {(peak[0] - baseline) / memory.MB:.0f} MB"


def test_batches_are_capped_by_pixels(image_api, ch) -> None:
    # 700 x 700 = 0.49 MP: two fit under the 1 MP cap, a third does not, whatever the queue delay allows.
    futures = [image_api.Stylize.future(api.StylizeRequest(model="mosaic", image=encode(photo(700))), timeout=120)
               for _ in range(4)]
    for future in futures:
        assert future.result().width == 700
    stats = kserve_stub(ch).ModelStatistics(pb.ModelStatisticsRequest(name="mosaic")).model_stats[0]
    runs = {b.batch_size: b.compute_infer.count for b in stats.batch_stats}
    assert max(runs) == 2 and runs[2] == 2, runs
