"""Readers for multimodal entity-linking data sets; each yields `gemel.types.Example` records.

The layouts below are the ones the released files really have, read from the code that loads them:

* ``jsonl`` -- GEMEL Studio's own JSON lines: ``{"id"?, "text", "mention", "entity" (null = NIL),
  "image"?, "source"?, ...}``; a relative ``image`` is resolved against the file's folder and every other key
  goes to ``Example.meta``. `write_jsonl` writes the same layout.
* ``gemel`` -- the preprocessed ``data/<dataset>/{train,dev,test}.json`` of the official GEMEL code
  (github.com/HITsz-TMG/GEMEL, ``utils.py``): JSON lines (``GEMELDataset._get_data`` runs
  ``json.loads(line)`` per line) with ``text``, ``mention``, ``target`` (the entity name written after
  ``[Answer]``, the generation target), ``golden`` (``"NIL"`` marks NIL / out-of-KB mentions, which GEMEL
  drops), and the image key ``img_url`` (WikiDiverse) or ``img_name`` (WikiMEL). Some re-releases name the
  target ``answer``. The image key indexes ``clip_vit_large_patch14_1024.hdf5``: ``GEMELDataset._add_img_feat``
  reads ``h5py.File(path)[img_key][()]``, one CLIP ViT-L/14 vector of 1024 floats per image, which
  ``model.py`` feeds to ``nn.Linear(dim_clip=1024, ...)``. `read_clip_features` gives that mapping.
* ``wikidiverse`` -- the annotated WikiDiverse release (github.com/wangxw5/wikiDiverse, README "Data
  Format"): one JSON array whose entries are ``[text, image URL, topic, [[mention, type, start, end,
  Wikipedia URL], ...]]`` with character offsets ``text[start:end]``; one `Example` per mention, the entity
  being the Wikipedia title decoded from the URL (percent-decoding, ``_`` -> space).
* ``wikimel`` -- WikiMEL as cleaned and released with MIMIC (github.com/pengfei-luo/MIMIC,
  ``codes/utils/dataset.py``): a JSON array of objects ``{"id", "sentence", "mentions", "entities",
  "answer", "imgPath", ...}``; ``mentions`` and ``entities`` are URL-quoted (MIMIC calls ``unquote``),
  ``answer`` is a Wikidata QID or ``"nil"``, ``imgPath`` is ``""`` without image, and MIMIC opens
  ``<mention_img_folder>/<stem of imgPath>.jpg`` (it converted every image to JPEG).

JSON-lines files are streamed; JSON arrays (how WikiDiverse and MIMIC ship) are parsed whole, then iterated.
A malformed record raises `DatasetFormatError` naming ``file:line`` (or ``file:record N``) and the fix, unless
``on_error="skip"``, which logs it and goes on. `read_titles` streams the KB builder's title lists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import numpy as np

from gemel.types import Example
from .errors import GemelError

logger = logging.getLogger(__name__)

FORMATS = ("jsonl", "gemel", "wikidiverse", "wikimel")
_KNOWN_KEYS = ("id", "text", "mention", "entity", "image", "source")
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SNIFF_BYTES = 1 << 16


class DatasetError(GemelError):
    """Base class of the errors raised while reading a data set."""


class DatasetFormatError(DatasetError):
    """A file or one of its records does not have the documented layout; the message says where and how to fix."""

    def __init__(self, path: str | Path, where: str | int | None, message: str) -> None:
        self.path, self.where = str(path), where
        super().__init__(f"{path}:{where}: {message}" if where is not None else f"{path}: {message}")


class UnknownFormatError(DatasetError):
    """`read_dataset` could not tell the format of a file."""


@dataclass(frozen=True)
class ReadConfig:
    image_dir: str | Path | None = None  # folder of the image files; None keeps image references as found
    on_error: str = "raise"  # "raise": stop at the first malformed record; "skip": log it and go on

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={self.on_error!r} is not one of 'raise', 'skip'")
        if self.image_dir is not None and not Path(self.image_dir).is_dir():
            raise ValueError(f"image_dir={str(self.image_dir)!r} is not a folder: pass the folder that holds "
                             "the images, or None to keep the image references of the file")


class _Item(NamedTuple):
    where: str  # "12" (line) or "record 3" (array index), used in error messages
    number: int  # line number (JSON lines) or record index (JSON array): the default id of our JSONL
    ordinal: int  # 0-based position among the records: the default id of the external data sets
    load: Callable[[], Any]  # parses the record; raises DatasetFormatError


# ----------------------------------------------------------------------------- low-level file access


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; check the path (relative paths start at {os.getcwd()})")
    return path


def _first_char(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        head = f.read(_SNIFF_BYTES).lstrip("\ufeff \t\r\n")
    return head[:1]


def _parse_line(path: Path, lineno: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DatasetFormatError(path, lineno, f"not valid JSON ({e.msg}, column {e.colno}); "
                                               "each line must hold one complete JSON value") from e


def _json_lines(path: Path) -> Iterator[_Item]:
    ordinal = 0
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield _Item(str(lineno), lineno, ordinal, partial(_parse_line, path, lineno, line))
                ordinal += 1


def _load_json_array(path: Path) -> list[Any] | None:
    """The records of a file holding one JSON array; None when the file is JSON lines of arrays."""
    with open(path, encoding="utf-8-sig") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            if e.msg == "Extra data":  # several JSON values: one per line
                return None
            raise DatasetFormatError(path, e.lineno, f"not valid JSON ({e.msg}, column {e.colno})") from e
    if not isinstance(data, list):
        raise DatasetFormatError(path, None, f"expected a JSON array of records, found {type(data).__name__}")
    return data


def _json_records(path: Path) -> Iterator[_Item]:
    """A JSON array (parsed whole, now) or JSON lines (streamed), whichever the file holds."""
    data = _load_json_array(path) if _first_char(path) == "[" else None
    if data is None:
        return _json_lines(path)
    return (_Item(f"record {i}", i, i, partial(_identity, record)) for i, record in enumerate(data))


def _identity(value: Any) -> Any:
    return value


def _examples(path: Path, items: Iterable[_Item], convert: Callable[[Any, _Item], list[Example]],
              config: ReadConfig) -> Iterator[Example]:
    skipped = 0
    for item in items:
        try:
            examples = convert(item.load(), item)
        except DatasetFormatError as e:
            if config.on_error == "raise":
                raise
            skipped += 1
            logger.warning("skipping: %s", e)
            continue
        yield from examples
    if skipped:
        logger.warning("%s: skipped %d malformed record(s)", path, skipped)


# ----------------------------------------------------------------------------- field checks


def _need_str(path: Path, where: str, record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in record else f"{value!r}"
        raise DatasetFormatError(path, where, f"field {key!r} must be a non-empty string, got {got}")
    return value


def _need_object(path: Path, where: str, record: Any, fmt: str) -> Mapping[str, Any]:
    if not isinstance(record, dict):
        raise DatasetFormatError(path, where, f"expected a JSON object, found {type(record).__name__}; "
                                              f"is this really a {fmt} file? (see gemel.datasets.FORMATS)")
    return record


def _check_span(path: Path, where: str, text: str, mention: str, span: tuple[Any, Any] | None) -> None:
    """The mention must occur in the text, or come with valid character offsets into it."""
    if span is not None:
        start, end = span
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in span) and 0 <= start < end <= len(text)
        if not ok:
            raise DatasetFormatError(path, where, f"offsets (start, end)={span!r} of mention {mention!r} do not "
                                                  f"fit a text of {len(text)} characters; fix or drop them")
        return
    if mention not in text:
        raise DatasetFormatError(path, where, f"mention {mention!r} does not occur in the text {text[:80]!r}; "
                                              "fix the mention or give its character offsets start/end")


def _nil(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "nil"))


# ----------------------------------------------------------------------------- images


def _is_url(ref: str) -> bool:
    return bool(_URL_RE.match(ref))


def _relative_to(ref: str, folder: str | Path) -> str:
    """A local relative path resolved against folder; URLs and absolute paths unchanged."""
    if _is_url(ref) or os.path.isabs(ref):
        return ref
    return os.path.normpath(os.path.join(folder, ref))


def _image_in_dir(ref: str, image_dir: str | Path, conventional: str) -> str:
    """The file in image_dir that holds the image `ref` (a URL, a name or a relative path).

    Releases name downloaded images differently (the URL's file name, its md5, MIMIC's ``<stem>.jpg``), so the
    first candidate that exists wins; when none does, ``image_dir/conventional`` is returned.
    """
    name = _basename_of(ref)
    digest = hashlib.md5(ref.encode("utf-8")).hexdigest()
    candidates = [conventional, name, f"{digest}{os.path.splitext(name)[1]}", f"{digest}.jpg",
                  f"{os.path.splitext(name)[0]}.jpg"]
    if not _is_url(ref):
        candidates.insert(0, ref)
    for candidate in candidates:
        if candidate and os.path.isfile(os.path.join(image_dir, candidate)):
            return os.path.normpath(os.path.join(image_dir, candidate))
    return os.path.normpath(os.path.join(image_dir, conventional))


def _basename_of(ref: str) -> str:
    return unquote(urlsplit(ref).path.rsplit("/", 1)[-1]) if _is_url(ref) else os.path.basename(ref)


# ----------------------------------------------------------------------------- our JSONL


def read_jsonl(path: str | Path, image_dir: str | Path | None = None, *,
               on_error: str = "raise") -> Iterator[Example]:
    """Examples of a GEMEL Studio JSON-lines file, streamed.

    A relative ``image`` is resolved against ``image_dir`` (default: the file's folder); optional integer
    ``start``/``end`` give the mention's offsets. Unknown keys (and a ``meta`` object) go to ``Example.meta``.
    """
    path = _existing(path)
    config = ReadConfig(image_dir, on_error)
    base = str(image_dir) if image_dir is not None else str(path.parent)
    return _examples(path, _json_records(path), lambda rec, item: [_from_jsonl(path, rec, item, base)], config)


def _from_jsonl(path: Path, record: Any, item: _Item, base: str) -> Example:
    record = _need_object(path, item.where, record, "jsonl")
    text, mention = _need_str(path, item.where, record, "text"), _need_str(path, item.where, record, "mention")
    span = (record["start"], record["end"]) if "start" in record or "end" in record else None
    _check_span(path, item.where, text, mention, span)
    entity, image = record.get("entity"), record.get("image")
    if entity is not None and (not isinstance(entity, str) or not entity.strip()):
        raise DatasetFormatError(path, item.where, f"entity {entity!r} must be a KB title, or null for NIL")
    if image is not None and (not isinstance(image, str) or not image):
        raise DatasetFormatError(path, item.where, f"image {image!r} must be a path or URL string, or null")
    nested = record.get("meta") or {}
    if not isinstance(nested, dict):
        raise DatasetFormatError(path, item.where, f"meta must be a JSON object, got {nested!r}")
    meta = {k: v for k, v in record.items() if k not in _KNOWN_KEYS and k != "meta"} | nested
    raw_id = record.get("id")
    return Example(text=text, mention=mention, entity=entity, id=str(raw_id if raw_id is not None else item.number),
                   image=_relative_to(image, base) if image else None,
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
    if image and not _is_url(image) and not os.path.isabs(image):
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


# ----------------------------------------------------------------------------- GEMEL preprocessed files


def read_gemel(path: str | Path, image_dir: str | Path | None = None, *,
               on_error: str = "raise") -> Iterator[Example]:
    """Examples of a GEMEL ``train/dev/test.json`` (JSON lines), streamed; NIL (``golden == "NIL"``) -> None.

    ``Example.image`` is the file in ``image_dir`` when given, else the raw ``img_url``/``img_name``;
    ``meta["image_key"]`` always keeps the raw key, the one to look up in `read_clip_features`.
    """
    path = _existing(path)
    config = ReadConfig(image_dir, on_error)
    return _examples(path, _json_records(path), lambda rec, item: [_from_gemel(path, rec, item, config)], config)


def _gemel_entity(path: Path, where: str, record: Mapping[str, Any]) -> str | None:
    if "golden" in record and _nil(record["golden"]):
        return None
    for key in ("target", "answer", "golden"):
        if key in record:
            value = record[key]
            if _nil(value):
                return None
            if not isinstance(value, str):
                raise DatasetFormatError(path, where, f"{key!r} must be the entity name, got {value!r}")
            return value.strip()
    raise DatasetFormatError(path, where, "no entity field: a GEMEL record has 'target' (or 'answer') and 'golden'")


def _from_gemel(path: Path, record: Any, item: _Item, config: ReadConfig) -> Example:
    record = _need_object(path, item.where, record, "gemel")
    text, mention = _need_str(path, item.where, record, "text"), _need_str(path, item.where, record, "mention")
    _check_span(path, item.where, text, mention, None)
    entity = _gemel_entity(path, item.where, record)
    key = record.get("img_name", record.get("img_url"))
    if key is not None and not isinstance(key, str):
        raise DatasetFormatError(path, item.where, f"img_url/img_name must be a string, got {key!r}")
    image = key or None
    if image and config.image_dir is not None:
        image = _image_in_dir(image, config.image_dir, _basename_of(image))
    meta = {k: v for k, v in record.items()
            if k not in ("text", "mention", "target", "answer", "id", "img_url", "img_name")}
    meta["image_key"] = key  # the key of this image in read_clip_features
    raw_id = record.get("id")
    return Example(text=text, mention=mention, entity=entity, image=image, source="gemel", meta=meta,
                   id=str(raw_id if raw_id is not None else item.ordinal))


class ClipFeatures(Mapping[str, np.ndarray]):
    """Read-only view of GEMEL's ``clip_vit_large_patch14_1024.hdf5``: image key -> float32 vector ``(dim,)``.

    Keys are the records' ``img_url`` / ``img_name``. HDF5 treats ``/`` as a group separator, so a URL key is
    stored as nested groups; looking it up with the original string works, and iteration yields HDF5 paths
    (repeated slashes collapsed). Vectors are read on demand; close the file with `close` or a ``with`` block.
    """

    def __init__(self, path: str | Path, dim: int = 1024) -> None:
        import h5py

        if dim < 1:
            raise ValueError(f"dim={dim} must be >= 1 (GEMEL's CLIP ViT-L/14 features have 1024)")
        self.path, self.dim = _existing(path), dim
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            raise DatasetFormatError(self.path, None, f"not an HDF5 file ({e}); expected "
                                                      "clip_vit_large_patch14_1024.hdf5 from the GEMEL data") from e
        self._keys: list[str] | None = None

    def _dataset(self, key: str) -> Any:
        import h5py

        obj = self._file.get(key) if isinstance(key, str) else None
        return obj if isinstance(obj, h5py.Dataset) else None

    def __getitem__(self, key: str) -> np.ndarray:
        dataset = self._dataset(key)
        if dataset is None:
            raise KeyError(f"{key!r} is not in {self.path}; keys are the records' img_url / img_name")
        vector = np.asarray(dataset[()], dtype=np.float32)
        if vector.shape == (1, self.dim):
            vector = vector[0]
        if vector.shape != (self.dim,):
            raise DatasetFormatError(self.path, key, f"feature has shape {vector.shape}, expected ({self.dim},); "
                                                     "pass dim= if the file holds another encoder's features")
        return vector

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._dataset(key) is not None

    def __iter__(self) -> Iterator[str]:
        if self._keys is None:
            import h5py

            names: list[str] = []
            self._file.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            self._keys = names
        return iter(self._keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ClipFeatures:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_clip_features(h5_path: str | Path, dim: int = 1024) -> ClipFeatures:
    """GEMEL's precomputed CLIP image features: a read-only mapping {image key: np.ndarray (dim,)}."""
    return ClipFeatures(h5_path, dim)


# ----------------------------------------------------------------------------- WikiDiverse


def wikipedia_title(url: Any) -> str | None:
    """The page title of a Wikipedia URL (percent-decoded, ``_`` -> space); None for a missing / "nil" URL."""
    if _nil(url):
        return None
    if not isinstance(url, str):
        raise TypeError(f"Wikipedia URL {url!r} is not a string")
    parts = urlsplit(url.strip())
    if "/wiki/" in parts.path:
        raw = parts.path.split("/wiki/", 1)[1]
    else:
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        raw = query.get("title", "")
    title = unquote(raw).replace("_", " ").strip()
    if not title:
        raise ValueError(f"no page title in Wikipedia URL {url!r}; expected https://en.wikipedia.org/wiki/Title")
    return title


def read_wikidiverse(path: str | Path, image_dir: str | Path | None = None, *,
                     on_error: str = "raise") -> Iterator[Example]:
    """One Example per mention of a WikiDiverse annotated file (a JSON array, or one entry per line).

    ``meta`` keeps ``type``, ``topic``, ``start``, ``end``, ``url`` and ``image_url``; ``Example.image`` is the
    local file in ``image_dir`` when given (the URL's file name or its md5, whichever exists), else the URL.
    """
    path = _existing(path)
    config = ReadConfig(image_dir, on_error)
    return _examples(path, _json_records(path), lambda rec, item: _from_wikidiverse(path, rec, item, config), config)


def _from_wikidiverse(path: Path, entry: Any, item: _Item, config: ReadConfig) -> list[Example]:
    if not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[3], list):
        raise DatasetFormatError(path, item.where, "a WikiDiverse entry is [text, image URL, topic, "
                                                   f"[[mention, type, start, end, URL], ...]], got {str(entry)[:120]}")
    text, image_url, topic, mentions = entry
    if not isinstance(text, str) or not text.strip():
        raise DatasetFormatError(path, item.where, f"the text (first element) must be a non-empty string, got {text!r}")
    image = image_url if isinstance(image_url, str) and image_url else None
    if image and config.image_dir is not None:
        image = _image_in_dir(image, config.image_dir, _basename_of(image))
    return [_wikidiverse_mention(path, item, text, m, j, image, {"topic": topic, "image_url": image_url})
            for j, m in enumerate(mentions)]


def _wikidiverse_mention(path: Path, item: _Item, text: str, m: Any, j: int, image: str | None,
                         meta: dict[str, Any]) -> Example:
    where = f"{item.where} mention {j}"
    if not isinstance(m, list) or len(m) not in (4, 5) or not isinstance(m[0], str) or not m[0].strip():
        raise DatasetFormatError(path, where, f"a mention is [mention, type, start, end, Wikipedia URL], got {m!r}")
    mention, mtype, start, end = m[:4]
    url = m[4] if len(m) == 5 else None
    _check_span(path, where, text, mention, (start, end))
    try:
        entity = wikipedia_title(url)
    except (TypeError, ValueError) as e:
        raise DatasetFormatError(path, where, f"{e}; use null or \"nil\" for a NIL mention") from e
    return Example(text=text, mention=mention, entity=entity, image=image, id=f"{item.ordinal}-{j}",
                   source="wikidiverse", meta={**meta, "type": mtype, "start": start, "end": end, "url": url})


# ----------------------------------------------------------------------------- WikiMEL (MIMIC release)


def read_wikimel(path: str | Path, image_dir: str | Path | None = None, *,
                 on_error: str = "raise") -> Iterator[Example]:
    """Examples of WikiMEL as released with MIMIC (JSON array of objects, or JSON lines).

    NIL when ``answer`` is ``"nil"``; ``meta["qid"]`` keeps the Wikidata QID. ``Example.image`` is
    ``image_dir/<stem of imgPath>.jpg`` (MIMIC's convention) when ``image_dir`` is given, else ``imgPath``.
    """
    path = _existing(path)
    config = ReadConfig(image_dir, on_error)
    return _examples(path, _json_records(path), lambda rec, item: [_from_wikimel(path, rec, item, config)], config)


def _wikimel_entity(path: Path, where: str, record: Mapping[str, Any]) -> str | None:
    answer = record.get("answer")
    if _nil(answer):
        return None
    entity = record.get("entities")
    if _nil(entity) or not isinstance(entity, str):
        raise DatasetFormatError(path, where, f"answer {answer!r} has no entity name: 'entities' must be the "
                                              "URL-quoted Wikipedia title (or set answer to \"nil\")")
    return unquote(entity).strip()


def _from_wikimel(path: Path, record: Any, item: _Item, config: ReadConfig) -> Example:
    record = _need_object(path, item.where, record, "wikimel")
    text = _need_str(path, item.where, record, "sentence")
    mention = unquote(_need_str(path, item.where, record, "mentions"))
    _check_span(path, item.where, text, mention, None)
    entity = _wikimel_entity(path, item.where, record)
    img = record.get("imgPath") or None
    if img is not None and not isinstance(img, str):
        raise DatasetFormatError(path, item.where, f"imgPath must be a string ('' for none), got {img!r}")
    if img and config.image_dir is not None:
        img = _image_in_dir(img, config.image_dir, os.path.splitext(_basename_of(img))[0] + ".jpg")
    meta = {k: v for k, v in record.items() if k not in ("sentence", "mentions", "entities", "answer", "id")}
    meta["qid"] = None if _nil(record.get("answer")) else record.get("answer")
    raw_id = record.get("id")
    return Example(text=text, mention=mention, entity=entity, image=img, source="wikimel", meta=meta,
                   id=str(raw_id if raw_id is not None else item.ordinal))


# ----------------------------------------------------------------------------- dispatch


_READERS: dict[str, Callable[..., Iterator[Example]]] = {
    "jsonl": read_jsonl, "gemel": read_gemel, "wikidiverse": read_wikidiverse, "wikimel": read_wikimel}


def _first_value(path: Path) -> Any:
    """The first record of a JSON array or JSON-lines file, without reading the whole file when possible."""
    with open(path, encoding="utf-8-sig") as f:
        body = f.read(_SNIFF_BYTES).lstrip(" \t\r\n")
    if not body:
        raise UnknownFormatError(f"{path}: the file is empty")
    if body[0] not in "[{":
        raise UnknownFormatError(f"{path}: starts with {body[:20]!r}, not JSON; the readers take JSON arrays or "
                                 f"JSON lines in one of the formats {', '.join(FORMATS)}")
    try:
        value = json.JSONDecoder().raw_decode(body)[0]
    except json.JSONDecodeError:  # first value longer than the sniffed head (or broken)
        return _first_element(path, body) if body[0] == "[" else next(_json_lines(path)).load()
    if isinstance(value, list) and value and isinstance(value[0], (dict, list)):
        return value[0]  # an array of records; otherwise the value is itself one record (JSON lines)
    return value


def _first_element(path: Path, body: str) -> Any:
    try:
        return json.JSONDecoder().raw_decode(body[1:].lstrip(" \t\r\n"))[0]
    except json.JSONDecodeError:  # first record itself longer than the head, or broken JSON: parse it all
        data = _load_json_array(path)
        return data[0] if data else None


def _classify(value: Any) -> str | None:
    if isinstance(value, list):
        return "wikidiverse"
    if not isinstance(value, dict):
        return None
    if "sentence" in value and "mentions" in value:
        return "wikimel"
    if any(k in value for k in ("img_url", "img_name", "golden", "target")):
        return "gemel"
    if "text" in value and "mention" in value:
        return "jsonl"
    return None


def detect_format(path: str | Path) -> str:
    """The format of a data file (one of `FORMATS`), from its first record."""
    path = _existing(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise UnknownFormatError(f"{path} is an HDF5 file: read image features with read_clip_features()")
    value = _first_value(path)
    fmt = _classify(value)
    if fmt is None:
        keys = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise UnknownFormatError(
            f"{path}: cannot tell the format from the first record ({keys}). Known formats: jsonl (text, mention, "
            "entity, image), gemel (text, mention, target/golden, img_url/img_name), wikidiverse ([text, image URL, "
            "topic, mentions]), wikimel (sentence, mentions, entities, answer, imgPath). Pass format= to choose.")
    return fmt


def read_dataset(path: str | Path, format: str = "auto", image_dir: str | Path | None = None, *,
                 on_error: str = "raise") -> Iterator[Example]:
    """Examples of any supported data file; ``format="auto"`` sniffs it from the first record."""
    if format != "auto" and format not in _READERS:
        raise ValueError(f"format={format!r} is not one of auto, {', '.join(FORMATS)}")
    fmt = detect_format(path) if format == "auto" else format
    logger.info("reading %s as %s", path, fmt)
    return _READERS[fmt](path, image_dir, on_error=on_error)


# ----------------------------------------------------------------------------- KB builder input


def read_titles(path: str | Path) -> Iterator[tuple[str, str]]:
    """(title, description) pairs of a KB source, streamed: TSV ``title<TAB>description``, JSON lines
    ``{"title", "description"}``, or a plain list of titles (one per line, empty description).

    The kind comes from the extension (.tsv, .jsonl/.json, .txt), else from the first non-blank line.
    """
    path = _existing(path)
    return _iter_titles(path, _titles_kind(path))


def _titles_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".jsonl", ".json"):
        return {"tsv": "tsv", "jsonl": "jsonl", "json": "jsonl"}[suffix[1:]]
    with open(path, encoding="utf-8-sig") as f:
        first = next((line for line in f if line.strip()), "")
    if first.lstrip().startswith("{"):
        return "jsonl"
    return "tsv" if "\t" in first else "plain"


def _iter_titles(path: Path, kind: str) -> Iterator[tuple[str, str]]:
    parse = {"tsv": _title_tsv, "jsonl": _title_json, "plain": _title_plain}[kind]
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield parse(path, lineno, line)


def _title_tsv(path: Path, lineno: int, line: str) -> tuple[str, str]:
    title, _, description = line.partition("\t")
    if not title.strip():
        raise DatasetFormatError(path, lineno, "empty title before the tab; each line is title<TAB>description")
    return title.strip(), description.strip()


def _title_json(path: Path, lineno: int, line: str) -> tuple[str, str]:
    record = _parse_line(path, lineno, line)
    if not isinstance(record, dict) or not isinstance(record.get("title"), str) or not record["title"].strip():
        raise DatasetFormatError(path, lineno, 'each line must be {"title": "...", "description": "..."} '
                                               f"with a non-empty title, got {line[:80]!r}")
    description = record.get("description") or ""
    if not isinstance(description, str):
        raise DatasetFormatError(path, lineno, f"description must be a string, got {description!r}")
    return record["title"].strip(), description.strip()


def _title_plain(path: Path, lineno: int, line: str) -> tuple[str, str]:
    if "\t" in line:
        raise DatasetFormatError(path, lineno, "a tab in a plain list of titles: if the file is "
                                               "title<TAB>description, give it the extension .tsv")
    return line.strip(), ""
