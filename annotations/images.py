"""Content-addressed image files next to the database: `images/<sha256>.<ext>`.

An image is stored once whatever its source (bytes, a file path or a PIL image) and is named by the
SHA-256 of its bytes, so two annotators looking at the same picture refer to the same file and an
input's identity can include the image hash (the idea of git's object store). Files are written to a
temporary name and renamed, so concurrent writers never see half an image.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import InvalidImageError, MissingImageError

# PIL format name -> file extension
_EXT = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif"}


def image_bytes(image: Any) -> tuple[bytes, str]:
    """Read `image` (bytes, str/PathLike path, or PIL image) into (bytes, extension without dot).

    Bytes and files must be an image format pillow reads (the linker reads them with pillow);
    a PIL image is saved as PNG."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        return data, _sniff_ext(data)
    if isinstance(image, (str, os.PathLike)):
        return _read_path(Path(image))
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL.Image.Image, without importing PIL
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")  # lossless, so the pixels are kept exactly
        return buffer.getvalue(), "png"
    raise InvalidImageError(
        f"cannot store an image given as {type(image).__name__}; pass bytes, a file path, "
        "a PIL image, or None"
    )


def _read_path(path: Path) -> tuple[bytes, str]:
    if not path.is_file():
        raise MissingImageError(f"image file {str(path)!r} does not exist; check the path")
    data = path.read_bytes()
    return data, _sniff_ext(data)  # the content, not the file name, says what it is


def _sniff_ext(data: bytes) -> str:
    if not data:
        raise InvalidImageError("the image is empty (0 bytes); pass the image's file or bytes")
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:  # pragma: no cover - pillow is a requirement
        raise InvalidImageError("pillow is needed to recognise image bytes; pip install pillow") from e
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
    except (UnidentifiedImageError, OSError) as e:
        raise InvalidImageError(
            f"{len(data)} bytes given as an image are not an image format pillow can read "
            "(JPEG, PNG, GIF, WebP ...); pass the image file instead"
        ) from e
    return _EXT.get(fmt, fmt.lower() or "bin")


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def find_stored(images_dir: Path, sha256: str) -> Path | None:
    """The stored file of hash `sha256`, whatever its extension, or None."""
    if not images_dir.is_dir():
        return None
    return next(iter(sorted(images_dir.glob(f"{sha256}.*"))), None)


def store_image(image: Any, images_dir: Path) -> tuple[str, str]:
    """Store `image` under `images_dir`; return (sha256, file name `<sha256>.<ext>`)."""
    data, ext = image_bytes(image)
    digest = sha256_hex(data)
    existing = find_stored(images_dir, digest)
    if existing is not None:
        return digest, existing.name
    images_dir.mkdir(parents=True, exist_ok=True)
    name = f"{digest}.{ext}"
    _atomic_write(images_dir / name, data)
    return digest, name


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
