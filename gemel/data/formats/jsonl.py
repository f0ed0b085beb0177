"""GEMEL Studio's own JSON lines (format ``jsonl``): `read_jsonl` and `write_jsonl`.

One record per line: ``{"id"?, "text", "mention", "entity" (null = NIL), "image"?, "source"?, ...}``; a relative
``image`` is resolved against the file's folder and every other key goes to ``Example.meta``. `write_jsonl`
writes the same layout. Its mention must occur in the text unless the record is marked ``"verbatim": false``
(people's queries keep the strict check).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gemel.data.formats.errors import DatasetFormatError
from gemel.data.formats.files import Item, existing_file, json_records
from gemel.data.formats.images import is_url, relative_to
from gemel.data.formats.mentions import mention_meta
from gemel.data.formats.records import ReadConfig, need_object, need_str, read_examples
from gemel.data.formats.splits import Split
from gemel.types import Example

_KNOWN_KEYS = ("id", "text", "mention", "entity", "image", "source")


def read_jsonl(path: str | Path, image_dir: str | Path | None = None, *, on_error: str = "raise",
               split: Split | None = None) -> Iterator[Example]:
    """Examples of a GEMEL Studio JSON-lines file, streamed.

    A relative ``image`` is resolved against ``image_dir`` (default: the file's folder); optional integer
    ``start``/``end`` give the mention's offsets. Unknown keys (and a ``meta`` object) go to ``Example.meta``.
    These files hold people's queries too (the demo's review batches), so a mention must occur in its text
    unless the record says ``"verbatim": false`` (as `write_jsonl` writes a data set's mention read as given).
    """
    path = existing_file(path)
    config = ReadConfig(image_dir, on_error, split)
    base = str(image_dir) if image_dir is not None else str(path.parent)
    return read_examples(path, json_records(path), lambda rec, item: [_from_jsonl(path, rec, item, base)], config)


def _from_jsonl(path: Path, record: Any, item: Item, base: str) -> Example:
    record = need_object(path, item.where, record, "jsonl")
    text, mention = need_str(path, item.where, record, "text"), need_str(path, item.where, record, "mention")
    span = (record.get("start"), record.get("end")) if "start" in record or "end" in record else None
    if span is None and mention not in text and record.get("verbatim") is not False:
        raise DatasetFormatError(path, item.where, f"mention {mention!r} does not occur in the text {text[:80]!r}; "
                                                   "fix the mention, give its character offsets start/end, or mark "
                                                   'the record "verbatim": false (a data set\'s mention, read as given)')
    located = mention_meta(path, item.where, text, mention, span)
    entity, image = record.get("entity"), record.get("image")
    if entity is not None and (not isinstance(entity, str) or not entity.strip()):
        raise DatasetFormatError(path, item.where, f"entity {entity!r} must be a KB title, or null for NIL")
    if image is not None and (not isinstance(image, str) or not image):
        raise DatasetFormatError(path, item.where, f"image {image!r} must be a path or URL string, or null")
    nested = record.get("meta") or {}
    if not isinstance(nested, dict):
        raise DatasetFormatError(path, item.where, f"meta must be a JSON object, got {nested!r}")
    meta = {k: v for k, v in record.items() if k not in _KNOWN_KEYS and k != "meta"} | nested | located
    raw_id = record.get("id")
    return Example(text=text, mention=mention, entity=entity, id=str(raw_id if raw_id is not None else item.number),
                   image=relative_to(image, base) if image else None,
                   source=str(record.get("source") or ""), meta=meta)


def write_jsonl(path: str | Path, examples: Iterable[Example]) -> int:
    """Write examples as GEMEL Studio JSON lines (read back by `read_jsonl`); returns how many were written.

    Local relative image paths are written relative to the file's folder, so the file can move with its images.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for example in examples:
            f.write(json.dumps(_to_jsonl(example, path.parent), ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def _to_jsonl(example: Example, folder: Path) -> dict[str, Any]:
    image = example.image
    if image and not is_url(image) and not os.path.isabs(image):
        image = os.path.relpath(image, folder)
    record: dict[str, Any] = {"id": example.id, "text": example.text, "mention": example.mention,
                              "entity": example.entity, "image": image}
    if example.source:
        record["source"] = example.source
    if any(k in _KNOWN_KEYS or k == "meta" for k in example.meta):
        record["meta"] = dict(example.meta)  # keys that would collide stay nested
    else:
        record.update(example.meta)
    return record
