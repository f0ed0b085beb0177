"""WikiMEL (format ``wikimel``), in each of its releases, and MIMIC's object layout: `read_wikimel`.

- MIMIC's (github.com/pengfei-luo/MIMIC, ``codes/utils/dataset.py``): a JSON array of objects ``{"id",
  "sentence", "mentions", "entities", "answer", "imgPath", ...}``, one mention each; ``mentions`` and
  ``entities`` are URL-quoted (MIMIC calls ``unquote``), ``answer`` is a Wikidata QID or ``"nil"``, ``imgPath``
  is ``""`` without image, and MIMIC opens ``<folder>/<file name up to its first dot>.jpg``
  (`gemel.data.formats.images.mimic_image_name`; it converted every image to JPEG). MIMIC re-released
  WikiDiverse and RichpediaMEL in the same layout (``wiki_diverse_*.json``, ``RichpediaMEL_*.json``: the name
  tells, `mimic_source`); `gemel.data.formats.wikidiverse` reads the former with `from_mimic`;
- the original (github.com/seukgcode/MELBench, ``Wikidata-MEL.json``): one JSON object keyed by id, ``{id:
  {"id", "sentence", "mentions": [...], "entities": [...], "answer": [QID, ...]}}``, several mentions per
  sentence and no image reference: the image is looked up as ``<id>`` with the extensions of
  `gemel.data.formats.images.IMAGE_EXTENSIONS` (``.jpg`` first) in ``image_dir`` (the images are not part of
  the archive; MEL-GHMFC keeps its sample as ``datasets/WikiMEL/images/<id>.jpg``). It has no split: the one
  the papers use is MEL-GHMFC's ``splits.json`` (`gemel.data.formats.splits`);
- one mention per record, keyed ``<id>`` (a sentence with one mention) or ``<id>-<i>`` (its i-th mention), as
  MEL-GHMFC's ``nel_ds_construct.py`` writes them and DRIN (github.com/starreeze/drin) reads its
  ``WIKIMEL_{train,valid,test}.json``: MIMIC's record layout, in an object keyed by id. The key is the example's
  id (the record's ``id`` repeats across the mentions of a sentence); without ``imgPath`` the image is
  ``<id>`` with the extensions above, as DRIN's loader opens ``KVQAimgs/<id>`` (*assumed*: the record fields
  are those of MEL-GHMFC's writer, which DRIN's loader reads: ``sentence``, ``mentions``, ``answer``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from gemel.data.formats.errors import DatasetFormatError
from gemel.data.formats.files import Item, existing_file, json_records
from gemel.data.formats.images import mimic_names, named_by, resolve_image
from gemel.data.formats.mentions import mention_meta
from gemel.data.formats.records import ReadConfig, is_nil, need_object, need_str, read_examples
from gemel.data.formats.splits import Split
from gemel.types import Example

_WIKIDIVERSE_NAME_RE = re.compile(r"wiki_?diverse", re.IGNORECASE)
_RICHPEDIA_NAME_RE = re.compile(r"richpedia", re.IGNORECASE)


def read_wikimel(path: str | Path, image_dir: str | Path | None = None, *, on_error: str = "raise",
                 split: Split | None = None) -> Iterator[Example]:
    """Examples of WikiMEL as released with MIMIC (JSON array of objects, or JSON lines), originally (MELBench's
    object keyed by id, lists of mentions; one Example per mention, id ``<id>-<j>``) or one mention per record
    keyed ``<id>``/``<id>-<i>`` (MEL-GHMFC, DRIN; the key is the id); only ``split``'s records when given.

    NIL when the answer is ``"nil"``; ``meta["qid"]`` keeps the Wikidata QID. With ``image_dir``,
    ``Example.image`` is ``image_dir/`` `mimic_image_name` (MIMIC) or ``image_dir/<id>.jpg`` (or the first of
    the other extensions that exists; original, DRIN); without it, ``imgPath`` (MIMIC) or None (no reference).
    """
    path = existing_file(path)
    config = ReadConfig(image_dir, on_error, split)
    return read_examples(path, json_records(path), lambda rec, item: _from_wikimel(path, rec, item, config), config)


def _from_wikimel(path: Path, record: Any, item: Item, config: ReadConfig) -> list[Example]:
    record = need_object(path, item.where, record, "wikimel")
    if isinstance(record.get("mentions"), list):
        return _from_melbench(path, record, item, config)
    return [from_mimic(path, record, item, config)]


def mimic_source(path: Path) -> str:
    """MIMIC ships WikiMEL, WikiDiverse (``wiki_diverse_*.json``) and RichpediaMEL (``RichpediaMEL_*.json``) in one
    layout: the name tells."""
    if _WIKIDIVERSE_NAME_RE.search(path.name):
        return "wikidiverse"
    return "richpedia" if _RICHPEDIA_NAME_RE.search(path.name) else "wikimel"


def _mimic_entity(path: Path, where: str, record: Mapping[str, Any]) -> str | None:
    answer = record.get("answer")
    if is_nil(answer):
        return None
    entity = record.get("entities")
    if is_nil(entity) or not isinstance(entity, str):
        raise DatasetFormatError(path, where, f"answer {answer!r} has no entity name: 'entities' must be the "
                                              "URL-quoted Wikipedia title (or set answer to \"nil\")")
    return unquote(entity).strip()


def from_mimic(path: Path, record: Mapping[str, Any], item: Item, config: ReadConfig) -> Example:
    """The example of one record in MIMIC's object layout (WikiMEL's, or WikiDiverse's: see `mimic_source`)."""
    text = need_str(path, item.where, record, "sentence")
    mention = unquote(need_str(path, item.where, record, "mentions"))
    located = mention_meta(path, item.where, text, mention)
    entity = _mimic_entity(path, item.where, record)
    img = record.get("imgPath") or None
    if img is not None and not isinstance(img, str):
        raise DatasetFormatError(path, item.where, f"imgPath must be a string ('' for none), got {img!r}")
    if img is None and item.key is not None and config.image_dir is not None:  # DRIN: named by the sentence's id
        image, found = resolve_image(item.key.split("-")[0], config, named_by)
    else:
        image, found = resolve_image(img, config, mimic_names)
    meta = {k: v for k, v in record.items() if k not in ("sentence", "mentions", "entities", "answer", "id")}
    meta["qid"] = None if is_nil(record.get("answer")) else record.get("answer")
    if item.key is not None and record.get("id") is not None:
        meta["record_id"] = record["id"]  # the sentence's id, shared by its mentions; the key is the example's
    raw_id = item.key if item.key is not None else record.get("id")
    return Example(text=text, mention=mention, entity=entity, image=image, source=mimic_source(path),
                   meta=meta | located | found, id=str(raw_id if raw_id is not None else item.ordinal))


def _from_melbench(path: Path, record: Mapping[str, Any], item: Item, config: ReadConfig) -> list[Example]:
    text = need_str(path, item.where, record, "sentence")
    columns = [record.get(k) for k in ("mentions", "entities", "answer")]
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
        raise DatasetFormatError(path, item.where, "the original WikiMEL layout has lists 'mentions', 'entities' "
                                                   "and 'answer' (QIDs) of one length, got "
                                                   f"{[len(c) if isinstance(c, list) else c for c in columns]}")
    rid = str(record.get("id", item.key if item.key is not None else item.ordinal))
    image, found = resolve_image(rid, config, named_by)
    image = image if config.image_dir is not None else None  # no image reference without the folder
    return [_melbench_mention(path, f"{item.where} mention {j}", text, m, e, qid, f"{rid}-{j}", image, found)
            for j, (m, e, qid) in enumerate(zip(*columns))]


def _melbench_mention(path: Path, where: str, text: str, mention: Any, entity: Any, qid: Any, eid: str,
                      image: str | None, found: dict[str, Any]) -> Example:
    if not isinstance(mention, str) or not mention.strip():
        raise DatasetFormatError(path, where, f"the mention must be a non-empty string, got {mention!r}")
    if not is_nil(qid) and (is_nil(entity) or not isinstance(entity, str)):
        raise DatasetFormatError(path, where, f"answer {qid!r} has no entity name in 'entities'")
    meta = {"qid": None if is_nil(qid) else qid} | mention_meta(path, where, text, mention) | found
    return Example(text=text, mention=mention, entity=None if is_nil(qid) else entity.strip(), image=image, id=eid,
                   source="wikimel", meta=meta)
