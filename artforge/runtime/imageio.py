"""Image decoding and encoding with OpenCV: RGB(A) uint8 in, RGB(A) uint8 out.

Decoding keeps alpha and 16-bit depth (IMREAD_UNCHANGED) but OpenCV then
ignores EXIF orientation (except in TIFF, where libtiff applies it), so the
orientation is read from the JPEG/PNG/WebP header here and applied
afterwards. The same cheap header walk gives the pixel size, so a
decompression bomb is refused before any pixel is decoded, and lets a JPEG be
decoded at reduced scale when the caller will shrink it anyway.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from artforge import defaults
from artforge.defaults import MAX_IMAGE_PIXELS as DEFAULT_MAX_PIXELS
from artforge.errors import InvalidInputError, NotFoundError, ResourceExhaustedError
from artforge.files import write_bytes_atomic

SUPPORTED_FORMATS = "JPEG, PNG, WebP, BMP, GIF, TIFF"
ENCODE_FORMATS = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "webp": ".webp"}

#: what an `image` argument may be
ImageLike = np.ndarray | bytes | bytearray | memoryview | str | os.PathLike


@dataclass(frozen=True)
class ImageInfo:
    """What an image header says: format, stored size and EXIF orientation (1-8)."""

    format: str
    width: int
    height: int
    orientation: int = 1


# -- header parsing -----------------------------------------------------------

_Buffer = bytes | memoryview


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


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: _Buffer) -> ImageInfo | None:
    # EXIF (APP1) always precedes the frame header, so one walk finds both.
    orientation, i, n = 1, 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack_from(">H", data, i + 2)
        if marker == 0xE1 and data[i + 4:i + 10] == b"Exif\x00\x00":
            orientation = _exif_orientation(data[i + 10:i + 2 + length])
        elif marker in _JPEG_SOF and i + 9 <= n:
            height, width = struct.unpack_from(">HH", data, i + 5)
            return ImageInfo("jpeg", width, height, orientation)
        elif marker in (0xD9, 0xDA):
            return None
        i += 2 + length
    return None


def _png(data: _Buffer) -> ImageInfo | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    orientation, i = 1, 8
    # eXIf must come before the image data; the walk skips chunk bodies.
    while i + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, i)
        if kind == b"eXIf":
            orientation = _exif_orientation(data[i + 8:i + 8 + length])
            break
        if kind in (b"IDAT", b"IEND"):
            break
        i += 12 + length
    return ImageInfo("png", width, height, orientation)


def _webp(data: _Buffer) -> ImageInfo | None:
    size, orientation, i = None, 1, 12
    # The EXIF chunk comes after the bitstream in extended WebP, so walk them all.
    while i + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, i)
        body = i + 8
        if kind == b"VP8X" and body + 10 <= len(data):
            w = int.from_bytes(data[body + 4:body + 7], "little") + 1
            h = int.from_bytes(data[body + 7:body + 10], "little") + 1
            size = (w, h)
        elif kind == b"VP8 " and size is None and body + 10 <= len(data):
            w, h = struct.unpack_from("<HH", data, body + 6)
            size = (w & 0x3FFF, h & 0x3FFF)
        elif kind == b"VP8L" and size is None and body + 5 <= len(data):
            (bits,) = struct.unpack_from("<I", data, body + 1)
            size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        elif kind == b"EXIF":
            orientation = _exif_orientation(data[body:body + length])
        i = body + length + (length & 1)
    return ImageInfo("webp", *size, orientation) if size else None


def _tiff(data: _Buffer) -> ImageInfo | None:
    order = "<" if bytes(data[:2]) == b"II" else ">"
    ifd = struct.unpack_from(order + "I", data, 4)[0]
    dims: dict[int, int] = {}
    for i in range(struct.unpack_from(order + "H", data, ifd)[0]):
        tag, kind, _, value = struct.unpack_from(order + "HHI4s", data, ifd + 2 + 12 * i)
        if tag in (256, 257):
            dims[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), value)[0]
    # libtiff applies the orientation tag itself, so it is not reported here.
    return ImageInfo("tiff", dims[256], dims[257]) if len(dims) == 2 else None


def _gif(data: _Buffer) -> ImageInfo | None:
    return ImageInfo("gif", *struct.unpack_from("<HH", data, 6))


def _bmp(data: _Buffer) -> ImageInfo | None:
    if struct.unpack_from("<I", data, 14)[0] < 40:  # old OS/2 header: leave it to OpenCV
        return None
    width, height = struct.unpack_from("<ii", data, 18)
    return ImageInfo("bmp", abs(width), abs(height))


_SIGNATURES: tuple[tuple[bytes, int, Callable[[_Buffer], ImageInfo | None]], ...] = (
    (b"\xff\xd8", 0, _jpeg), (b"\x89PNG\r\n\x1a\n", 0, _png), (b"WEBP", 8, _webp),
    (b"II*\x00", 0, _tiff), (b"MM\x00*", 0, _tiff), (b"GIF8", 0, _gif), (b"BM", 0, _bmp),
)


def probe_image(data: bytes | bytearray | memoryview | np.ndarray) -> ImageInfo | None:
    """Format, size and EXIF orientation from the header alone; None when unknown."""
    # The parsers only index, slice and struct-unpack, which a memoryview
    # does without copying the (possibly large) buffer.
    if isinstance(data, np.ndarray):
        data = data.data
    view = data if isinstance(data, bytes) else memoryview(data).cast("B")
    for magic, offset, parse in _SIGNATURES:
        if view[offset:offset + len(magic)] == magic:
            try:
                return parse(view)
            except (struct.error, KeyError, IndexError, ValueError):
                return None
    return None


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


def _to_uint8(image: np.ndarray, source: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return cv2.convertScaleAbs(image, alpha=255 / 65535)  # rounds and saturates
    if image.dtype in (np.float32, np.float64):  # HDR / float TIFF: assume 0..1
        return cv2.convertScaleAbs(image, alpha=255)
    raise InvalidInputError(f"{source} has {image.dtype.name} pixels; use 8- or 16-bit images")


def _jpeg_reduction(info: ImageInfo, short_side: int | None, long_side: int | None) -> int:
    """The largest codec reduction (8, 4, 2) keeping the image at least as large as the caller's target."""
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

    EXIF orientation is applied, grayscale becomes RGB, 16-bit becomes 8-bit,
    alpha is kept. short_side / long_side tell the decoder the size the caller
    will shrink the image to (its shorter / longer side): a JPEG is then
    decoded at 1/2, 1/4 or 1/8 scale by the codec itself, never below that
    size, which is several times faster for photos. Other formats ignore them.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)  # a view, not a copy
    if buffer.size == 0:
        raise InvalidInputError(f"no data in {source}; use a {SUPPORTED_FORMATS} image")
    info = probe_image(data)
    flags = cv2.IMREAD_UNCHANGED
    if info is not None:
        reduce = _jpeg_reduction(info, short_side, long_side) if info.format == "jpeg" else 1
        if reduce > 1:
            # JPEG has neither alpha nor 16-bit, so the colour-only flags lose nothing.
            flags = _REDUCED[reduce] | cv2.IMREAD_IGNORE_ORIENTATION
        _check_pixels(-(-info.width // reduce), -(-info.height // reduce), max_pixels, source)
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error:  # OpenCV's own size limit and some codec failures raise
        image = None
    if image is None or image.size == 0:
        raise InvalidInputError(f"{source} could not be decoded (empty, truncated or not an image); "
                                f"supported formats: {SUPPORTED_FORMATS}")
    if info is None:
        _check_pixels(image.shape[1], image.shape[0], max_pixels, source)
    image = _to_uint8(image, source)
    if info is not None and info.orientation in _ORIENT:
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
