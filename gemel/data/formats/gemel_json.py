"""The preprocessed files of the official GEMEL code (format ``gemel``): `read_gemel`.

``data/<dataset>/{train,dev,test}.json`` (github.com/HITsz-TMG/GEMEL, ``utils.py``): JSON lines with ``text``,
``mention``, ``target`` (the entity name written after ``[Answer]``, the generation target) and ``golden``
(``"NIL"`` marks NIL / out-of-KB mentions, which GEMEL drops); the official code reads both, so both are
required. The image key is ``img_url`` (WikiDiverse) or ``img_name`` (WikiMEL); it indexes GEMEL's CLIP
features (`gemel.data.formats.clip_features`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from gemel.data.formats.errors import DatasetFormatError
from gemel.data.formats.files import Item, existing_file, json_records
from gemel.data.formats.images import mimic_names, resolve_image, wikidiverse_names
from gemel.data.formats.mentions import mention_meta
from gemel.data.formats.records import ReadConfig, is_nil, need_object, need_str, read_examples
from gemel.data.formats.splits import Split
from gemel.types import Example


def read_gemel(path: str | Path, image_dir: str | Path | None = None, *, on_error: str = "raise",
               split: Split | None = None) -> Iterator[Example]:
    """Examples of a GEMEL ``train/dev/test.json`` (JSON lines), streamed; NIL (``golden == "NIL"``) -> None.

    ``Example.image`` is the file in ``image_dir`` when given (``img_url``: `wikidiverse_image_name`;
    ``img_name``: the name itself, then MIMIC's ``.jpg`` and the other extensions), else the raw
    ``img_url``/``img_name``;
    ``meta["image_key"]`` always keeps the raw key (for `read_clip_features`).
    """
    path = existing_file(path)
    config = ReadConfig(image_dir, on_error, split)
    return read_examples(path, json_records(path), lambda rec, item: [_from_gemel(path, rec, item, config)], config)


def _gemel_entity(path: Path, where: str, record: Mapping[str, Any]) -> str | None:
    for key in ("target", "golden"):
        if key not in record:
            raise DatasetFormatError(path, where, f"no {key!r} field: a GEMEL record has 'target' (the entity name "
                                                  "after [Answer]) and 'golden' ('NIL' for NIL), as the official "
                                                  "utils.py reads them")
    target = record["target"]
    if is_nil(record["golden"]) or is_nil(target):
        return None
    if not isinstance(target, str):
        raise DatasetFormatError(path, where, f"'target' must be the entity name, got {target!r}")
    return target.strip()


def _from_gemel(path: Path, record: Any, item: Item, config: ReadConfig) -> Example:
    record = need_object(path, item.where, record, "gemel")
    text, mention = need_str(path, item.where, record, "text"), need_str(path, item.where, record, "mention")
    located = mention_meta(path, item.where, text, mention)
    entity = _gemel_entity(path, item.where, record)
    key = record.get("img_name", record.get("img_url"))
    if key is not None and not isinstance(key, str):
        raise DatasetFormatError(path, item.where, f"img_url/img_name must be a string, got {key!r}")
    names = wikidiverse_names if "img_name" not in record else _img_name_names
    image, found = resolve_image(key, config, names)
    meta = {k: v for k, v in record.items()
            if k not in ("text", "mention", "target", "id", "img_url", "img_name")} | located | found
    meta["image_key"] = key  # the key of this image in read_clip_features
    raw_id = record.get("id")
    return Example(text=text, mention=mention, entity=entity, image=image, source="gemel", meta=meta,
                   id=str(raw_id if raw_id is not None else item.ordinal))


def _img_name_names(name: str) -> list[str]:
    """The file names to look for an ``img_name`` under: the name itself, then as MIMIC names it (`mimic_names`)."""
    return list(dict.fromkeys([name, *mimic_names(name)]))
