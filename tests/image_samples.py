"""Encoded images for the imageio tests: every variant of the accepted formats, and hand-made headers."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image


def pattern(height: int = 6, width: int = 10, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Random pixels: any flip, rotation or channel swap changes them."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def gradient(height: int, width: int, channels: int = 3, dtype: type = np.uint8) -> np.ndarray:
    """Smooth pixels: large images that encode small and fast."""
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    ramp = np.linspace(0, top, width, dtype=np.float64)[np.newaxis, :, np.newaxis]
    shade = np.linspace(0.2, 1.0, height)[:, np.newaxis, np.newaxis]
    return np.broadcast_to(ramp * shade, (height, width, channels)).astype(dtype)


def encode_cv(rgb: np.ndarray, ext: str, params: tuple[int, ...] = ()) -> bytes:
    code = cv2.COLOR_RGBA2BGRA if rgb.ndim == 3 and rgb.shape[2] == 4 else cv2.COLOR_RGB2BGR
    bgr = cv2.cvtColor(rgb, code) if rgb.ndim == 3 else rgb
    ok, data = cv2.imencode(ext, bgr, list(params))
    assert ok
    return data.tobytes()


def encode_pil(rgb: np.ndarray, fmt: str, orientation: int | None = None, *, mode: str | None = None,
               frames: tuple[np.ndarray, ...] = (), **options) -> bytes:
    """Pillow's encoding (in `mode`, with an EXIF orientation, or as an animation of `frames` after the first)."""
    buffer = io.BytesIO()
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    image = Image.fromarray(rgb) if mode is None else Image.fromarray(rgb).convert(mode)
    if frames:
        options.update(save_all=True, append_images=[Image.fromarray(frame) for frame in frames])
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, body: bytes, length: int | None = None) -> bytes:
    """A PNG chunk; `length` overrides the declared length."""
    declared = len(body) if length is None else length
    return struct.pack(">I", declared) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_ihdr(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def bmp_os2(rgb: np.ndarray) -> bytes:
    """An OS/2 1.x bitmap (12-byte header, 16-bit sizes), bottom-up BGR."""
    height, width, _ = rgb.shape
    row = (width * 3 + 3) & ~3
    pixels = b"".join(rgb[y, :, ::-1].tobytes().ljust(row, b"\x00") for y in range(height - 1, -1, -1))
    return (b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26)
            + struct.pack("<IHHHH", 12, width, height, 1, 24) + pixels)


def bmp_top_down(rgb: np.ndarray) -> bytes:
    """A Windows bitmap with a negative height (rows stored top-down)."""
    height, width, _ = rgb.shape
    row = (width * 3 + 3) & ~3
    pixels = b"".join(rgb[y, :, ::-1].tobytes().ljust(row, b"\x00") for y in range(height))
    return (b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, len(pixels), 0, 0, 0, 0) + pixels)


def jpeg_header(marker: int, components: int, scan_components: int, side: int = 30_000, precision: int = 8) -> bytes:
    """SOI, a frame header and the first scan header of a JPEG, without any image data."""
    frame = struct.pack(">BHHB", precision, side, side, components) + b"".join(
        bytes([c + 1, 0x11, 0]) for c in range(components))
    scan = bytes([scan_components]) + b"".join(bytes([c + 1, 0]) for c in range(scan_components)) + b"\x00\x3f\x00"
    return (b"\xff\xd8\xff" + bytes([marker]) + struct.pack(">H", 2 + len(frame)) + frame
            + b"\xff\xda" + struct.pack(">H", 2 + len(scan)) + scan + b"\xff\xd9")


_TIFF_CODES = {1: "B", 3: "H", 4: "I"}


def tiff_file(*pages: np.ndarray, order: str = "<", tile: tuple[int, int] | None = None,
              rows_per_strip: int | None = None, tags: Sequence[dict[int, tuple[int, list[int]]]] = ()) -> bytes:
    """Uncompressed 8-bit RGB TIFF pages (one IFD each, chained), in strips or tiles, in either byte order.

    tags[i]: {tag: (type, values)} overriding or adding entries of page i's IFD.
    """
    out = bytearray(b"II*\x00" if order == "<" else b"MM\x00*") + bytes(4)
    next_pointer = 4
    for page, rgb in enumerate(pages):
        height, width, _ = rgb.shape
        if tile:
            tile_width, tile_height = tile
            padded = np.zeros((-(-height // tile_height) * tile_height, -(-width // tile_width) * tile_width, 3),
                              np.uint8)
            padded[:height, :width] = rgb
            pieces = [padded[y:y + tile_height, x:x + tile_width].tobytes()
                      for y in range(0, padded.shape[0], tile_height) for x in range(0, padded.shape[1], tile_width)]
        else:
            tile_height = rows_per_strip or height
            pieces = [rgb[y:y + tile_height].tobytes() for y in range(0, height, tile_height)]
        offsets = []
        for piece in pieces:
            offsets.append(len(out))
            out += piece
        entries = {256: (4, [width]), 257: (4, [height]), 258: (3, [8, 8, 8]), 259: (3, [1]), 262: (3, [2]),
                   277: (3, [3]), 284: (3, [1])}
        if tile:
            entries |= {322: (4, [tile[0]]), 323: (4, [tile[1]]), 324: (4, offsets),
                        325: (4, [len(piece) for piece in pieces])}
        else:
            entries |= {273: (4, offsets), 278: (4, [tile_height]), 279: (4, [len(piece) for piece in pieces])}
        entries |= tags[page] if page < len(tags) else {}
        fields = []
        for tag, (kind, values) in sorted(entries.items()):
            raw = struct.pack(order + _TIFF_CODES[kind] * len(values), *values)
            if len(raw) > 4:
                out += b"\x00" * (len(out) & 1)
                fields.append((tag, kind, len(values), struct.pack(order + "I", len(out))))
                out += raw
            else:
                fields.append((tag, kind, len(values), raw.ljust(4, b"\x00")))
        out += b"\x00" * (len(out) & 1)
        out[next_pointer:next_pointer + 4] = struct.pack(order + "I", len(out))
        out += struct.pack(order + "H", len(fields))
        for field in fields:
            out += struct.pack(order + "HHI4s", *field)
        next_pointer = len(out)
        out += bytes(4)
    return bytes(out)


def variants(height: int = 37, width: int = 53) -> dict[str, bytes]:
    """Every variant of the accepted formats that OpenCV or Pillow writes, plus hand-made BMP and TIFF layouts."""
    rgb, rgba, gray = pattern(height, width), pattern(height, width, 4, seed=1), pattern(height, width, 1)[..., 0]
    deep = np.random.default_rng(2).integers(0, 65536, (height, width, 4), dtype=np.uint16)
    progressive = (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    lossless = (cv2.IMWRITE_WEBP_QUALITY, 101)
    return {
        "jpeg-baseline": encode_cv(rgb, ".jpg"),
        "jpeg-progressive": encode_cv(rgb, ".jpg", progressive),
        "jpeg-gray": encode_cv(gray, ".jpg"),
        "jpeg-gray-progressive": encode_cv(gray, ".jpg", progressive),
        "jpeg-411": encode_cv(rgb, ".jpg", (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411)),
        "jpeg-restarts": encode_cv(rgb, ".jpg", (cv2.IMWRITE_JPEG_OPTIMIZE, 1, cv2.IMWRITE_JPEG_RST_INTERVAL, 2)),
        "jpeg-cmyk": encode_pil(rgb, "JPEG", mode="CMYK"),
        "jpeg-cmyk-progressive": encode_pil(rgb, "JPEG", mode="CMYK", progressive=True),
        "jpeg-exif": encode_pil(rgb, "JPEG", 6),
        "png-rgb": encode_cv(rgb, ".png"),
        "png-rgba": encode_cv(rgba, ".png"),
        "png-gray": encode_cv(gray, ".png"),
        "png-16-rgba": encode_cv(deep, ".png"),
        "png-palette": encode_pil(rgb, "PNG", mode="P"),
        "png-palette-transparent": encode_pil(rgb, "PNG", mode="P", transparency=0),
        "png-gray-alpha": encode_pil(rgba, "PNG", mode="LA"),
        "png-1-bit": encode_pil(gray, "PNG", mode="1"),
        "png-animated": encode_pil(rgb, "PNG", frames=(rgb[::-1].copy(),)),
        "webp-lossy": encode_cv(rgb, ".webp", (cv2.IMWRITE_WEBP_QUALITY, 80)),
        "webp-lossless": encode_cv(rgb, ".webp", lossless),
        "webp-lossy-alpha": encode_cv(rgba, ".webp", (cv2.IMWRITE_WEBP_QUALITY, 80)),
        "webp-lossless-alpha": encode_cv(rgba, ".webp", lossless),
        "webp-exif": encode_pil(rgb, "WEBP", 3),
        "webp-animated": encode_pil(rgb, "WEBP", frames=(rgb[::-1].copy(),), lossless=True),
        "bmp-24": encode_cv(rgb, ".bmp"),
        "bmp-32": encode_pil(rgba, "BMP"),
        "bmp-gray": encode_cv(gray, ".bmp"),
        "bmp-palette": encode_pil(rgb, "BMP", mode="P"),
        "bmp-1-bit": encode_pil(gray, "BMP", mode="1"),
        "bmp-os2": bmp_os2(rgb),
        "bmp-top-down": bmp_top_down(rgb),
        "gif": encode_pil(rgb, "GIF"),
        "gif-interlaced": encode_pil(rgb, "GIF", interlace=True),
        "gif-animated": encode_pil(rgb, "GIF", frames=(rgb[::-1].copy(),)),
        "gif-transparent": encode_pil(rgb, "GIF", transparency=0),
        "tiff-little-endian": tiff_file(rgb),
        "tiff-big-endian": tiff_file(rgb, order=">"),
        "tiff-strips": tiff_file(rgb, order=">", rows_per_strip=5),
        "tiff-tiled": tiff_file(rgb, tile=(32, 32)),
        "tiff-pages": tiff_file(rgb, pattern(height * 3, width * 2, seed=3), order=">"),
        "tiff-lzw": encode_pil(rgb, "TIFF", compression="tiff_lzw"),
        "tiff-jpeg": encode_pil(rgb, "TIFF", compression="jpeg"),
        "tiff-16-rgba": encode_cv(deep, ".tiff"),
        "tiff-float": encode_cv(rgb.astype(np.float32) / 255, ".tiff"),
        "tiff-cmyk": encode_pil(rgb, "TIFF", mode="CMYK"),
        "tiff-palette": encode_pil(rgb, "TIFF", mode="P"),
        "tiff-1-bit": encode_pil(gray, "TIFF", mode="1"),
    }
