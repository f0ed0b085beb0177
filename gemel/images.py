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

from gemel.errors import GemelError

MAX_PIXELS = 40_000_000  # ~ 7000 x 5700; larger images are refused before decoding
MAX_BYTES = 50 * 1024 * 1024
WHITE = (255, 255, 255)

ImageInput = Union["Picture", Image.Image, str, Path, bytes, None]


class ImageError(GemelError):
    """An image input cannot be used; the message names it and says why."""


class Picture:
    """One picture, read, hashed and decoded at most once: the steps of one link (the vision feature, the
    picture's style, the picture memory, the recall of a person's decision) each ask for its content key or
    its pixels, and a `Picture` computes each on first use and keeps it. Every function that takes an
    `ImageInput` takes a `Picture` (`image_key` and `load_image` answer from it)."""

    __slots__ = ("source", "_key", "_data", "_image")

    def __init__(self, source: Image.Image | str | Path | bytes) -> None:
        self.source = source  # what the caller gave: a PIL image, a path or bytes
        self._key: str | None = None  # content hash, made on first use
        self._data: bytes | None = None  # a file's bytes, read once for the hash and kept until decoded
        self._image: Image.Image | None = None  # the decoded RGB pixels, made on first use

    @classmethod
    def of(cls, image: ImageInput) -> "Picture | None":
        """``image`` as a Picture (None stays None; a Picture is returned as it is)."""
        if image is None or isinstance(image, Picture):
            return image
        return cls(image)

    @property
    def key(self) -> str:
        """The content hash of :func:`image_key`, computed once."""
        if self._key is None:
            if isinstance(self.source, Image.Image):
                self._key = image_key(self.source)
            else:
                self._key = hashlib.sha256(self._bytes()).hexdigest()
        return self._key

    def image(self) -> Image.Image:
        """The decoded RGB pixels of :func:`load_image`, decoded once."""
        if self._image is None:
            if isinstance(self.source, Image.Image):
                self._image = load_image(self.source)
            else:
                self._image = _decode(self._bytes(), self._what(), MAX_PIXELS)
            self._data = None
        return self._image

    def _bytes(self) -> bytes:
        if self._data is None:
            src = self.source
            self._data = bytes(src) if isinstance(src, (bytes, bytearray)) else _read_file(Path(src))
        return self._data

    def _what(self) -> str:
        return "the uploaded image" if isinstance(self.source, (bytes, bytearray)) else f"image file {str(self.source)!r}"

    def __repr__(self) -> str:
        kind = type(self.source).__name__ if not isinstance(self.source, (str, Path)) else str(self.source)
        return f"Picture({kind})"


def load_image(image: ImageInput, max_pixels: int = MAX_PIXELS) -> Image.Image | None:
    """A decoded RGB image from a PIL image, a path or bytes; None stays None (text-only linking)."""
    if image is None:
        return None
    if isinstance(image, Picture) and max_pixels == MAX_PIXELS:
        return image.image()
    if isinstance(image, Picture):
        image = image.source
    if isinstance(image, Image.Image):
        _check_size(image.size, "the image", max_pixels)
        return to_rgb(image)
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
    return to_rgb(im)


def to_rgb(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """RGB pixels of any PIL image, the same way everywhere: transparency composited on ``background``.

    Alpha (RGBA, LA, PA) and palette transparency are flattened onto white (``convert("RGB")`` alone would
    keep whatever colour the transparent pixels hold, often black); 16/32-bit grey is scaled to 8 bits
    (``convert`` would clip it); CMYK, palettes and the first frame of an animation convert as PIL does.
    """
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _wide_grey_to_rgb(image)
    if mode == "P" and "transparency" in image.info or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _wide_grey_to_rgb(image: Image.Image) -> Image.Image:
    import numpy as np

    arr = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
    if image.mode == "F":
        top = max(float(arr.max(initial=0)), 1.0)
    grey = np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def image_key(image: ImageInput) -> str | None:
    """A content hash for caching features: sha256 of the file bytes (or of the pixels of a PIL image).

    A path that cannot be used raises ImageError here already (missing, a folder, empty, over MAX_BYTES)."""
    if image is None:
        return None
    if isinstance(image, Picture):
        return image.key
    if isinstance(image, Image.Image):
        rgb = image.convert("RGB")
        return hashlib.sha256(rgb.tobytes() + repr(rgb.size).encode()).hexdigest()
    data = bytes(image) if isinstance(image, (bytes, bytearray)) else _read_file(Path(image))
    return hashlib.sha256(data).hexdigest()
