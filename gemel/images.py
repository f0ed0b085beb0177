"""Loading user images safely: clear errors for bad files, a pixel cap against decompression bombs.

Every image that enters the linker (CLI batch lines, uploads, demonstration pools) goes through
:func:`load_image`, which checks the header's dimensions *before* decoding any pixels, so a tiny file that
claims 100k x 100k pixels is refused without allocating memory, and turns PIL's many exceptions into one
:class:`ImageError` whose message says what is wrong with which input.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Union

from PIL import Image, UnidentifiedImageError

from .errors import GemelError

MAX_PIXELS = 40_000_000  # ~ 7000 x 5700; larger images are refused before decoding
MAX_BYTES = 50 * 1024 * 1024

ImageInput = Union[Image.Image, str, Path, bytes, None]


class ImageError(GemelError):
    """An image input cannot be used; the message names it and says why."""


def load_image(image: ImageInput, max_pixels: int = MAX_PIXELS) -> Image.Image | None:
    """A decoded RGB image from a PIL image, a path or bytes; None stays None (text-only linking)."""
    if image is None:
        return None
    if isinstance(image, Image.Image):
        _check_size(image.size, "the image", max_pixels)
        return image.convert("RGB")
    if isinstance(image, (bytes, bytearray)):
        return _decode(bytes(image), "the uploaded image", max_pixels)
    return _decode(_read_file(Path(image)), f"image file {str(image)!r}", max_pixels)


def _read_file(path: Path) -> bytes:
    """The bytes of an image file, or an ImageError saying why there are none to use."""
    if not path.exists():
        raise ImageError(f"image file {str(path)!r} does not exist")
    if not path.is_file():
        raise ImageError(f"image path {str(path)!r} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise ImageError(f"image file {str(path)!r} is empty")
    if size > MAX_BYTES:
        raise ImageError(f"image file {str(path)!r} is {size / 2**20:.0f} MB, over the {MAX_BYTES // 2**20} MB cap")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ImageError(f"image file {str(path)!r} cannot be read ({e.strerror or e})") from e


def _check_size(size: tuple[int, int], what: str, max_pixels: int) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageError(f"{what} has no pixels ({w} x {h})")
    if w * h > max_pixels:
        raise ImageError(f"{what} is {w} x {h} pixels, over the cap of {max_pixels:,} pixels: "
                         "resize it (a decompression bomb is refused this way too)")


def _decode(data: bytes, what: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            _check_size(im.size, what, max_pixels)  # header only: nothing decoded yet
            im.load()
    except ImageError:
        raise
    except UnidentifiedImageError as e:
        raise ImageError(f"{what} is not an image PIL can read (JPEG, PNG, WebP, GIF, BMP, TIFF ...)") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{what} is too large to decode safely: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{what} is truncated or corrupt ({e})") from e
    return im.convert("RGB")


def image_key(image: ImageInput) -> str | None:
    """A content hash for caching features: sha256 of the file bytes (or of the pixels of a PIL image).

    A path that cannot be used raises ImageError here already (missing, a folder, empty, over MAX_BYTES)."""
    if image is None:
        return None
    if isinstance(image, Image.Image):
        rgb = image.convert("RGB")
        return hashlib.sha256(rgb.tobytes() + repr(rgb.size).encode()).hexdigest()
    data = bytes(image) if isinstance(image, (bytes, bytearray)) else _read_file(Path(image))
    return hashlib.sha256(data).hexdigest()
