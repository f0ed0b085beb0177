"""Image naming: the file each data set's convention names for a mention's image, and how a reader finds it.

The released WikiDiverse images (``wikinewsImgs``) are named `wikidiverse_image_name`: the md5 of the URL's last
path segment, then its extension, ``.svg`` as ``.png``. MIMIC opens ``<folder>/<file name up to its first
dot>.jpg`` (`mimic_image_name`; it converted every image to JPEG). The releases that name an image by an id
(the original WikiMEL, DRIN's WikiMEL files, Richpedia-MEL's ``<QID>.jpg``) are looked up as ``<id><extension>``
with the extensions of `IMAGE_EXTENSIONS`, in that order (`named_by`): the three the releases mostly use, then
the others DRIN's loader (``common/utils.py`` ``load_image``) tries, as some WikiMEL images have them.

With ``image_dir``, ``Example.image`` is the file the data set's convention names there (`resolve_image`); when
it does not exist the example is text-only (``image`` None, ``meta["image_missing"]`` = the path looked for)
and the file's count of missing images is logged. Without ``image_dir`` the reference is kept as found.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from gemel.data.formats.records import ReadConfig

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# the order tried: .jpg first (MIMIC and MEL-GHMFC converted to or kept JPEG), then what else the releases hold
IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg", ".JPG", ".JPEG", ".PNG", ".tif", ".TIF", ".tiff", ".TIFF")
_IMAGE_STEM_RE = re.compile(r"\S+(?=\.(?:jpe?g|JPE?G|png|PNG|svg|SVG))")  # up to the last known extension


def wikidiverse_image_name(url: str) -> str:
    """The file name of a WikiDiverse image in the released ``wikinewsImgs`` folder (README "How to get the
    wikinews imgs"; DRIN's ``preprocess/prepare.py`` does the same): the md5 of the URL's last path segment
    as written (percent-escapes kept), then the segment's extension (everything after the stem that precedes
    its last ``.jpg``/``.jpeg``/``.png``/``.svg``, in lower or upper case), ``.svg`` saved as ``.png``. A
    segment without such an extension is appended whole (as the release does)."""
    segment = url.split("/")[-1]
    name = hashlib.md5(segment.encode("utf-8")).hexdigest() + _IMAGE_STEM_RE.sub("", segment)
    return name.replace(".svg", ".png").replace(".SVG", ".png")


def mimic_image_name(img_path: str) -> str:
    """MIMIC's file name of a mention image: the file name of ``imgPath`` up to its first dot, then ``.jpg``."""
    return img_path.split("/")[-1].split(".")[0] + ".jpg"


def is_url(ref: str) -> bool:
    """Whether ``ref`` starts with a URL scheme (``https://``, ``file://``, ...)."""
    return bool(_URL_RE.match(ref))


def relative_to(ref: str, folder: str | Path) -> str:
    """A local relative path resolved against folder; URLs, absolute paths and ``package:NAME/path`` references
    (a picture inside an installed package) unchanged."""
    if is_url(ref) or os.path.isabs(ref) or ref.startswith("package:"):
        return ref
    return os.path.normpath(os.path.join(folder, ref))


def _basename_of(ref: str) -> str:
    return unquote(urlsplit(ref).path.rsplit("/", 1)[-1]) if is_url(ref) else os.path.basename(ref)


def _local_image(image_dir: str | Path, names: Sequence[str]) -> tuple[str | None, dict[str, Any]]:
    """The first of ``names`` (the data set's convention first) that exists in image_dir, and ``{}``; when none
    does, None and ``{"image_missing": image_dir/names[0]}``."""
    for name in names:
        if name and os.path.isfile(os.path.join(image_dir, name)):
            return os.path.normpath(os.path.join(image_dir, name)), {}
    return None, {"image_missing": os.path.normpath(os.path.join(image_dir, names[0]))}


def resolve_image(ref: str | None, config: ReadConfig,
                  names: Callable[[str], list[str]]) -> tuple[str | None, dict]:
    """The reference as found without image_dir, else the local file (or None and the name looked for)."""
    if not ref or config.image_dir is None:
        return ref or None, {}
    return _local_image(config.image_dir, names(ref))


def wikidiverse_names(url: str) -> list[str]:
    """The file names to look for a WikiDiverse image URL under: the release's, then the URL's own."""
    return [wikidiverse_image_name(url), _basename_of(url)]


def named_by(stem: str) -> list[str]:
    """The file names of an image named by an id (or stem), in the order they are tried: ``<stem><extension>``
    for each of `IMAGE_EXTENSIONS`."""
    return [stem + extension for extension in IMAGE_EXTENSIONS]


def mimic_names(img_path: str) -> list[str]:
    """The file names to look for a MIMIC ``imgPath`` under: MIMIC's ``.jpg``, the path's own name, then its stem
    (up to the first dot) with the other extensions (`named_by`)."""
    first = mimic_image_name(img_path)
    return list(dict.fromkeys([first, _basename_of(img_path), *named_by(first.removesuffix(".jpg"))]))
