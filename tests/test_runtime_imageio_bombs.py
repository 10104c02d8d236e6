"""Decompression bombs are refused without allocating, decode_cost_bytes bounds what a decode allocates, and
fuzzed headers never get past decode_image as anything but an ArtforgeError.

Memory is measured as the growth of peak RSS around each decode in a fresh process, after warm-up decodes
have loaded the codecs; nothing is timed.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_samples import (
    encode_cv,
    encode_pil,
    gradient,
    jpeg_header,
    pattern,
    png_chunk,
    png_ihdr,
    tiff_file,
    variants,
)

from artforge.runtime.imageio import decode_cost_bytes, probe_image

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20

# Decodes each case after the warm-ups and writes, per case, its outcome and
# peak RSS growth to the file named by argv[1] (not stdout: OpenCV prints there).
# On Linux a child's ru_maxrss starts at its parent's RSS (exec keeps the
# forked memory's high-water mark), so the child reads its own VmHWM instead,
# reset before each case where /proc/self/clear_refs allows.
_CHILD = """
import json, os, pickle, resource, sys
from artforge.errors import ArtforgeError
from artforge.runtime.imageio import decode_image

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field + ":"))

def peak():
    if os.path.exists("/proc/self/status"):
        return status("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)

def start():
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return status("VmRSS")
    except OSError:
        return peak()

warm_ups, cases = pickle.load(sys.stdin.buffer)
for data, hints in warm_ups:
    decode_image(data, **hints)
results = []
for data, hints in cases:
    before = start()
    try:
        image = decode_image(data, **hints)
        outcome, message = "decoded", list(image.shape)
        del image
    except ArtforgeError as error:
        outcome, message = type(error).__name__, str(error)
    except Exception as error:
        outcome, message = "unexpected", repr(error)
    results.append({"outcome": outcome, "message": message, "grew": peak() - before})
with open(sys.argv[1], "w") as out:
    json.dump(results, out)
"""


def decode_in_fresh_process(cases: list[tuple[bytes, dict]], warm_ups: list[tuple[bytes, dict]],
                            tmp_path: Path) -> list[dict]:
    out = tmp_path / f"results-{len(list(tmp_path.iterdir()))}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(out)], input=pickle.dumps((warm_ups, cases)),
                          capture_output=True, env=env, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return json.loads(out.read_text())


def warm_ups() -> list[tuple[bytes, dict]]:
    small = variants(20, 30)
    return [(small[name], {}) for name in ("jpeg-progressive", "png-rgb", "webp-lossy", "gif", "tiff-lzw", "bmp-24")]


# -- bombs: refused before any decode ------------------------------------------------

def progressive_jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode_cv(pattern(16, 16), ".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)))
    frame = data.index(b"\xff\xc2")
    data[frame + 5:frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bombs() -> dict[str, tuple[bytes, dict, str, str]]:
    """name: (data, decode_image hints, error class, message pattern)."""
    flat = np.full((3000, 3000, 3), 90, np.uint8)
    text = png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"a" * 7_900_000, 9))
    png = encode_cv(pattern(4, 4), ".png")
    return {
        "progressive JPEG claiming 30000x30000, decoded for Classify": (
            progressive_jpeg_claiming(30_000, 30_000), {"short_side": 224}, "ResourceExhaustedError",
            "30000x30000.*progressive"),
        "sequential JPEG whose first scan lacks components": (
            jpeg_header(0xC0, 3, 1), {"short_side": 224}, "ResourceExhaustedError", "multi-scan"),
        "JPEG of 1000 progressive scans": (
            progressive_jpeg_claiming(4000, 4000)[:-2] + b"\xff\xda\x00\x08\x01\x01\x00\x01\x01\x00" * 1000
            + b"\xff\xd9", {}, "InvalidInputError", "more than 100 scans"),
        "JPEG 2000 of 3000x3000": (encode_cv(flat, ".jp2"), {}, "InvalidInputError", "JPEG 2000"),
        "Radiance HDR claiming 30000x30000": (
            b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n" + bytes(64), {}, "InvalidInputError",
            "Radiance HDR"),
        "PNM claiming 30000x30000": (b"P6\n30000 30000\n255\n" + bytes(64), {}, "InvalidInputError", "PNM"),
        "PNG declaring a 2 GB chunk": (
            png_ihdr(1, 1) + png_chunk(b"tEXt", b"a\x00b", length=0x7FF0_0000), {}, "InvalidInputError",
            "PNG header is truncated or malformed"),
        "PNG of 50 compressed text chunks of 8 MB": (
            png[:33] + text * 50 + png[33:], {}, "InvalidInputError", "compressed PNG text"),
        "16x16 TIFF of 16384x16368 tiles": (
            tiff_file(pattern(16, 16), tile=(16, 16), tags=({322: (4, [16384]), 323: (4, [16368])},)), {},
            "ResourceExhaustedError", "TIFF tiles"),
        "OS/2 bitmap claiming 65535x65535": (
            b"BM" + struct.pack("<IHHI", 90, 0, 0, 26) + struct.pack("<IHHHH", 12, 65535, 65535, 1, 24) + bytes(64),
            {}, "ResourceExhaustedError", "65535x65535"),
        "GIF claiming 65535x65535": (
            b"GIF89a" + struct.pack("<HH", 65535, 65535) + bytes(64), {}, "ResourceExhaustedError", "65535x65535"),
    }


def test_bombs_are_refused_without_allocating(tmp_path: Path) -> None:
    cases = bombs()
    control = encode_cv(np.full((3000, 4000, 3), 90, np.uint8), ".png")  # 36 MB decoded, twice over
    results = decode_in_fresh_process([(data, hints) for data, hints, _, _ in cases.values()] + [(control, {})],
                                      warm_ups(), tmp_path)
    assert results[-1]["outcome"] == "decoded" and results[-1]["grew"] > 30 * MB  # the measurement sees a decode
    for (name, (data, _, error, message)), result in zip(cases.items(), results[:-1], strict=True):
        assert result["outcome"] == error, (name, result)
        assert re.search(message, result["message"]), (name, result)
        assert result["grew"] < 16 * MB, (name, len(data), result)


# -- decode_cost_bytes bounds what a decode allocates -----------------------------------

def heavy_samples() -> dict[str, tuple[bytes, dict]]:
    """The most expensive layouts of each accepted format, at 1600x1200, with the hints they are decoded with."""
    height, width = 1200, 1600
    rgb, rgba = gradient(height, width), gradient(height, width, 4)
    deep = gradient(height, width, 4, np.uint16)
    progressive = (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    return {
        "progressive JPEG at 1/8 scale": (encode_cv(rgb, ".jpg", progressive), {"short_side": 150}),
        "progressive CMYK JPEG": (encode_pil(rgb, "JPEG", mode="CMYK", progressive=True), {}),
        "baseline JPEG": (encode_cv(rgb, ".jpg"), {}),
        "16-bit RGBA PNG": (encode_cv(deep, ".png"), {}),
        "animated PNG": (encode_pil(rgba, "PNG", frames=(rgba[::-1].copy(),)), {}),
        "lossless RGBA WebP": (encode_cv(rgba, ".webp", (cv2.IMWRITE_WEBP_QUALITY, 101)), {}),
        "animated WebP": (encode_pil(rgba, "WEBP", frames=(rgba[::-1].copy(),), quality=50, method=0), {}),
        "transparent GIF": (encode_pil(rgb, "GIF", transparency=0), {}),
        "32-bit RGBA BMP": (encode_pil(rgba, "BMP"), {}),
        "float TIFF": (encode_cv(rgb.astype(np.float32) / 255, ".tiff"), {}),
        "16-bit RGBA TIFF": (encode_cv(deep, ".tiff"), {}),
        "tiled TIFF": (tiff_file(rgb, tile=(256, 256)), {}),
        "CMYK TIFF in one strip": (encode_pil(rgb, "TIFF", mode="CMYK"), {}),
    }


@pytest.mark.parametrize("name", list(heavy_samples()))
def test_decode_cost_bytes_bounds_the_peak_memory_of_a_decode(name: str, tmp_path: Path) -> None:
    data, hints = heavy_samples()[name]
    cost = decode_cost_bytes(probe_image(data), **hints)
    [result] = decode_in_fresh_process([(data, hints)], warm_ups(), tmp_path)
    assert result["outcome"] == "decoded", result
    assert result["grew"] <= cost, (result["grew"] / MB, cost / MB)
    assert cost < 4 * result["grew"] + 16 * MB  # a bound, not a guess: within a small factor


# -- fuzzing: every mutated header decodes within the limit or raises an ArtforgeError --------

FUZZ_MAX_PIXELS = 1 << 18


def mutations(data: bytes, width: int, height: int, rng: random.Random, count: int) -> list[bytes]:
    """Bit flips (mostly in the header), truncations, and huge values written over the size fields."""
    fields = [(offset, fmt) for fmt in ("<H", ">H", "<I", ">I") for side in (width, height, width - 1, height - 1)
              for offset in range(min(len(data), 512) - struct.calcsize(fmt))
              if struct.unpack_from(fmt, data, offset)[0] == side]
    out = []
    for _ in range(count):
        mutated = bytearray(data)
        kind = rng.choice(("flip", "truncate", "huge") if fields else ("flip", "truncate"))
        if kind == "flip":
            for _ in range(rng.randint(1, 4)):
                position = rng.randrange(min(len(data), 256)) if rng.random() < 0.8 else rng.randrange(len(data))
                mutated[position] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            del mutated[rng.randrange(len(data)):]
        else:
            offset, fmt = rng.choice(fields)
            top = 1 << (8 * struct.calcsize(fmt))
            struct.pack_into(fmt, mutated, offset, rng.choice((rng.randrange(1, 1 << 12), rng.randrange(top))))
        out.append(bytes(mutated))
    return out


def test_fuzzed_headers_decode_within_the_limit_or_raise_an_artforge_error(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    cases = [(mutated, {"max_pixels": FUZZ_MAX_PIXELS})
             for data in variants(37, 53).values() for mutated in mutations(data, 53, 37, rng, 60)]
    results = decode_in_fresh_process(cases, warm_ups(), tmp_path)
    unexpected = [result["message"] for result in results if result["outcome"] == "unexpected"]
    assert not unexpected, unexpected[:5]
    decoded = [result["message"] for result in results if result["outcome"] == "decoded"]
    assert all(height * width <= FUZZ_MAX_PIXELS for height, width, *_ in decoded)
    outcomes = {result["outcome"] for result in results}
    assert {"decoded", "InvalidInputError", "ResourceExhaustedError"} <= outcomes, outcomes
    assert max(result["grew"] for result in results) < 64 * MB
