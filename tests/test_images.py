"""Tests for gemel/images.py: every input kind, one ImageError per kind of bad file, the pixel and byte caps."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gemel import images
from gemel.images import MAX_PIXELS, ImageError, image_key, load_image

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "images"


def png_bytes(size=(24, 16), mode="RGB", noise=False) -> bytes:
    if noise:
        arr = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        im = Image.fromarray(arr)
    else:
        im = Image.new(mode, size, 120)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def claim_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR patched to claim width x height pixels (valid CRC): a decompression bomb header."""
    assert png[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return png[:16] + ihdr + crc + png[33:]


@pytest.fixture
def png_file(tmp_path) -> Path:
    path = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(path)
    return path


# ---- good inputs ------------------------------------------------------------------------------------
def test_none_stays_none():
    assert load_image(None) is None
    assert image_key(None) is None


@pytest.mark.parametrize("kind", ["path", "str", "bytes", "bytearray", "pil"])
def test_every_input_kind_gives_the_same_rgb_pixels(png_file, kind):
    value = {"path": png_file, "str": str(png_file), "bytes": png_file.read_bytes(),
             "bytearray": bytearray(png_file.read_bytes()), "pil": Image.open(png_file)}[kind]
    im = load_image(value)
    assert im.mode == "RGB" and im.size == (40, 30)
    assert im.getpixel((5, 5)) == (200, 30, 30)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "1", "CMYK", "I;16"])
def test_any_mode_is_converted_to_rgb(mode):
    assert load_image(Image.new(mode, (5, 4))).mode == "RGB"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_common_formats_decode(fmt):
    buf = io.BytesIO()
    Image.new("RGB", (9, 7), (10, 200, 10)).save(buf, fmt)
    assert load_image(buf.getvalue()).size == (9, 7)


def test_a_real_photo_decodes():
    im = load_image(ASSETS / "coffee.jpg")
    assert im.mode == "RGB" and min(im.size) > 100


# ---- bad inputs -------------------------------------------------------------------------------------
def _truncated(name: str) -> bytes:
    data = (ASSETS / "coffee.jpg").read_bytes() if name == "jpeg" else png_bytes((64, 64), noise=True)
    return data[: len(data) // 2]


BAD_FILES = {
    "missing": (None, r"image file '.*missing\.png' does not exist"),
    "directory": (None, r"image path '.*directory' is not a file"),
    "empty": (b"", r"image file '.*empty' is empty"),
    "text": (b"hello, I am a caption, not a picture\n", r"'.*text' is not an image PIL can read"),
    "truncated_jpeg": (_truncated("jpeg"), r"'.*truncated_jpeg' is truncated or corrupt"),
    "truncated_png": (_truncated("png"), r"'.*truncated_png' is truncated or corrupt"),
    "png_header_only": (png_bytes()[:33], r"'.*png_header_only' is (truncated or corrupt|not an image PIL can)"),
    "huge_png": (claim_size(png_bytes(), 100_000, 100_000), r"'.*huge_png' is too large to decode safely"),
    "over_cap_png": (claim_size(png_bytes(), 8000, 8000),
                     r"'.*over_cap_png' is 8000 x 8000 pixels, over the cap of 40,000,000 pixels: resize it"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_files_raise_image_error_naming_the_file_and_problem(tmp_path, name):
    data, message = BAD_FILES[name]
    path = tmp_path / ("missing.png" if name == "missing" else name)
    if name == "directory":
        path.mkdir()
    elif data is not None:
        path.write_bytes(data)
    with pytest.raises(ImageError, match=message):
        load_image(path)


@pytest.mark.parametrize("name", ["text", "truncated_jpeg", "truncated_png", "huge_png", "over_cap_png"])
def test_bad_bytes_raise_image_error_too(name):
    data, message = BAD_FILES[name]
    with pytest.raises(ImageError, match=message.replace(f"'.*{name}'", "the uploaded image")):
        load_image(data)


def test_image_error_keeps_the_cause():
    with pytest.raises(ImageError) as info:
        load_image(_truncated("jpeg"))
    assert isinstance(info.value.__cause__, OSError)
    assert issubclass(ImageError, ValueError)


def test_huge_header_is_refused_without_decoding():
    bomb = claim_size(png_bytes(), 100_000, 100_000)  # 10^10 pixels: 30 GB if decoded
    t0 = time.perf_counter()
    with pytest.raises(ImageError):
        load_image(bomb)
    with pytest.raises(ImageError, match="5000 x 3000 pixels, over the cap of 1,000,000"):
        load_image(claim_size(png_bytes(), 5_000, 3_000), max_pixels=10**6)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("size,max_pixels,ok", [((100, 100), 10_000, True), ((101, 100), 10_000, False),
                                                 ((1, 10_001), 10_000, False)])
def test_max_pixels_is_the_limit_for_every_input_kind(size, max_pixels, ok):
    data = png_bytes(size)
    for value in (data, Image.open(io.BytesIO(data))):
        if ok:
            assert load_image(value, max_pixels=max_pixels).size == size
        else:
            with pytest.raises(ImageError, match=f"{size[0]} x {size[1]} pixels, over the cap of {max_pixels:,}"):
                load_image(value, max_pixels=max_pixels)


def test_default_cap_is_reasonable():
    assert 10_000_000 <= MAX_PIXELS <= Image.MAX_IMAGE_PIXELS  # a 12 MP photo passes, PIL's bomb limit holds


def test_a_pil_image_without_pixels_is_refused():
    with pytest.raises(ImageError, match=r"has no pixels \(0 x 0\)"):
        load_image(Image.new("RGB", (0, 0)))


def test_file_over_max_bytes_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_BYTES", 2**20)
    path = tmp_path / "big.png"
    path.write_bytes(png_bytes() + b"\0" * (3 * 2**20))
    with pytest.raises(ImageError, match=r"'.*big\.png' is 3 MB, over the 1 MB cap"):
        load_image(path)
    with pytest.raises(ImageError, match="over the 1 MB cap"):
        image_key(path)


# ---- image_key --------------------------------------------------------------------------------------
def test_image_key_is_the_same_for_path_str_and_bytes_of_a_file(png_file, tmp_path):
    copy = tmp_path / "copy.png"
    copy.write_bytes(png_file.read_bytes())
    keys = {image_key(png_file), image_key(str(png_file)), image_key(png_file.read_bytes()),
            image_key(bytearray(png_file.read_bytes())), image_key(copy)}
    assert len(keys) == 1
    assert len(keys.pop()) == 64  # sha256 hex


def test_image_key_changes_with_the_content(png_file, tmp_path):
    other = tmp_path / "blue.png"
    Image.new("RGB", (40, 30), (30, 30, 200)).save(other)
    assert image_key(png_file) != image_key(other)


def test_image_key_of_pil_images_depends_on_pixels_and_size():
    a = Image.new("RGB", (4, 6), (1, 2, 3))
    assert image_key(a) == image_key(a.copy()) == image_key(a.convert("RGBA"))
    assert image_key(a) != image_key(Image.new("RGB", (6, 4), (1, 2, 3)))  # same bytes, other shape
    assert image_key(a) != image_key(Image.new("RGB", (4, 6), (1, 2, 4)))


@pytest.mark.parametrize("name", ["missing", "directory", "empty"])
def test_image_key_of_an_unusable_path_is_an_image_error(tmp_path, name):
    """The feature cache hashes before decoding, so these must not escape as FileNotFoundError/IsADirectoryError."""
    path = tmp_path / ("missing.png" if name == "missing" else name)
    if name == "directory":
        path.mkdir()
    elif name == "empty":
        path.write_bytes(b"")
    with pytest.raises(ImageError, match=BAD_FILES[name][1]):
        image_key(path)
