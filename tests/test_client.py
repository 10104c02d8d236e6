"""The client SDK and `artforge ... --server` against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from serving_support import decode, encode, noise, options, running, solid

from artforge.cli import main
from artforge.client import (
    AsyncImageClient,
    AuthenticationError,
    DeadlineExceededError,
    ImageClient,
    RemoteError,
    ServerUnavailableError,
)
from artforge.errors import InvalidInputError, NotFoundError, ResourceExhaustedError
from artforge.serving.server import Server

TOKEN = "t0ken"
MAX_PIXELS = 100_000


@pytest.fixture(scope="module")
def server_overrides() -> dict[str, object]:
    # A token on the shared server: every call below proves the metadata is sent.
    return {"token": TOKEN, "max_image_pixels": MAX_PIXELS}


@pytest.fixture
def client(target: str) -> Iterator[ImageClient]:
    with ImageClient(target, token=TOKEN, timeout=10) as client:
        yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inverted(data: bytes, original: np.ndarray) -> bool:
    """The test stylizer inverts colours; PNG round trips are exact."""
    return np.array_equal(decode(data), 255 - original)


# ------------------------------------------------------------------ every call


def test_list_models(client: ImageClient) -> None:
    models = {m.name: m for m in client.list_models()}
    assert sorted(models) == ["broken", "colours", "dreams", "invert"]
    assert models["colours"].kind == "classifier" and models["colours"].ready
    assert models["colours"].labels == ("red", "green", "blue")
    assert models["colours"].versions == ("1", "2")
    assert models["invert"].inputs[0].datatype == "UINT8" and models["invert"].backend
    assert not models["broken"].ready and models["broken"].reason


def test_classify_bytes_path_and_array(client: ImageClient, tmp_path: Path) -> None:
    path = tmp_path / "green.png"
    path.write_bytes(encode(solid((0, 255, 0))))
    assert client.classify(encode(solid((255, 0, 0))), model="colours")[0][0] == "red"
    assert client.classify(path)[0][0] == "green"  # default model: the only ready classifier
    assert client.classify(str(path), top_k=1) == [("green", pytest.approx(1.0, abs=1e-3))]
    top = client.classify(solid((0, 0, 255)), top_k=2)
    assert top[0][0] == "blue" and len(top) == 2
    assert all(isinstance(score, float) for _, score in top)


def test_generate(client: ImageClient) -> None:
    images = client.generate(3, seed=5)
    assert len(images) == 3 and images[0].startswith(b"\x89PNG")
    assert decode(images[0]).shape == (4, 4, 3)
    assert client.generate(3, seed=5, model="dreams") == images  # the seed fixes the latents
    assert client.generate(1, seed=5, format="jpeg", quality=80)[0].startswith(b"\xff\xd8")


def test_stylize(client: ImageClient) -> None:
    picture = noise(20, 30)
    assert inverted(client.stylize(picture, model="invert"), picture)  # array in: PNG out
    jpeg = client.stylize(encode(picture, ".jpg"), format=None)
    assert jpeg.startswith(b"\xff\xd8")  # format None = the input's format
    small = client.stylize(encode(picture), format="webp", max_side=15)
    assert decode(small).shape == (10, 15, 3)


def test_stylize_many_keeps_order_and_reports_a_corrupt_item(client: ImageClient, tmp_path: Path) -> None:
    pictures = [noise(16, 8 + 4 * i, seed=i) for i in range(6)]
    missing = tmp_path / "missing.png"
    items: list[object] = [encode(p) for p in pictures[:3]] + [b"\x89PNG\r\n\x1a\n truncated"] \
        + [encode(p) for p in pictures[3:5]] + [missing, pictures[5]]
    # window=2 makes the client wait for answers before sending more.
    results = list(client.stylize_many(iter(items), model="invert", format="png", window=2))
    assert [r.index for r in results] == list(range(len(items)))
    assert [r.ok for r in results] == [True, True, True, False, True, True, False, True]
    assert isinstance(results[3].error, InvalidInputError) and "decoded" in str(results[3].error)
    assert isinstance(results[6].error, NotFoundError) and "missing.png" in str(results[6].error)
    with pytest.raises(InvalidInputError):
        results[3].unwrap()
    good = [r for r in results if r.ok]
    for picture, result in zip(pictures, good, strict=True):
        assert inverted(result.unwrap(), picture)
        assert (result.height, result.width) == picture.shape[:2]
        assert result.model == "invert" and result.model_version == "1" and result.format == "png"
    assert list(client.stylize_many([])) == []
    # Stopping early cancels the stream; the request thread does not hang on.
    threads = threading.active_count()
    stream = client.stylize_many(encode(p) for p in pictures * 20)
    assert next(stream).ok
    stream.close()
    time.sleep(0.2)
    assert threading.active_count() <= threads


def test_async_client(target: str) -> None:
    picture = noise(12, 12)

    async def frames():
        for i in range(4):
            yield b"junk" if i == 2 else encode(picture)

    async def run() -> None:
        async with AsyncImageClient(target, token=TOKEN, timeout=10) as client:
            assert (await client.classify(solid((255, 0, 0))))[0][0] == "red"
            assert len(await client.generate(2, seed=1)) == 2
            assert inverted(await client.stylize(picture), picture)
            assert "colours" in [m.name for m in await client.list_models()]
            results = [r async for r in client.stylize_many(frames(), window=1)]
            assert [r.ok for r in results] == [True, True, False, True]
            assert inverted(results[3].image, picture)
            # Sync iterables work too, and concurrent calls share one channel.
            many = await asyncio.gather(*(client.classify(solid((0, 255, 0))) for _ in range(8)))
            assert {top[0][0] for top in many} == {"green"}
            assert [r.ok async for r in client.stylize_many([encode(picture)])] == [True]
            with pytest.raises(NotFoundError, match="nope"):
                await client.stylize(picture, model="nope")

    asyncio.run(run())


# ---------------------------------------------------------------------- errors


def test_errors_map_to_artforge_types(client: ImageClient, target: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="could not be decoded"):
        client.classify(b"not an image", model="colours")
    with pytest.raises(NotFoundError, match="'nope'.*available: broken, colours"):
        client.classify(solid((1, 1, 1)), model="nope")
    with pytest.raises(ResourceExhaustedError, match="megapixels"):
        client.stylize(noise(400, 400), model="invert")
    with pytest.raises(InvalidInputError, match="format"):
        client.stylize(solid((1, 1, 1)), model="invert", format="gif")
    with pytest.raises(RemoteError, match="FAILED_PRECONDITION.*stylizer") as wrong_kind:
        client.classify(solid((1, 1, 1)), model="invert")
    assert wrong_kind.value.code.name == "FAILED_PRECONDITION"
    with pytest.raises(RemoteError, match="broken is not ready"):
        client.classify(solid((1, 1, 1)), model="broken")
    # Client-side problems get the same types, before anything is sent.
    with pytest.raises(NotFoundError, match="nothing.png"):
        client.classify(tmp_path / "nothing.png")
    with pytest.raises(InvalidInputError, match="uint8"):
        client.classify(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InvalidInputError, match="shape"):
        client.classify(np.zeros((4, 4, 2), np.uint8))
    # A reply above the client's message limit.
    with ImageClient(target, token=TOKEN, max_message_mb=0.001) as small, \
            pytest.raises(ResourceExhaustedError):
        small.stylize(noise(64, 64), model="invert", format="png")


def retry_delays(caplog: pytest.LogCaptureFixture) -> list[tuple[int, float]]:
    """(attempt, seconds) of each retry the client logged (it logs every one before waiting)."""
    found = [re.search(r"retry (\d+) of \d+ in ([\d.]+) s", r.getMessage()) for r in caplog.records
             if r.name == "artforge.client"]
    return [(int(m[1]), float(m[2])) for m in found if m]


def test_token(target: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="artforge.client")
    for token in (None, "wrong"):
        with ImageClient(target, token=token, retries=5) as client:
            with pytest.raises(AuthenticationError, match="Bearer.*token") as error:
                client.list_models()
            assert target in str(error.value)
    assert retry_delays(caplog) == []  # refused, not retried


def test_timeout_maps_to_deadline_exceeded(repo_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="artforge.client")
    # Classify requests wait up to 3 s for a fuller batch, far past the 0.3 s deadline:
    # only the client's deadline can end the call.
    with running(repo_path, max_queue_delay_ms=3000) as slow:
        target = f"127.0.0.1:{slow.port}"
        with ImageClient(target, timeout=0.3, retries=3) as client:
            with pytest.raises(DeadlineExceededError, match=f"{target}.*Classify within 0.3 s") as error:
                client.classify(solid((1, 2, 3)), model="colours")
            assert isinstance(error.value, TimeoutError)
    assert retry_delays(caplog) == []  # a deadline is final, not retried


# --------------------------------------------------------------------- retries


def test_bounded_retries_on_a_closed_port(caplog: pytest.LogCaptureFixture) -> None:
    target = f"127.0.0.1:{free_port()}"
    caplog.set_level(logging.INFO, logger="artforge.client")
    with ImageClient(target, retries=3, backoff_s=0.05, max_backoff_s=0.2) as client:
        with pytest.raises(ServerUnavailableError, match=f"{target} is unavailable after 4 attempts"):
            client.classify(b"x", model="colours")
    delays = retry_delays(caplog)
    assert [attempt for attempt, _ in delays] == [1, 2, 3]
    # Backoff 0.05, 0.1, 0.2 (doubling, capped) with jitter in [half, full]; the log rounds to 0.01 s.
    # (benchmarks/bench_waits.py times the waits themselves.)
    for (_, delay), ceiling in zip(delays, (0.05, 0.1, 0.2), strict=True):
        assert ceiling / 2 - 0.005 <= delay <= ceiling + 0.005, (delay, ceiling)


def test_retries_reach_a_server_that_starts_late(repo_path: Path) -> None:
    port = free_port()
    late = Server(options(repo_path, port=port))
    starter = threading.Timer(0.4, late.start)
    starter.start()
    try:
        with ImageClient(f"127.0.0.1:{port}", retries=12, backoff_s=0.05, max_backoff_s=0.3, timeout=20) as client:
            assert client.classify(solid((255, 0, 0)), model="colours")[0][0] == "red"
    finally:
        starter.join()
        late.stop(grace=0)


def test_stream_resumes_after_a_server_restart(repo_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="artforge.client")
    first = Server(options(repo_path))
    port = first.start()
    servers = [first]

    def restart() -> None:
        servers[0].stop(grace=0)
        time.sleep(0.2)
        servers.append(Server(options(repo_path, port=port)))
        servers[-1].start()

    pictures = [noise(8, 8, seed=i) for i in range(10)]

    def source() -> Iterator[bytes]:
        for i, picture in enumerate(pictures):
            if i == 4:
                threading.Thread(target=restart).start()
            time.sleep(0.03)
            yield encode(picture)

    try:
        with ImageClient(f"127.0.0.1:{port}", retries=12, backoff_s=0.05, max_backoff_s=0.3) as client:
            results = list(client.stylize_many(source(), model="invert"))
        assert [r.index for r in results] == list(range(10))
        assert all(inverted(r.unwrap(), p) for r, p in zip(results, pictures, strict=True))
        assert len(servers) == 2
        assert any("resuming" in r.getMessage() for r in caplog.records)  # the stream did break
    finally:
        for s in servers:
            s.stop(grace=0)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the test certificate")
def test_tls_with_token(repo_path: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    with running(repo_path, tls_cert=cert, tls_key=key, token=TOKEN) as tls:
        with ImageClient(f"127.0.0.1:{tls.port}", root_certificates=cert, token=TOKEN) as client:
            assert client.classify(solid((0, 0, 255)), model="colours")[0][0] == "blue"
        # Without trusting the certificate the handshake fails: UNAVAILABLE, after the retries.
        with ImageClient(f"127.0.0.1:{tls.port}", tls=False, retries=1, backoff_s=0.01) as plain, \
                pytest.raises(ServerUnavailableError):
            plain.list_models()


def test_client_imports_neither_torch_nor_onnxruntime() -> None:
    code = ("import sys, artforge.client, artforge.cli; from artforge.cli.args import connect; "
            "args = artforge.cli.build_parser().parse_args(['classify', 'x.jpg', '--server', '127.0.0.1:1']); "
            "connect(args).close(); "
            "bad = [m for m in ('torch', 'onnxruntime') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------- remote CLI


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI tests pass no --token: $ARTFORGE_TOKEN is its documented fallback.
    monkeypatch.setenv("ARTFORGE_TOKEN", TOKEN)


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_classify(cli_env: None, target: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    red, junk = tmp_path / "red.png", tmp_path / "junk.jpg"
    red.write_bytes(encode(solid((255, 0, 0))))
    junk.write_bytes(b"\xff\xd8\xff nope")
    code, out, err = run_cli(capsys, "classify", str(red), str(junk), "--top-k", "2", "--server", target)
    assert code == 1
    assert out.splitlines() == [f"{red}: red 1.000, green 0.000"]
    assert err.startswith(f"{junk}: error: ") and len(err.splitlines()) == 1
    code, _, err = run_cli(capsys, "classify", str(red), "--model", "nope", "--server", target)
    assert code == 2 and "nope" in err and "colours" in err


def test_cli_classify_walks_a_folder(cli_env: None, target: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "red.png").write_bytes(encode(solid((255, 0, 0))))
    (tmp_path / "blue.jpg").write_bytes(encode(solid((0, 0, 255)), ".jpg"))
    (tmp_path / "notes.txt").write_text("not an image")
    code, out, err = run_cli(capsys, "classify", str(tmp_path), "--top-k", "1", "--server", target)
    assert code == 0 and err == ""
    assert out.splitlines() == [f"{tmp_path / 'blue.jpg'}: blue 1.000", f"{tmp_path / 'nested' / 'red.png'}: red 1.000"]


def test_cli_jpeg_quality_is_the_same_locally_and_through_the_server(
        cli_env: None, target: str, repo_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # No --quality: both paths use defaults.QUALITY, so the files are the same bytes.
    for where, flags in (("remote", ["--server", target]), ("local", ["--repo", str(repo_path)])):
        assert run_cli(capsys, "generate", "--format", "jpg", "--count", "2", "--out", str(tmp_path / where),
                       *flags)[0] == 0
    names = sorted(p.name for p in (tmp_path / "remote").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "local").iterdir()) and len(names) == 2
    for name in names:
        assert (tmp_path / "remote" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_cli_generate_matches_local(cli_env: None, target: str, repo_path: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(capsys, "generate", "--count", "3", "--seed", "7", "--out", str(tmp_path / "remote"),
                           "--server", target)
    assert code == 0 and out.strip() == f"wrote 3 images from dreams to {tmp_path / 'remote'}"
    assert run_cli(capsys, "generate", "--repo", str(repo_path), "--count", "3", "--seed", "7",
                   "--out", str(tmp_path / "local"))[0] == 0
    remote = sorted(p.name for p in (tmp_path / "remote").iterdir())
    assert remote == ["dreams_7_000.png", "dreams_7_001.png", "dreams_7_002.png"]
    for name in remote:  # same latents, same backend: the same pixels
        assert np.array_equal(cv2.imread(str(tmp_path / "remote" / name)), cv2.imread(str(tmp_path / "local" / name)))


def test_cli_unreachable_server_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = f"127.0.0.1:{free_port()}"
    code, out, err = run_cli(capsys, "generate", "--out", str(tmp_path), "--server", target)
    assert code == 2 and out == ""
    assert err.startswith(f"artforge: error: artforge server {target} is unavailable") and len(err.splitlines()) == 1

