"""Decoding, header probing, EXIF orientation, limits and atomic writes of runtime.imageio."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from image_samples import encode_cv, encode_pil, jpeg_header, pattern, png_chunk, png_ihdr, tiff_file, variants
from PIL import Image, ImageOps

from artforge.batch.plan import IMAGE_SUFFIXES
from artforge.errors import InvalidInputError, NotFoundError, ResourceExhaustedError
from artforge.runtime import decode_image, encode_image, load_image, probe_image, read_image, write_image
from artforge.runtime.imageio import ACCEPTED_FORMATS, decode_cost_bytes


def pil_upright(data: bytes) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))


# -- decoding ------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".png", ".webp", ".bmp", ".tiff"])
def test_lossless_round_trip_is_exact_rgb(ext: str) -> None:
    rgb = pattern()
    params = (cv2.IMWRITE_WEBP_QUALITY, 101) if ext == ".webp" else ()
    decoded = decode_image(encode_cv(rgb, ext, params))
    assert decoded.dtype == np.uint8 and decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, rgb)


def test_jpeg_decodes_as_rgb_not_bgr() -> None:
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    decoded = decode_image(encode_cv(red, ".jpg"))
    assert decoded[..., 0].min() > 240 and decoded[..., 2].max() < 15


def test_rgba_keeps_alpha() -> None:
    rgba = pattern(channels=4)
    np.testing.assert_array_equal(decode_image(encode_cv(rgba, ".png")), rgba)


def test_grayscale_becomes_rgb() -> None:
    gray = pattern(channels=1)[..., 0]
    decoded = decode_image(encode_cv(gray, ".png"))
    assert decoded.shape == (*gray.shape, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], gray)


def test_sixteen_bit_png_scales_to_eight_bit() -> None:
    deep = np.random.default_rng(1).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    deep[0, 0] = (0, 257, 65535)
    decoded = decode_image(encode_cv(deep, ".png"))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, np.rint(deep / 257).astype(np.uint8))
    assert tuple(decoded[0, 0]) == (0, 1, 255)
    gray16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    np.testing.assert_array_equal(decode_image(encode_cv(gray16, ".png"))[..., 1], np.rint(gray16 / 257))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_png_matches_pillow(orientation: int) -> None:
    data = encode_pil(pattern(), "PNG", orientation)
    np.testing.assert_array_equal(decode_image(data), pil_upright(data))


def test_exif_orientation_jpeg_and_webp() -> None:
    # Blocks of flat colour survive JPEG well enough to compare against Pillow.
    blocks = np.kron(pattern(2, 4, seed=3), np.ones((8, 8, 1), np.uint8))
    for orientation in (3, 6, 8):
        data = encode_pil(blocks, "JPEG", orientation, quality=95)
        decoded = decode_image(data)
        assert decoded.shape == pil_upright(data).shape
        assert np.abs(decoded.astype(int) - pil_upright(data)).mean() < 3
    webp = encode_pil(pattern(), "WEBP", 6, lossless=True)
    np.testing.assert_array_equal(decode_image(webp), pil_upright(webp))


def test_orientation_also_applies_to_alpha_and_reduced_jpeg() -> None:
    rgba = pattern(channels=4)
    data = encode_pil(rgba, "PNG", 6)
    np.testing.assert_array_equal(decode_image(data), cv2.rotate(rgba, cv2.ROTATE_90_CLOCKWISE))
    big = np.kron(pattern(4, 8, seed=4), np.ones((16, 16, 1), np.uint8))  # 64 x 128
    reduced = decode_image(encode_pil(big, "JPEG", 6, quality=95), long_side=32)
    assert reduced.shape == (32, 16, 3)


def test_size_hints_reduce_jpeg_only_and_never_below_target() -> None:
    jpeg, png = encode_cv(pattern(48, 64), ".jpg"), encode_cv(pattern(48, 64), ".png")
    assert decode_image(jpeg).shape == (48, 64, 3)
    assert decode_image(jpeg, short_side=24).shape == (24, 32, 3)
    assert decode_image(jpeg, short_side=23).shape == (24, 32, 3)  # 1/4 would give 12 < 23
    assert decode_image(jpeg, short_side=5).shape == (6, 8, 3)  # 1/8 is the codec's limit
    assert decode_image(jpeg, long_side=17).shape == (24, 32, 3)
    assert decode_image(jpeg, long_side=100).shape == (48, 64, 3)
    assert decode_image(png, short_side=6).shape == (48, 64, 3)


def test_tiff_orientation_is_left_to_libtiff() -> None:
    data = encode_pil(pattern(), "TIFF", 6)
    np.testing.assert_array_equal(decode_image(data), pil_upright(data))


@pytest.mark.parametrize("data", [b"", b"definitely not an image", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"])
def test_garbage_and_empty_bytes_are_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInputError, match="image bytes.*PNG"):
        decode_image(data)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_truncated_bytes_are_invalid_input(ext: str) -> None:
    data = encode_cv(pattern(32, 32), ext)
    for cut in (len(data) // 2, len(data) - 2):
        with pytest.raises(InvalidInputError, match="truncated"):
            decode_image(data[:cut])


HUGE_HEADERS = {
    "png": png_ihdr(100_000, 100_000),
    "jpeg": b"\xff\xd8" + b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 60_000, 60_000, 3) + bytes(9) + b"\xff\xd9",
    "gif": b"GIF89a" + struct.pack("<HH", 65_535, 65_535) + bytes(8),
    "webp": b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8X" + struct.pack("<I", 10) + bytes(4)
            + (20_000 - 1).to_bytes(3, "little") + (20_000 - 1).to_bytes(3, "little"),
}


@pytest.mark.parametrize("fmt", HUGE_HEADERS)
def test_huge_declared_size_is_refused_before_decoding(fmt: str) -> None:
    # These are headers only: a decode would fail as invalid, so the resource
    # error proves the size was checked first.
    data = HUGE_HEADERS[fmt]
    info = probe_image(data)
    assert info is not None and info.format == fmt and info.width * info.height > 300e6
    with pytest.raises(ResourceExhaustedError, match="megapixels"):
        decode_image(data)


def test_max_pixels_is_configurable() -> None:
    data = encode_cv(pattern(20, 20), ".png")
    with pytest.raises(ResourceExhaustedError, match="20x20"):
        decode_image(data, max_pixels=399)
    assert decode_image(data, max_pixels=400).shape == (20, 20, 3)
    assert decode_image(data, max_pixels=None).shape == (20, 20, 3)
    with pytest.raises(ResourceExhaustedError):
        load_image(pattern(20, 20), max_pixels=100)


def test_probe_reports_size_of_each_format() -> None:
    rgb = pattern(9, 13)
    samples = {
        "png": encode_cv(rgb, ".png"), "jpeg": encode_cv(rgb, ".jpg"), "bmp": encode_cv(rgb, ".bmp"),
        "tiff": encode_cv(rgb, ".tiff"), "gif": encode_pil(rgb, "GIF"),
        "webp": encode_cv(rgb, ".webp", (cv2.IMWRITE_WEBP_QUALITY, 80)),
    }
    samples["webp-lossless"] = encode_cv(rgb, ".webp", (cv2.IMWRITE_WEBP_QUALITY, 101))
    samples["webp-extended"] = encode_pil(rgb, "WEBP", orientation=3)
    for name, data in samples.items():
        info = probe_image(data)
        assert info is not None, name
        assert (info.format, info.width, info.height) == (name.split("-")[0], 13, 9), name
    assert probe_image(samples["webp-extended"]).orientation == 3
    assert probe_image(b"nonsense") is None


# -- accepted formats: every variant's header gives its size --------------------------

VARIANTS = variants(37, 53)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_of_the_accepted_formats_reports_its_size_and_decodes(name: str) -> None:
    info = probe_image(VARIANTS[name])
    assert info is not None and (info.format, info.width, info.height) == (name.split("-")[0], 53, 37)
    assert decode_image(VARIANTS[name]).shape[:2] == ((53, 37) if info.orientation >= 5 else (37, 53))


@pytest.mark.parametrize(("fmt", "options"), [("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {})])
def test_animations_decode_their_first_frame_only(fmt: str, options: dict) -> None:
    red, blue = np.zeros((20, 30, 3), np.uint8), np.zeros((20, 30, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    data = encode_pil(red, fmt, frames=(blue, blue), **options)
    assert probe_image(data).codec_bytes > 2 * 20 * 30 * 4  # the canvases OpenCV keeps for an animation
    np.testing.assert_array_equal(decode_image(data)[..., :3], red)


def test_tiff_byte_orders_strips_and_tiles_decode_exactly() -> None:
    rgb = pattern(37, 53)
    for data in (tiff_file(rgb), tiff_file(rgb, order=">", rows_per_strip=5), tiff_file(rgb, tile=(32, 32))):
        np.testing.assert_array_equal(decode_image(data), rgb)


def test_only_the_first_tiff_page_is_read_and_charged() -> None:
    first, second = pattern(8, 12), pattern(8, 12, seed=1)
    huge = {256: (4, [60_000]), 257: (4, [60_000]), 278: (4, [0xFFFFFFFF])}
    np.testing.assert_array_equal(decode_image(tiff_file(first, second, tags=({}, huge))), first)
    with pytest.raises(ResourceExhaustedError, match="60000x60000"):
        decode_image(tiff_file(first, second, tags=(huge, {})))


def test_tiff_tiles_larger_than_the_image_are_charged_like_pixels() -> None:
    data = tiff_file(pattern(16, 16), tile=(16, 16), tags=({322: (4, [4096]), 323: (4, [4096])},))
    assert probe_image(data).codec_pixels == 4096 * 4096
    with pytest.raises(ResourceExhaustedError, match="16x16 but its TIFF tiles or strips hold 16.8 megapixels"):
        decode_image(data, max_pixels=4096 * 4096 - 1)
    with pytest.raises(InvalidInputError, match="TIFF header is truncated or malformed"):  # too few strip offsets
        decode_image(tiff_file(pattern(16, 16), rows_per_strip=16, tags=({278: (4, [1])},)))


@pytest.mark.parametrize(("marker", "scan_components"), [(0xC2, 3), (0xCA, 3), (0xC0, 1), (0xC1, 2)])
def test_multi_scan_jpegs_are_charged_at_full_size_even_when_reduced(marker: int, scan_components: int) -> None:
    # Progressive (Huffman or arithmetic), or sequential with a first scan
    # lacking components: libjpeg keeps full-size coefficient buffers.
    data = jpeg_header(marker, 3, scan_components)
    assert probe_image(data).codec_pixels == 30_000 ** 2
    assert decode_cost_bytes(probe_image(data), short_side=224) > 30_000 ** 2 * 6
    with pytest.raises(ResourceExhaustedError, match="30000x30000.*progressive or multi-scan JPEG"):
        decode_image(data, short_side=224)


def test_single_scan_jpegs_keep_the_reduced_size_check() -> None:
    data = jpeg_header(0xC0, 3, 3)
    assert probe_image(data).codec_pixels == 0
    assert decode_cost_bytes(probe_image(data), short_side=224) < 3750 ** 2 * 8
    with pytest.raises(InvalidInputError, match="could not be decoded"):  # 1/8 scale fits; there is no data
        decode_image(data, short_side=224)
    with pytest.raises(ResourceExhaustedError, match="30000x30000"):
        decode_image(data)


def test_a_real_progressive_jpeg_claiming_30000_squared_is_refused() -> None:
    data = bytearray(encode_cv(pattern(16, 16), ".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)))
    frame = data.index(b"\xff\xc2")
    data[frame + 5:frame + 9] = struct.pack(">HH", 30_000, 30_000)
    assert len(data) < 1000
    with pytest.raises(ResourceExhaustedError, match="30000x30000"):
        decode_image(bytes(data), short_side=224)  # what Classify asks for


@pytest.mark.parametrize(("data", "message"), [
    (jpeg_header(0xC3, 3, 3, side=64), "lossless or hierarchical JPEG"),
    (jpeg_header(0xC5, 3, 3, side=64), "lossless or hierarchical JPEG"),
    (jpeg_header(0xC1, 3, 3, side=64, precision=12), "12-bit JPEG"),
    (jpeg_header(0xC2, 3, 3, side=64)[:-2] + b"\xff\xda" * 100 + b"\xff\xd9", "more than 100 scans"),
])
def test_jpeg_frames_not_reasoned_about_are_refused(data: bytes, message: str) -> None:
    assert probe_image(data) is None
    with pytest.raises(InvalidInputError, match=message):
        decode_image(data, max_pixels=None)


def refused_samples() -> dict[str, bytes]:
    """Formats OpenCV's imdecode sniffs and decodes but artforge does not, by the name the refusal gives."""
    flat = np.full((64, 64, 3), 90, np.uint8)
    return {
        "JPEG 2000": encode_cv(flat, ".jp2"),
        "Radiance HDR": encode_cv(flat.astype(np.float32) / 255, ".hdr"),
        "PNM / PAM": encode_cv(flat, ".ppm"),
        "PFM": encode_cv(flat.astype(np.float32) / 255, ".pfm"),
        "Sun raster": encode_cv(flat, ".ras"),
        "AVIF / HEIF": encode_cv(flat, ".avif"),
        "OpenEXR": b"v/1\x01" + bytes(60),
        "JPEG XL": b"\xff\x0a" + bytes(60),
        "BigTIFF": b"II+\x00\x08\x00\x00\x00" + bytes(60),
        "QOI": b"qoif" + struct.pack(">II", 64, 64) + bytes(60),
    }


@pytest.mark.parametrize("name", refused_samples())
def test_formats_opencv_would_sniff_are_refused_by_name_before_decoding(name: str) -> None:
    data = refused_samples()[name]
    assert probe_image(data) is None
    with pytest.raises(InvalidInputError, match=f"image bytes could not be decoded: {name} is not an accepted image "
                                                f"format \\(JPEG, PNG, WebP, BMP, GIF, TIFF\\)"):
        decode_image(data, max_pixels=None)


def test_refused_formats_are_real_images_to_opencv() -> None:
    # The refusal is a policy, not a failure to read: OpenCV would decode these.
    for name in ("JPEG 2000", "Radiance HDR", "PNM / PAM", "PFM", "Sun raster", "AVIF / HEIF"):
        assert cv2.imdecode(np.frombuffer(refused_samples()[name], np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (
            64, 64), name


def test_png_chunks_must_fit_in_the_data() -> None:
    # OpenCV sizes a vector by a chunk's declared length before reading it.
    lie = png_ihdr(1, 1) + png_chunk(b"tEXt", b"a\x00b", length=0x7FF0_0000)
    assert probe_image(lie) is None
    with pytest.raises(InvalidInputError, match="its PNG header is truncated or malformed"):
        decode_image(lie)


def test_png_compressed_text_chunks_are_bounded() -> None:
    # libpng inflates each to up to 8 MB and keeps up to 1000 of them.
    png = encode_cv(pattern(4, 4), ".png")
    texts = [png_chunk(b"zTXt", b"k%d\x00\x00" % i + zlib.compress(b"a" * 7_900_000, 9)) for i in range(9)]
    assert decode_image(png[:33] + b"".join(texts[:8]) + png[33:]).shape == (4, 4, 3)
    with pytest.raises(InvalidInputError, match="more than 8 compressed PNG text"):
        decode_image(png[:33] + b"".join(texts) + png[33:])


def test_decode_cost_counts_depth_alpha_animation_and_scale() -> None:
    rgb8 = probe_image(encode_cv(pattern(100, 200), ".png"))
    deep = probe_image(encode_cv(np.zeros((100, 200, 4), np.uint16), ".png"))
    assert deep.channels * deep.sample_bytes == 8 and decode_cost_bytes(deep) >= 200 * 100 * 12
    assert decode_cost_bytes(deep) > decode_cost_bytes(rgb8)
    still = probe_image(VARIANTS["webp-lossless"])
    assert decode_cost_bytes(probe_image(VARIANTS["webp-animated"])) > decode_cost_bytes(still)
    jpeg = probe_image(jpeg_header(0xC0, 3, 3, side=4000))
    assert decode_cost_bytes(jpeg, short_side=500) < decode_cost_bytes(jpeg) / 10


def test_batch_image_suffixes_are_the_accepted_formats() -> None:
    by_suffix = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp", ".bmp": "bmp", ".gif": "gif",
                 ".tif": "tiff", ".tiff": "tiff"}
    assert set(IMAGE_SUFFIXES) == set(by_suffix)
    assert set(by_suffix.values()) == set(ACCEPTED_FORMATS)


# -- files and in-memory arrays --------------------------------------------------

def test_read_image_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(InvalidInputError, match="folder"):
        read_image(tmp_path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 broken")
    with pytest.raises(InvalidInputError, match="broken.jpg"):
        read_image(broken)


def test_load_image_accepts_arrays_bytes_and_paths(tmp_path: Path) -> None:
    rgb = pattern()
    path = tmp_path / "a.png"
    path.write_bytes(encode_cv(rgb, ".png"))
    for image in (rgb, path.read_bytes(), bytearray(path.read_bytes()), str(path), path):
        np.testing.assert_array_equal(load_image(image), rgb)
    assert load_image(rgb) is rgb  # already RGB uint8: no copy
    assert load_image(rgb[..., 0]).shape == (6, 10, 3)
    assert load_image(rgb[..., :1]).shape == (6, 10, 3)
    assert load_image(rgb.astype(np.uint16) * 257).dtype == np.uint8
    for bad in (rgb.astype(np.float32), rgb[..., :2], np.zeros((0, 4, 3), np.uint8), [1, 2, 3]):
        with pytest.raises(InvalidInputError):
            load_image(bad)


# -- encoding ------------------------------------------------------------------

def test_encode_round_trips() -> None:
    rgb, rgba = pattern(), pattern(channels=4)
    np.testing.assert_array_equal(decode_image(encode_image(rgb)), rgb)
    np.testing.assert_array_equal(decode_image(encode_image(rgba, "png")), rgba)
    rgba[..., 3] |= 1  # lossless WebP may drop the colour of fully transparent pixels
    np.testing.assert_array_equal(decode_image(encode_image(rgba, "webp", quality=101)), rgba)
    smooth = np.full((16, 16, 3), (200, 40, 90), np.uint8)
    assert np.abs(decode_image(encode_image(smooth, "jpeg")).astype(int) - smooth).max() <= 3
    low, high = encode_image(pattern(64, 64), "jpg", quality=10), encode_image(pattern(64, 64), "jpg", quality=95)
    assert len(low) < len(high)


def test_encode_jpeg_composites_alpha_over_white() -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent black
    assert decode_image(encode_image(rgba, "jpeg")).min() >= 250


def test_encode_rejects_bad_options() -> None:
    with pytest.raises(InvalidInputError, match="png, jpeg, webp"):
        encode_image(pattern(), "gif")
    with pytest.raises(InvalidInputError, match="quality"):
        encode_image(pattern(), "jpeg", quality=0)


def test_write_image_is_atomic_and_ordinary(tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.webp"
    write_image(target, pattern(), quality=101)
    write_image(target, pattern(seed=2), quality=101)  # replaces
    np.testing.assert_array_equal(read_image(target), pattern(seed=2))
    assert os.listdir(target.parent) == ["result.webp"]  # no temporary files left behind
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(InvalidInputError, match=".png, .jpg"):
        write_image(tmp_path / "result.gif", pattern())
    assert not (tmp_path / "result.gif").exists()
