"""Image decoding and encoding with OpenCV: RGB(A) uint8 in, RGB(A) uint8 out.

Decoding keeps alpha and 16-bit depth (IMREAD_UNCHANGED) but OpenCV then
ignores EXIF orientation (except in TIFF, where libtiff applies it), so the
orientation is read from the JPEG/PNG/WebP header here and applied
afterwards.

Only the formats whose header is parsed here are decoded (ACCEPTED_FORMATS):
the header walk gives the size and what the codec will allocate for it, so
a decompression bomb is refused before cv2.imdecode sees a byte, and
everything else OpenCV would sniff (JPEG 2000, Radiance HDR, PNM, EXR, ...)
is refused outright. The same walk lets a JPEG be decoded at reduced scale
when the caller will shrink it anyway.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

import cv2
import numpy as np

from artforge import defaults
from artforge.defaults import MAX_IMAGE_PIXELS as DEFAULT_MAX_PIXELS
from artforge.errors import InvalidInputError, NotFoundError, ResourceExhaustedError
from artforge.files import write_bytes_atomic

_FORMAT_NAMES = {"jpeg": "JPEG", "png": "PNG", "webp": "WebP", "bmp": "BMP", "gif": "GIF", "tiff": "TIFF"}
#: the formats decode_image decodes: exactly those whose header probe_image reads
ACCEPTED_FORMATS = tuple(_FORMAT_NAMES)
SUPPORTED_FORMATS = ", ".join(_FORMAT_NAMES.values())
ENCODE_FORMATS = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "webp": ".webp"}

#: what an `image` argument may be
ImageLike = np.ndarray | bytes | bytearray | memoryview | str | os.PathLike


@dataclass(frozen=True)
class ImageInfo:
    """What an image header says: format, stored size, EXIF orientation (1-8), and what decoding it costs.

    The cost fields are upper bounds for decode_cost_bytes: channels and
    sample_bytes describe the array OpenCV's decoder returns (at most 4
    channels of 1, 2, 4 or 8 bytes), codec_bytes the codec's own working
    memory beside it, and codec_pixels the pixels the codec buffers at full
    size whatever the decode scale (a progressive JPEG's coefficients, a
    TIFF's tiles), which the pixel limit is charged for too.
    """

    format: str
    width: int
    height: int
    orientation: int = 1
    _: KW_ONLY
    channels: int = 4
    sample_bytes: int = 1
    codec_bytes: int = 0
    codec_pixels: int = 0


class _Refused(Exception):
    """A header that parses but asks for something artforge will not decode (the message ends a sentence)."""


# -- header parsing -----------------------------------------------------------

_Buffer = bytes | memoryview
_MiB = 1 << 20
#: chunks a PNG or WebP header walk visits at most (legitimate files reach the image data in a few)
_MAX_CHUNKS = 1 << 16


def _exif_orientation(tiff: _Buffer) -> int:
    """Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block; 1 if absent."""
    if tiff[:6] == b"Exif\x00\x00":  # WebP writers disagree on whether to keep this prefix
        tiff = tiff[6:]
    order = {b"II": "<", b"MM": ">"}.get(bytes(tiff[:2]))
    try:
        if order is None or struct.unpack_from(order + "H", tiff, 2)[0] != 42:
            return 1
        ifd = struct.unpack_from(order + "I", tiff, 4)[0]
        for i in range(struct.unpack_from(order + "H", tiff, ifd)[0]):
            tag, kind, _, value = struct.unpack_from(order + "HHI4s", tiff, ifd + 2 + 12 * i)
            if tag == 0x0112 and kind == 3:  # SHORT
                orientation = struct.unpack_from(order + "H", value)[0]
                return orientation if 1 <= orientation <= 8 else 1
    except struct.error:
        pass
    return 1


def _count(pattern: re.Pattern[bytes], data: _Buffer, limit: int) -> int:
    """Occurrences of pattern in data, counting no further than limit + 1 (C speed, no copy)."""
    return sum(1 for _ in itertools.islice(pattern.finditer(data), limit + 1))


# JPEG. libjpeg-turbo decodes a single-scan sequential JPEG one MCU row at a
# time, so its memory follows the (possibly 1/8-scale) output. A progressive
# file, or a sequential one whose first scan lacks some components, makes it
# keep a full-image coefficient buffer instead (jdinput.c: has_multiple_scans
# = comps_in_scan < num_components || progressive_mode; jdcoefct.c allocates
# one virtual array per component, width_in_blocks x height_in_blocks of the
# *unscaled* image, 128 bytes a block), and that buffer is allocated even at
# 1/8 scale: a 703-byte progressive JPEG claiming 30000x30000 costs 2.6 GB
# decoded for Classify (libjpeg-turbo issue #560 and its report "Two Issues with the JPEG
# Standard", LJT-01-004). Such files are charged at full size. Each
# progressive scan is also a pass over that whole buffer, so a small file of
# thousands of scans costs minutes (LJT-01-003, libjpeg-turbo #284): more than
# _JPEG_MAX_SCANS are refused, libtiff's default for a JPEG inside a TIFF
# (LIBTIFF_JPEG_MAX_ALLOWED_SCAN_NUMBER). Only frames reasoned
# about here are accepted: 8-bit sequential and progressive, Huffman or
# arithmetic; lossless (SOF3/11) and hierarchical (SOF5-7, 13-15) frames,
# which OpenCV's 8-bit reader cannot return anyway, are refused.
_JPEG_SEQUENTIAL = {0xC0, 0xC1, 0xC9}
_JPEG_PROGRESSIVE = {0xC2, 0xCA}
_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # C4 DHT, C8 JPG, CC DAC are not frames
_JPEG_MAX_SCANS = 100
# libjpeg's next_marker(): skip anything up to an 0xFF, then fill bytes; FF 00 is a stuffed zero.
_JPEG_MARKER = re.compile(rb"\xff+([\x01-\xfe])")
_JPEG_SOS = re.compile(rb"\xff\xda")


def _jpeg(data: _Buffer) -> ImageInfo | None:
    # EXIF (APP1) precedes the frame header, so one walk finds both; it goes
    # on to the first scan header to learn whether the file has several scans.
    orientation, frame, scan_components, i, n = 1, None, 0, 2, len(data)
    while (found := _JPEG_MARKER.search(data, i)) is not None:
        marker, i = found.group(1)[0], found.end()
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            continue
        if marker == 0xD8:  # libjpeg refuses a second SOI
            return None
        if marker == 0xD9 or i + 2 > n:  # EOI or the end before any scan: a truncated file
            break
        (length,) = struct.unpack_from(">H", data, i)
        body = data[i + 2:i + length]
        if length < 2:
            return None
        if marker == 0xE1 and body[:6] == b"Exif\x00\x00":
            orientation = _exif_orientation(body[6:])
        elif marker in _JPEG_SOF:
            if frame is not None:  # libjpeg refuses a second frame header
                return None
            if marker not in _JPEG_SEQUENTIAL | _JPEG_PROGRESSIVE:
                raise _Refused("is a lossless or hierarchical JPEG, which OpenCV does not decode")
            frame = (marker, body)
        elif marker == 0xDA:
            scan_components = body[0] if body else 0
            break
        i += length
    if frame is None:
        return None
    marker, body = frame
    precision, height, width, components = struct.unpack_from(">BHHB", body)
    if precision != 8:
        raise _Refused(f"is a {precision}-bit JPEG; artforge decodes 8-bit JPEG only")
    if width == 0 or height == 0 or components not in (1, 3, 4) or len(body) != 6 + 3 * components:
        return None
    # libjpeg refuses sampling factors outside 1-4 before allocating; clamped, they still bound the cost.
    sampling = [(min(max(body[7 + 3 * c] >> 4, 1), 4), min(max(body[7 + 3 * c] & 15, 1), 4))
                for c in range(components)]
    if _count(_JPEG_SOS, data, _JPEG_MAX_SCANS) > _JPEG_MAX_SCANS:
        raise _Refused(f"is a JPEG of more than {_JPEG_MAX_SCANS} scans, each a pass over the whole image; "
                       f"artforge decodes at most {_JPEG_MAX_SCANS}")
    # No scan header in sight (a truncated file, scan_components 0) counts as several scans.
    multi_scan = marker in _JPEG_PROGRESSIVE or scan_components < components
    coefficients = 0
    if multi_scan:
        h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
        for h, v in sampling:  # jdcoefct.c: blocks padded to a multiple of the sampling factors
            wide, high = -(-width * h // (8 * h_max)), -(-height * v // (8 * v_max))
            coefficients += -(-wide // h) * h * -(-high // v) * v * 128
    return ImageInfo("jpeg", width, height, orientation, channels=1 if components == 1 else 3,
                     codec_bytes=coefficients + 64 * width * components + _MiB,
                     codec_pixels=width * height if multi_scan else 0)


# PNG. OpenCV reads every chunk before the first IDAT (and, in an animated
# PNG, every chunk of its first frame) into a vector sized by the chunk's
# declared length before checking the data holds that much: a 60-byte PNG
# declaring a 2 GB tEXt chunk costs 2 GB. So each chunk must fit in the data.
# libpng inflates each zTXt/iTXt/iCCP chunk to up to 8 MB (its
# user_chunk_malloc_max) and keeps up to 1000 of them, so a 400 KB PNG of
# compressed text costs 400 MB: more than _PNG_MAX_COMPRESSED are refused.
_PNG_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}
# Any occurrence counts, so never fewer than the chunks; literals, because a regex alternation scans 15x slower.
_PNG_COMPRESSED = tuple(re.compile(kind) for kind in (b"zTXt", b"iTXt", b"iCCP"))
_PNG_MAX_COMPRESSED = 8
_PNG_INFLATED_CHUNK = 8_000_000


def _png(data: _Buffer) -> ImageInfo | None:
    length, kind = struct.unpack_from(">I4s", data, 8)
    width, height, depth, color, _, _, _ = struct.unpack_from(">IIBBBBB", data, 16)
    if (kind != b"IHDR" or length != 13 or not 0 < width < 1 << 31 or not 0 < height < 1 << 31
            or depth not in _PNG_DEPTHS.get(color, ())):
        return None
    orientation, transparent, animated, image_data, i, n = 1, False, False, False, 8, len(data)
    for _ in range(_MAX_CHUNKS):
        if i + 8 > n:
            break
        length, kind = struct.unpack_from(">I4s", data, i)
        if i + 12 + length > n:
            return None  # a chunk running past the data: truncated, or a lie OpenCV would allocate for
        if kind == b"IEND" or (kind == b"IDAT" and not animated):
            break
        if not image_data:  # ancillary chunks that matter come before the image data
            if kind == b"acTL":
                animated = struct.unpack_from(">I", data, i + 8)[0] > 1
            elif kind == b"tRNS":
                transparent = True
            elif kind == b"eXIf":
                orientation = _exif_orientation(data[i + 8:i + 8 + length])
        image_data = image_data or kind == b"IDAT"
        i += 12 + length
    else:
        raise _Refused(f"has more than {_MAX_CHUNKS} PNG chunks")
    compressed = sum(_count(kind, data, _PNG_MAX_COMPRESSED) for kind in _PNG_COMPRESSED)
    if compressed > _PNG_MAX_COMPRESSED:
        raise _Refused(f"has more than {_PNG_MAX_COMPRESSED} compressed PNG text or profile chunks, "
                       "each of which libpng may inflate to 8 MB")
    channels = 4 if color in (4, 6) or (color in (2, 3) and transparent) else 1 if color == 0 else 3
    sample_bytes = 2 if depth == 16 else 1
    decoded = width * height * channels * sample_bytes
    # Two libpng rows, OpenCV's row pointers and chunk copies; an animation
    # adds three more canvases (current, raw and next frame) and their rows.
    codec = 2 * 8 * width + 8 * height + n + compressed * _PNG_INFLATED_CHUNK + _MiB
    if animated:
        codec += 3 * decoded + 24 * height + n
    return ImageInfo("png", width, height, orientation, channels=channels, sample_bytes=sample_bytes,
                     codec_bytes=codec, codec_pixels=width * height)


def _webp(data: _Buffer) -> ImageInfo | None:
    # libwebp requires the bitstream (or VP8X) to be the first chunk and
    # refuses a bitstream whose size differs from the VP8X canvas.
    kind, length = struct.unpack_from("<4sI", data, 12)
    body, animated, alpha = 20, False, True
    if len(data) < body + 10:
        return None
    if kind == b"VP8X":
        animated, alpha = bool(data[body] & 0x02), bool(data[body] & 0x10)
        width = int.from_bytes(data[body + 4:body + 7], "little") + 1
        height = int.from_bytes(data[body + 7:body + 10], "little") + 1
    elif kind == b"VP8 ":
        if data[body] & 1 or data[body + 3:body + 6] != b"\x9d\x01\x2a":  # a key frame's start code
            return None
        width, height = (side & 0x3FFF for side in struct.unpack_from("<HH", data, body + 6))
        alpha = False
    elif kind == b"VP8L":
        (bits,) = struct.unpack_from("<I", data, body + 1)
        if data[body] != 0x2F or bits >> 29:  # signature, version 0
            return None
        width, height, alpha = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
    else:
        return None
    if width == 0 or height == 0:
        return None
    orientation, i = 1, body + length + (length & 1)
    # The EXIF chunk comes after the bitstream in extended WebP, so walk the
    # chunks (a bounded number: the walk only looks for the orientation).
    for _ in range(_MAX_CHUNKS):
        if i + 8 > len(data):
            break
        kind, length = struct.unpack_from("<4sI", data, i)
        if kind == b"EXIF":
            orientation = _exif_orientation(data[i + 8:i + 8 + length])
        i += 8 + length + (length & 1)
    # A still decode holds lossless ARGB (4 bytes a pixel) and an alpha plane
    # beside the output; an animation two RGBA canvases besides.
    per_pixel = 13 if animated else 5
    return ImageInfo("webp", width, height, orientation, channels=4 if alpha or animated else 3,
                     codec_bytes=per_pixel * width * height + 64 * width + _MiB, codec_pixels=width * height)


# TIFF. OpenCV decodes IFD0 (the first page) a tile or strip at a time into
# buffers sized by the tile (or RowsPerStrip) tags, not by the image: a 16x16
# TIFF declaring 16384x16368 tiles costs 1 GB. The tile area is charged like
# pixels, and libtiff's strip tables (16 bytes a strip) are bounded by
# requiring the offsets tag to list them all.
_TIFF_TYPES = {1: "B", 3: "H", 4: "I"}  # BYTE, SHORT, LONG
_TIFF_TAGS = {256, 257, 258, 259, 262, 273, 274, 277, 278, 284, 322, 323, 324}


def _tiff_values(data: _Buffer, order: str, kind: int, count: int, value: bytes) -> tuple[int, ...]:
    code = _TIFF_TYPES[kind]
    if count > 64:  # per-sample values at most: anything longer is not a header artforge reads
        raise ValueError(count)
    if struct.calcsize(code) * count <= 4:
        return struct.unpack_from(order + code * count, value)
    return struct.unpack_from(order + code * count, data, struct.unpack_from(order + "I", value)[0])


def _tiff(data: _Buffer) -> ImageInfo | None:
    order = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack_from(order + "I", data, 4)[0]
    entries: dict[int, tuple[int, int, bytes]] = {}
    for i in range(struct.unpack_from(order + "H", data, ifd)[0]):
        tag, kind, count, value = struct.unpack_from(order + "HHI4s", data, ifd + 2 + 12 * i)
        if tag in _TIFF_TAGS:
            if tag in entries or kind not in _TIFF_TYPES or count == 0:
                return None
            entries[tag] = (kind, count, value)

    def one(tag: int, default: int | None = None) -> int:
        if tag not in entries:
            if default is None:
                raise KeyError(tag)
            return default
        kind, count, value = entries[tag]
        if count != 1:
            raise ValueError(tag)
        return _tiff_values(data, order, kind, 1, value)[0]

    width, height = one(256), one(257)
    photometric = one(262, 2)
    gray = photometric in (0, 1)
    samples = one(277, 1 if gray else 3)
    bits = max(_tiff_values(data, order, *entries[258])) if 258 in entries else 1
    if width == 0 or height == 0 or not 1 <= samples <= 4 or not 1 <= bits <= 64:
        return None  # OpenCV reads 1-4 samples only
    tiled = 322 in entries or 323 in entries
    if tiled:
        tile_width, tile_height = one(322), one(323)
    else:
        tile_width, tile_height = width, one(278, 0xFFFFFFFF)
        if tile_height in (0, 0xFFFFFFFF):
            tile_height = height
    if tile_width == 0 or tile_height == 0:
        return None
    tiles = -(-height // min(tile_height, height)) * -(-width // tile_width) * (samples if one(284, 1) == 2 else 1)
    offsets = entries.get(324 if tiled else 273)
    if offsets is None or offsets[1] < tiles:
        return None  # libtiff refuses too few offsets; too many are bounded by the data
    kind, count, value = offsets
    if count * struct.calcsize(_TIFF_TYPES[kind]) > 4 and (
            struct.unpack_from(order + "I", value)[0] + count * struct.calcsize(_TIFF_TYPES[kind]) > len(data)):
        return None
    # The array OpenCV returns (grfmt_tiff.cpp readHeader): LogLuv is float
    # RGB; above 8 bits, odd layouts are read as 8-bit RGBA; palette is RGB.
    if photometric in (32844, 32845) and samples == 3:
        channels, sample_bytes = 3, 4
    else:
        depth = 8 if bits > 8 and (photometric > 2 or samples == 2) else bits
        sample_bytes = 1 if depth <= 8 else 2 if depth <= 16 else 4 if depth <= 32 else 8
        channels = samples if depth > 16 else 3 if photometric == 3 else 1 if gray else samples
    decoded = width * height * channels * sample_bytes
    # Per tile pixel: 8-bit output goes through libtiff's decoded tile and
    # OpenCV's RGBA tile; deeper output is decoded straight into OpenCV's tile
    # buffer (unpacked again from 10-14 bits). A JPEG-compressed tile may be
    # progressive, with its coefficient buffers.
    stored = samples * -(-bits // 8)
    tile = 4 + stored if sample_bytes == 1 else stored + (2 * samples if bits < 16 and sample_bytes == 2 else 0)
    if one(259, 1) in (6, 7):
        tile += 2 * samples
    tile_pixels = tile_width * tile_height
    # Plus the transpose OpenCV makes for orientations 5-8, libtiff's strip
    # tables, and its buffer of one strip's raw data.
    codec = (tile * tile_pixels + (decoded if one(274, 1) >= 5 else 0) + 16 * (tiles + height)
             + len(data) + _MiB)
    return ImageInfo("tiff", width, height, channels=channels, sample_bytes=sample_bytes, codec_bytes=codec,
                     codec_pixels=max(width * height, tile_pixels))


# GIF. OpenCV decodes the first frame only, onto a BGRA canvas of the logical
# screen (frames must lie inside it), with a byte per pixel of LZW output, a
# disposal copy, and an LZW table of at most 4096 prefix strings.
def _gif(data: _Buffer) -> ImageInfo | None:
    width, height = struct.unpack_from("<HH", data, 6)
    if data[:6] not in (b"GIF87a", b"GIF89a") or width == 0 or height == 0:
        return None
    return ImageInfo("gif", width, height, channels=4, codec_bytes=9 * width * height + 16 * _MiB,
                     codec_pixels=width * height)


def _bmp(data: _Buffer) -> ImageInfo | None:
    # OpenCV reads the OS/2 1.x header (12 bytes, 16-bit sizes) and any
    # header of 36 bytes or more (32-bit sizes; a negative height is top-down).
    (header,) = struct.unpack_from("<I", data, 14)
    if header == 12:
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
    elif 36 <= header < 1 << 31:
        width, height, _, bits = struct.unpack_from("<iiHH", data, 18)
    else:
        return None
    if width <= 0 or height == 0:
        return None
    return ImageInfo("bmp", width, abs(height), channels=4 if bits == 32 else 3,
                     codec_bytes=8 * width + _MiB, codec_pixels=width * abs(height))


# (magic, its offset, format): the signatures OpenCV dispatches these formats on.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"), (b"\x89PNG\r\n\x1a\n", 0, "png"), (b"RIFF", 0, "webp"),
    (b"II*\x00", 0, "tiff"), (b"MM\x00*", 0, "tiff"), (b"GIF8", 0, "gif"), (b"BM", 0, "bmp"),
)
_PARSERS: dict[str, Callable[[_Buffer], ImageInfo | None]] = {
    "jpeg": _jpeg, "png": _png, "webp": _webp, "tiff": _tiff, "gif": _gif, "bmp": _bmp}
# Formats OpenCV would also sniff, named in the refusal so that it says what the bytes were.
_REFUSED_SIGNATURES = (
    (re.compile(rb"\x00\x00\x00\x0cjP  \r\n\x87\n|\xff\x4f\xff\x51"), "JPEG 2000"),
    (re.compile(rb"#\?(RADIANCE|RGBE)"), "Radiance HDR"),
    (re.compile(rb"P[1-7]\s"), "PNM / PAM"),
    (re.compile(rb"P[Ff]\s"), "PFM"),
    (re.compile(rb"v/1\x01"), "OpenEXR"),
    (re.compile(rb"\x59\xa6\x6a\x95"), "Sun raster"),
    (re.compile(rb"....ftyp(avi[fs]|hei[cfsx]|mif1|msf1)", re.DOTALL), "AVIF / HEIF"),
    (re.compile(rb"\xff\x0a|\x00\x00\x00\x0cJXL \r\n\x87\n"), "JPEG XL"),
    (re.compile(rb"II\+\x00|MM\x00\+"), "BigTIFF"),
    (re.compile(rb"qoif"), "QOI"),
)


def _as_view(data: bytes | bytearray | memoryview | np.ndarray) -> _Buffer:
    # The parsers only index, slice, struct-unpack and regex-search, which a
    # memoryview does without copying the (possibly large) buffer.
    if isinstance(data, np.ndarray):
        data = data.data
    return data if isinstance(data, bytes) else memoryview(data).cast("B")


def _parse(view: _Buffer) -> tuple[str | None, ImageInfo | None]:
    """(accepted format name or None, its header or None when truncated or malformed); may raise _Refused."""
    for magic, offset, fmt in _SIGNATURES:
        if view[offset:offset + len(magic)] == magic and (fmt != "webp" or view[8:12] == b"WEBP"):
            try:
                return _FORMAT_NAMES[fmt], _PARSERS[fmt](view)
            except (struct.error, KeyError, IndexError, ValueError):
                return _FORMAT_NAMES[fmt], None
    return None, None


def probe_image(data: bytes | bytearray | memoryview | np.ndarray) -> ImageInfo | None:
    """Format, size, EXIF orientation and decode cost from the header alone.

    None when the bytes are not an accepted format, or their header is
    truncated, malformed or asks for what decode_image refuses.
    """
    try:
        return _parse(_as_view(data))[1]
    except _Refused:
        return None


def _read_header(data: bytes | bytearray | memoryview | np.ndarray, source: str) -> ImageInfo:
    """probe_image, or the InvalidInputError saying why not."""
    view = _as_view(data)
    try:
        name, info = _parse(view)
    except _Refused as refused:
        raise InvalidInputError(f"{source} could not be decoded: it {refused}") from None
    if info is not None:
        return info
    if name is not None:
        raise InvalidInputError(f"{source} could not be decoded: its {name} header is truncated or malformed "
                                f"(accepted formats: {SUPPORTED_FORMATS})")
    what = next((what for pattern, what in _REFUSED_SIGNATURES if pattern.match(view)), "it")
    raise InvalidInputError(f"{source} could not be decoded: {what} is not an accepted image format "
                            f"({SUPPORTED_FORMATS})")


def decode_cost_bytes(info: ImageInfo, *, short_side: int | None = None, long_side: int | None = None) -> int:
    """Peak bytes that decode_image of an image with this header allocates: a documented upper bound.

    The decoded array, the codec's working memory beside it (ImageInfo), then
    the 8-bit, oriented and RGB(A) copies decode_image makes, two at a time.
    Pass the same size hints as to decode_image (they shrink a JPEG decode).
    Per decoded pixel: 6-16 bytes for stills in JPEG, PNG, WebP, GIF and BMP,
    up to 32 for animations and 24-32 for 8- and 16-bit TIFF, 104 for a
    64-bit float RGBA TIFF; plus 5 MiB and, for PNG and TIFF, the encoded
    size (the table is in docs/serving.md).
    """
    reduce = _reduction(info, short_side, long_side)
    pixels = -(-info.width // reduce) * -(-info.height // reduce)
    decoded = pixels * info.channels * info.sample_bytes
    rgb = pixels * max(info.channels, 3)
    # cv2.imdecode holds the decoded image twice (decoder's Mat, returned
    # array) after the codec has let go of its buffers; 4 MiB is for what does
    # not grow with the image (OpenCV's and the codecs' own state).
    return max(decoded + info.codec_bytes, 2 * decoded, decoded + rgb, 2 * rgb) + 4 * _MiB


# -- decoding -----------------------------------------------------------------

_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: cv2.transpose,
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.flip(cv2.transpose(a), -1),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def _check_pixels(width: int, height: int, max_pixels: int | None, source: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ResourceExhaustedError(
            f"{source} is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the limit of "
            f"{max_pixels / 1e6:.1f} megapixels; downscale it or raise max_pixels")


def _check_size(info: ImageInfo, reduce: int, max_pixels: int | None, source: str) -> None:
    """The pixel limit, charged for the decoded size and for what the codec buffers at full size."""
    _check_pixels(-(-info.width // reduce), -(-info.height // reduce), max_pixels, source)
    if max_pixels is None or info.codec_pixels <= max_pixels:
        return
    limit = f"over the limit of {max_pixels / 1e6:.1f} megapixels"
    if info.codec_pixels == info.width * info.height:
        raise ResourceExhaustedError(
            f"{source} is {info.width}x{info.height} ({info.codec_pixels / 1e6:.1f} megapixels), {limit} (a "
            f"progressive or multi-scan JPEG is buffered at full size even when decoded at reduced scale); "
            f"downscale it or raise max_pixels")
    raise ResourceExhaustedError(
        f"{source} is {info.width}x{info.height} but its {_FORMAT_NAMES[info.format]} tiles or strips hold "
        f"{info.codec_pixels / 1e6:.1f} megapixels, {limit}; store it in smaller tiles or raise max_pixels")


def _to_uint8(image: np.ndarray, source: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return cv2.convertScaleAbs(image, alpha=255 / 65535)  # rounds and saturates
    if image.dtype in (np.float32, np.float64):  # float TIFF: assume 0..1
        return cv2.convertScaleAbs(image, alpha=255)
    raise InvalidInputError(f"{source} has {image.dtype.name} pixels; use 8- or 16-bit images")


def _reduction(info: ImageInfo, short_side: int | None, long_side: int | None) -> int:
    """The largest JPEG codec reduction (8, 4, 2) keeping the image at least as large as the caller's target."""
    if info.format != "jpeg":
        return 1
    short, long = sorted((info.width, info.height))
    for factor in (8, 4, 2):
        if ((short_side is not None and -(-short // factor) >= short_side)
                or (long_side is not None and -(-long // factor) >= long_side)):
            return factor
    return 1


def decode_image(data: bytes | bytearray | memoryview | np.ndarray, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 short_side: int | None = None, long_side: int | None = None,
                 source: str = "image bytes") -> np.ndarray:
    """Decode encoded image bytes to RGB (HxWx3) or RGBA (HxWx4) uint8.

    Only ACCEPTED_FORMATS are decoded, and only after their header is read:
    anything else, a truncated header, or an image whose size or codec
    buffers exceed max_pixels is refused before OpenCV sees the bytes.
    EXIF orientation is applied, grayscale becomes RGB, 16-bit becomes 8-bit,
    alpha is kept. short_side / long_side tell the decoder the size the caller
    will shrink the image to (its shorter / longer side): a JPEG is then
    decoded at 1/2, 1/4 or 1/8 scale by the codec itself, never below that
    size, which is several times faster for photos. Other formats ignore them.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)  # a view, not a copy
    if buffer.size == 0:
        raise InvalidInputError(f"no data in {source}; use a {SUPPORTED_FORMATS} image")
    info = _read_header(data, source)
    reduce = _reduction(info, short_side, long_side)
    _check_size(info, reduce, max_pixels, source)
    # JPEG has neither alpha nor 16-bit, so the reduced colour-only flags lose nothing.
    flags = _REDUCED[reduce] | cv2.IMREAD_IGNORE_ORIENTATION if reduce > 1 else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error:  # OpenCV's own size limit and some codec failures raise
        image = None
    if image is None or image.size == 0:
        raise InvalidInputError(f"{source} could not be decoded (empty, truncated or not an image); "
                                f"supported formats: {SUPPORTED_FORMATS}")
    # The size charged must be the size decoded (libtiff may transpose for its orientation tag).
    declared = (-(-info.height // reduce), -(-info.width // reduce))
    if image.shape[:2] != declared and not (info.format == "tiff" and image.shape[:2] == declared[::-1]):
        raise InvalidInputError(f"{source} decoded to {image.shape[1]}x{image.shape[0]} pixels, not the "
                                f"{declared[1]}x{declared[0]} its header declares")
    image = _to_uint8(image, source)
    if info.orientation in _ORIENT:
        image = _ORIENT[info.orientation](image)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               short_side: int | None = None, long_side: int | None = None) -> np.ndarray:
    """Read and decode an image file (see decode_image)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"image file {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{path} is a folder, not an image file") from None
    return decode_image(data, max_pixels=max_pixels, short_side=short_side, long_side=long_side,
                        source=f"image file {path}")


def as_rgb8(image: np.ndarray, source: str = "image array") -> np.ndarray:
    """An in-memory image as RGB or RGBA uint8 (grayscale expanded, 16-bit scaled); no copy when already so."""
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"{source} must be a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)) or image.size == 0:
        raise InvalidInputError(f"{source} has shape {image.shape}; use HxW (grayscale), HxWx3 (RGB) or HxWx4 (RGBA)")
    if image.dtype not in (np.uint8, np.uint16):
        raise InvalidInputError(f"{source} has dtype {image.dtype.name}; use uint8 or uint16")
    image = _to_uint8(image, source)
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image


def load_image(image: ImageLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               short_side: int | None = None, long_side: int | None = None, source: str | None = None) -> np.ndarray:
    """Any accepted image argument (array, encoded bytes, file path) as RGB or RGBA uint8.

    Arrays are returned as they are when already RGB(A) uint8; the size hints
    only speed up JPEG decoding (see decode_image). `source` names an array
    or bytes in errors (e.g. the request field they came from); a file is
    always named by its path.
    """
    if isinstance(image, np.ndarray):
        image = as_rgb8(image, source or "image array")
        _check_pixels(image.shape[1], image.shape[0], max_pixels, source or "image array")
        return image
    hints = {"max_pixels": max_pixels, "short_side": short_side, "long_side": long_side}
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(image, **hints, source=source or "image bytes")
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, **hints)
    raise InvalidInputError(f"an image must be a numpy array, encoded bytes or a file path, not {type(image).__name__}")


# -- encoding -----------------------------------------------------------------

def flatten_alpha(rgba: np.ndarray, background: int = 255) -> np.ndarray:
    """Composite RGBA over a plain background (white by default) and return RGB."""
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    rgb = rgba[:, :, :3].astype(np.uint16) * alpha + background * (255 - alpha)
    # (x + 127) // 255 is round-to-nearest division for these 16-bit sums.
    return ((rgb + 127) // 255).astype(np.uint8)


def encode_image(image: np.ndarray, fmt: str = "png", quality: int | None = None) -> bytes:
    """Encode RGB/RGBA (or grayscale, or 16-bit) pixels as png, jpeg or webp bytes.

    quality (1-100) applies to jpeg and webp (default artforge.defaults.QUALITY,
    >100 is lossless webp); PNG is always lossless. JPEG has no alpha, so RGBA is
    composited over white.
    """
    ext = ENCODE_FORMATS.get(str(fmt).lower().lstrip("."))
    if ext is None:
        raise InvalidInputError(f"cannot encode format {fmt!r}; use one of png, jpeg, webp")
    if quality is not None and (not isinstance(quality, int) or not 1 <= quality <= 101):
        raise InvalidInputError(f"quality must be an integer from 1 to 100 (101 = lossless webp), got {quality!r}")
    image = as_rgb8(image)
    if image.shape[2] == 4 and ext == ".jpg":
        image = flatten_alpha(image)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    params: list[int] = []
    if ext == ".jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, quality or defaults.QUALITY]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality or defaults.QUALITY]
    ok, encoded = cv2.imencode(ext, bgr, params)
    if not ok:
        raise InvalidInputError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return encoded.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray, quality: int | None = None) -> Path:
    """Encode by the file extension (.png, .jpg/.jpeg, .webp) and write atomically; returns the path."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ENCODE_FORMATS:
        raise InvalidInputError(f"cannot write {path}: the extension must be one of .png, .jpg, .jpeg, .webp")
    write_bytes_atomic(path, encode_image(image, fmt, quality))
    return path
