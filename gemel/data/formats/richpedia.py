"""Richpedia-MEL (format ``richpedia``): `read_richpedia`.

Checked against github.com/seukgcode/MEL-GHMFC (``datasets/Richpedia-MEL/{train,test}.json``, 14,244 + 3,561
records; MELBench's ``Richpedia-MEL.zip`` is *assumed* to have the same layout, as reported, but the archive is
not in the repository and was not checked): one JSON object keyed by the QID of the entity
the sentence is about, ``{QID: {"id": QID, "sentence", "mentions", "entities", "answer": QID}}``, one string
mention per record, ``entities`` the entity's name, and no image reference. The images are ``<QID>.jpg``
(``datasets/Richpedia-MEL/images/Q157.jpg``), looked up with the extensions of
`gemel.data.formats.images.IMAGE_EXTENSIONS` in ``image_dir``, then in its ``images`` folder; without
``image_dir``, in the ``images`` folder next to the file when there is one (where the release keeps them).

Record ``Q79179`` has the mention ``"\\n\\n"``: a blank mention is skipped with its key logged, in either
``on_error`` mode (`gemel.data.formats.records.BlankRecord`). 1,771 mentions are not verbatim in their sentence
("Karl Robert Eduard von Hartmann" in "Karl Robert Eduard Hartmann ."): read as given, like WikiMEL's.
MIMIC's re-release (``RichpediaMEL_*.json``) is MIMIC's layout and is read by the ``wikimel`` reader, with
the source ``richpedia`` all the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gemel.data.formats.errors import DatasetFormatError
from gemel.data.formats.files import Item, existing_file, json_records
from gemel.data.formats.images import named_by, resolve_image
from gemel.data.formats.mentions import mention_meta
from gemel.data.formats.records import BlankRecord, ReadConfig, is_nil, need_object, need_str, read_examples
from gemel.data.formats.splits import Split
from gemel.types import Example

QID_RE = re.compile(r"Q[1-9][0-9]*")
_IMAGES = "images"  # the folder of the images next to the data files, in MEL-GHMFC's layout


def read_richpedia(path: str | Path, image_dir: str | Path | None = None, *, on_error: str = "raise",
                   split: Split | None = None) -> Iterator[Example]:
    """Examples of a Richpedia-MEL file (one per record, id = its key, the QID; ``source="richpedia"``); only
    ``split``'s records when given.

    ``meta["qid"]`` keeps the answer's QID. ``Example.image`` is ``<QID>.jpg`` (or another of the extensions)
    in ``image_dir`` or its ``images`` folder; without ``image_dir``, in the ``images`` folder next to the
    file, and None when there is no such folder. A record with a blank mention is skipped (logged with its key).
    """
    path = existing_file(path)
    if image_dir is None and (path.parent / _IMAGES).is_dir():
        image_dir = path.parent / _IMAGES
    config = ReadConfig(image_dir, on_error, split)
    return read_examples(path, json_records(path), lambda rec, item: [_from_richpedia(path, rec, item, config)],
                         config)


def is_richpedia_record(record: Any) -> bool:
    """Whether a record has Richpedia-MEL's layout: one string mention, no ``imgPath``, a QID as its id (WikiMEL's
    records in MIMIC's layout have an ``imgPath``; the original's and DRIN's ids are numbers)."""
    return (isinstance(record, dict) and isinstance(record.get("mentions"), str) and "imgPath" not in record
            and isinstance(record.get("id"), str) and QID_RE.fullmatch(record["id"]) is not None)


def richpedia_names(qid: str) -> list[str]:
    """The file names of the image of record ``qid``: ``<QID><extension>``, then the same in ``images/``."""
    return [*named_by(qid), *(f"{_IMAGES}/{name}" for name in named_by(qid))]


def _from_richpedia(path: Path, record: Any, item: Item, config: ReadConfig) -> Example:
    record = need_object(path, item.where, record, "richpedia")
    text = need_str(path, item.where, record, "sentence")
    mention = record.get("mentions")
    if not isinstance(mention, str):
        raise DatasetFormatError(path, item.where, f"'mentions' must be the mention (one string), got {mention!r}; "
                                                   "is this the original WikiMEL release? read it as --format wikimel")
    if not mention.strip():
        raise BlankRecord(path, item.where, f"the mention is blank ({mention!r}): nothing to link, record skipped")
    qid, entity = record.get("answer"), record.get("entities")
    if not is_nil(qid) and (is_nil(entity) or not isinstance(entity, str)):
        raise DatasetFormatError(path, item.where, f"answer {qid!r} has no entity name: 'entities' must be the "
                                                   "entity's name (or set answer to \"nil\")")
    rid = str(item.key if item.key is not None else record.get("id", item.ordinal))
    image, found = resolve_image(rid, config, richpedia_names) if config.image_dir is not None else (None, {})
    meta = {k: v for k, v in record.items() if k not in ("sentence", "mentions", "entities", "answer", "id")}
    meta["qid"] = None if is_nil(qid) else qid
    return Example(text=text, mention=mention, entity=None if is_nil(qid) else entity.strip(), image=image, id=rid,
                   source="richpedia", meta=meta | mention_meta(path, item.where, text, mention) | found)
