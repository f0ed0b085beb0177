"""Reading what the demo is given to annotate: uploaded review batches and the shipped example gallery.

A review batch is GEMEL Studio's JSONL (``text``, ``mention``, optional ``image``; see `gemel.data.readers`),
uploaded with its images (loose files or a whole folder), or named by a path on the server when the app runs
locally (``allow_server_paths``). Gradio stores every upload in its own temporary folder, so an image
reference relative to the JSONL is matched against the uploaded files by relative path, then by file name.
An absolute image path, or a relative one that climbs out of the JSONL's folder, is read from the server's
disk only when ``allow_server_paths`` is on; a public deployment never opens a path a visitor typed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import StudioError

log = logging.getLogger(__name__)

_JSONL = (".jsonl", ".ndjson")


class BatchError(StudioError):
    """An uploaded batch cannot be read; the message names the file (and line) and the fix."""


@dataclass(frozen=True)
class BatchItem:
    text: str
    mention: str
    image: str | None  # a readable local path, or None for a text-only item
    where: str  # "file.jsonl:3", for messages


class _Uploads:
    """Uploaded files, looked up by the tail of a relative path (longest match wins)."""

    def __init__(self, files: Iterable[str]) -> None:
        self.files = [Path(f) for f in files]

    def find(self, ref: str) -> Path | None:
        parts = Path(ref.replace("\\", "/")).parts
        parts = tuple(p for p in parts if p not in ("", ".", "/"))
        best, best_len = None, 0
        for f in self.files:
            n = _common_tail(f.parts, parts)
            if n > best_len:
                best, best_len = f, n
        return best if best_len >= 1 and best is not None and best.name == parts[-1] else None


def _common_tail(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def split_upload(files: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """(JSONL files, other files) of an upload."""
    paths = [Path(f) for f in files if f]
    return [p for p in paths if p.suffix.lower() in _JSONL], [str(p) for p in paths if p.suffix.lower() not in _JSONL]


def read_batch(files: Iterable[str | os.PathLike], allow_server_paths: bool = False,
               max_items: int | None = None) -> list[BatchItem]:
    """The items of the JSONL file(s) among ``files``, their images resolved as the module docstring says."""
    jsonl, others = split_upload(files)
    if not jsonl:
        raise BatchError("no .jsonl file among the uploaded files: upload a JSONL batch with one "
                         '{"text": ..., "mention": ..., "image": ...} object per line, with its images')
    uploads = _Uploads(others)
    items = [it for path in jsonl for it in _read_one(path, uploads, allow_server_paths)]
    if not items:
        raise BatchError(f"{jsonl[0].name} holds no items; each line needs a text and a mention")
    if max_items is not None and len(items) > max_items:
        raise BatchError(f"the batch has {len(items)} items, over this app's limit of {max_items}: split it "
                         "into smaller files")
    return items


def _read_one(path: Path, uploads: _Uploads, allow_server_paths: bool) -> list[BatchItem]:
    from gemel.data.formats.jsonl import read_jsonl
    from gemel.data.readers import DatasetError

    base = path.resolve().parent
    try:
        examples = list(read_jsonl(path, image_dir=base))
    except (DatasetError, FileNotFoundError) as e:
        raise BatchError(str(e).replace(str(path), path.name)) from e
    out = []
    for n, ex in enumerate(examples, 1):
        where = f"{path.name}:{n}"
        out.append(BatchItem(ex.text, ex.mention, _image(ex.image, base, uploads, allow_server_paths, where), where))
    return out


def _image(ref: str | None, base: Path, uploads: _Uploads, allow_server_paths: bool, where: str) -> str | None:
    if ref is None:
        return None
    if "://" in ref:
        raise BatchError(f"{where}: image {ref!r} is a URL; this app has no network: upload the image file")
    resolved = Path(os.path.normpath(ref))
    inside = resolved.is_relative_to(base)
    relative = os.path.relpath(resolved, base) if inside else ref
    uploaded = uploads.find(relative)
    if uploaded is not None:
        return str(uploaded)
    if (inside or allow_server_paths) and resolved.is_file():
        return str(resolved)
    if not inside and not allow_server_paths:
        raise BatchError(f"{where}: image {ref!r} is outside the batch and this app does not read server paths: "
                         "upload the image together with the JSONL (or the whole folder)")
    raise BatchError(f"{where}: image {relative!r} was not uploaded: upload it with the JSONL, "
                     "or the whole folder that holds both")


def shipped_examples(paths: Iterable[str | os.PathLike]) -> list:
    """`gemel.types.Example` records of the example gallery: those with an existing image, one per
    (image, text, mention)."""
    from gemel.kb.demonstrations import load_jsonl_examples

    seen, out = set(), []
    for path in paths:
        for ex in load_jsonl_examples(path, Path(path).stem):
            key = (ex.image, ex.text, ex.mention)
            if ex.image and Path(ex.image).is_file() and key not in seen:
                seen.add(key)
                out.append(ex)
    return out
