"""Readers for multimodal entity-linking data sets; each yields `gemel.types.Example` records.

The layouts are those of the released files, checked against the public code that reads them:

* ``jsonl`` -- GEMEL Studio's own JSON lines: ``{"id"?, "text", "mention", "entity" (null = NIL),
  "image"?, "source"?, ...}``; a relative ``image`` is resolved against the file's folder and every other key
  goes to ``Example.meta``. `write_jsonl` writes the same layout. Its mention must occur in the text unless
  the record is marked ``"verbatim": false`` (people's queries keep the strict check).
* ``gemel`` -- the preprocessed ``data/<dataset>/{train,dev,test}.json`` of the official GEMEL code
  (github.com/HITsz-TMG/GEMEL, ``utils.py``): JSON lines with ``text``, ``mention``, ``target`` (the entity
  name written after ``[Answer]``, the generation target) and ``golden`` (``"NIL"`` marks NIL / out-of-KB
  mentions, which GEMEL drops); the official code reads both, so both are required. The image key is
  ``img_url`` (WikiDiverse) or ``img_name`` (WikiMEL); it indexes ``clip_vit_large_patch14_1024.hdf5``
  (``h5py.File(path)[key][()]``, one CLIP ViT-L/14 vector of 1024 floats), see `read_clip_features`.
* ``wikidiverse`` -- WikiDiverse (github.com/wangxw5/wikiDiverse, README "Data Format" and
  ``eval_cands_recall.py``), in any of its three releases:

  - the annotated data (passage level): a JSON array of ``[text, image URL, topic, [[mention, type, start,
    end, Wikipedia URL], ...]]`` with character offsets ``text[start:end]``; one `Example` per mention;
  - the data with retrieved candidates (``{train,valid,test}_w_10cands.json``, mention level): a JSON array
    of 11-element records ``[text, image URL, mention, type, left-context words, right-context words,
    entity URL, [candidate URL, ...], topic, start, end]``; the candidates' titles go to
    ``meta["candidates"]`` (``gemel eval --candidates from-data`` links among them);
  - MIMIC's re-release (``wiki_diverse_{train,dev,test}.json``): MIMIC's object layout, below; told apart
    from WikiMEL by its file name.

  The entity is the Wikipedia title of the URL (percent-decoding, ``_`` -> space; a stray character before
  ``https``, as in some released URLs, is ignored). The released images (``wikinewsImgs``) are named
  `wikidiverse_image_name`: the md5 of the URL's last path segment, then its extension, ``.svg`` as ``.png``.
* ``wikimel`` -- WikiMEL, in either release:

  - MIMIC's (github.com/pengfei-luo/MIMIC, ``codes/utils/dataset.py``): a JSON array of objects ``{"id",
    "sentence", "mentions", "entities", "answer", "imgPath", ...}``, one mention each; ``mentions`` and
    ``entities`` are URL-quoted (MIMIC calls ``unquote``), ``answer`` is a Wikidata QID or ``"nil"``,
    ``imgPath`` is ``""`` without image, and MIMIC opens ``<folder>/<file name up to its first dot>.jpg``
    (`mimic_image_name`; it converted every image to JPEG);
  - the original (github.com/seukgcode/MELBench, ``Wikidata-MEL.json``): one JSON object keyed by id,
    ``{id: {"id", "sentence", "mentions": [...], "entities": [...], "answer": [QID, ...]}}``, several
    mentions per sentence and no image reference: the image is looked up as ``<id>.jpg`` (or ``.png``,
    ``.jpeg``) in ``image_dir`` (an assumption: the images are not part of the archive).

**Mentions that are not verbatim in their text** (2.9% of WikiMEL's, e.g. "Hermann Beckerath" in "Hermann
von Beckerath."; WikiDiverse's "HDTB" at the offsets of "HDTV") are read as given: the official GEMEL prompt
uses the mention as given and never looks for it in the text. Such an example has ``meta["verbatim"] =
False`` and ``meta["mention_span"] = [start, end]``, the closest span of the text (`locate_mention`), which
`linkable_mention` returns; `gemel eval` and `gemel train` prompt such a mention as given (the official code's
way, `Linker.link(..., verbatim=False)`); the check for people's queries stays strict. Each file's
count is logged; `summarize` gives the counts `gemel eval` and `gemel train` print.

**Images.** With ``image_dir``, ``Example.image`` is the file the data set's convention names there; when it
does not exist the example is text-only (``image`` None, ``meta["image_missing"]`` = the path looked for)
and the file's count of missing images is logged. Without ``image_dir`` the reference is kept as found.

JSON-lines files are streamed; JSON arrays and keyed objects are parsed whole, then iterated. A malformed
record raises `DatasetFormatError` naming ``file:line`` (or ``file:record N``) and the fix, unless
``on_error="skip"``, which logs it and goes on. `read_titles` streams the KB builder's title lists.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import numpy as np

from gemel.errors import GemelError
from gemel.types import Example

logger = logging.getLogger(__name__)

FORMATS = ("jsonl", "gemel", "wikidiverse", "wikimel")
_KNOWN_KEYS = ("id", "text", "mention", "entity", "image", "source")
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_WORD_RE = re.compile(r"\w+")
_IMAGE_STEM_RE = re.compile(r"\S+(?=\.(?:jpe?g|JPE?G|png|PNG|svg|SVG))")  # up to the last known extension
_WIKIDIVERSE_NAME_RE = re.compile(r"wiki_?diverse", re.IGNORECASE)
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
            raise DatasetError(f"on_error={self.on_error!r} is not one of 'raise', 'skip'")
        if self.image_dir is not None and not Path(self.image_dir).is_dir():
            raise DatasetError(f"image_dir={str(self.image_dir)!r} is not a folder: pass the folder that holds "
                             "the images, or None to keep the image references of the file")


class _Item(NamedTuple):
    where: str  # "12" (line) or "record 3" (array index, or key of a keyed object), used in error messages
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


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8-sig") as f:
        return next((line for line in f if line.strip()), "")


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


def _load_json_value(path: Path) -> Any:
    """The one JSON value of a file; raises `DatasetFormatError` when it is not JSON, or several values."""
    with open(path, encoding="utf-8-sig") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise DatasetFormatError(path, e.lineno, f"not valid JSON ({e.msg}, column {e.colno})") from e


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


def _is_keyed(value: Any) -> bool:
    """A JSON object of records keyed by id (the original WikiMEL release), not itself a record."""
    return isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values())


def _keyed_records(path: Path) -> list[_Item] | None:
    """The records of a file holding one JSON object keyed by id; None when the file is JSON lines."""
    try:
        value = json.loads(_first_line(path))
    except json.JSONDecodeError:  # one value over several lines, or a broken first line of JSON lines
        try:
            value = _load_json_value(path)
        except DatasetFormatError:
            return None  # read as JSON lines: the broken line is reported (or skipped) in its turn
        if not _is_keyed(value):
            raise DatasetFormatError(path, None, "one JSON object over several lines that is not keyed by id: "
                                                 "give JSON lines (one record per line), a JSON array of records, "
                                                 "or an object {id: record, ...} (the original WikiMEL release)")
    if not _is_keyed(value):
        return None
    return [_Item(f"record {key}", i, i, partial(_identity, record)) for i, (key, record) in enumerate(value.items())]


def _json_records(path: Path) -> Iterable[_Item]:
    """A JSON array or keyed object (parsed whole, now) or JSON lines (streamed), whichever the file holds."""
    first = _first_char(path)
    data = _load_json_array(path) if first == "[" else None
    if data is not None:
        return [_Item(f"record {i}", i, i, partial(_identity, record)) for i, record in enumerate(data)]
    keyed = _keyed_records(path) if first == "{" else None
    return keyed if keyed is not None else _json_lines(path)


def _identity(value: Any) -> Any:
    return value


def _examples(path: Path, items: Iterable[_Item], convert: Callable[[Any, _Item], list[Example]],
              config: ReadConfig) -> Iterator[Example]:
    counts: Counter[str] = Counter()
    for item in items:
        try:
            examples = convert(item.load(), item)
        except DatasetFormatError as e:
            if config.on_error == "raise":
                raise
            counts["skipped"] += 1
            logger.warning("skipping: %s", e)
            continue
        for example in examples:
            counts["examples"] += 1
            counts["not_verbatim"] += example.meta.get("verbatim") is False
            counts["missing_images"] += "image_missing" in example.meta
            yield example
    _log_counts(path, counts, config)


def _log_counts(path: Path, counts: Counter[str], config: ReadConfig) -> None:
    n = counts["examples"]
    if counts["not_verbatim"]:
        logger.warning("%s: %d of %d mentions do not occur verbatim in their text: read as given, "
                       "meta['mention_span'] is the closest span", path, counts["not_verbatim"], n)
    if counts["missing_images"]:
        logger.warning("%s: %d of %d mentions have no image file in %s (see meta['image_missing'] for the name "
                       "looked for): they are text-only", path, counts["missing_images"], n, config.image_dir)
    if counts["skipped"]:
        logger.warning("%s: skipped %d malformed record(s)", path, counts["skipped"])


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
                                              f"is this really a {fmt} file? (see gemel.data.readers.FORMATS)")
    return record


def _nil(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "nil"))


# ----------------------------------------------------------------------------- mentions


def locate_mention(text: str, mention: str) -> tuple[int, int]:
    """The character span of ``mention`` in ``text``: where it occurs, else where it occurs ignoring case, else
    the shortest run of words from the mention's first word to its last (ignoring case, at most twice its words
    and two more), else the run of words most similar to it (difflib's ratio, ignoring case). "Hermann
    Beckerath" in "Hermann von Beckerath." gives the span of "Hermann von Beckerath"; a text without any word
    gives its whole span."""
    start = text.find(mention)
    if start >= 0:
        return start, start + len(mention)
    found = re.search(re.escape(mention), text, re.IGNORECASE)
    if found:
        return found.span()
    words = [m.span() for m in _WORD_RE.finditer(text)]
    if not words:
        return 0, len(text)
    return _first_to_last_word(text, words, mention) or _closest_words(text, words, mention)


def _first_to_last_word(text: str, words: list[tuple[int, int]], mention: str) -> tuple[int, int] | None:
    """The run of words from the mention's first word to its last (2+ words) holding most of its words, then
    the shortest: "John Fletcher Moulton, Baron Moulton" for "John Fletcher Moulton Baron Moulton"."""
    wanted = [w.lower() for w in _WORD_RE.findall(mention)]
    if len(wanted) < 2:
        return None
    lowered = [text[a:b].lower() for a, b in words]
    runs = [(-len(set(wanted) & set(lowered[i:j + 1])), j - i, i, j) for i, w in enumerate(lowered)
            if w == wanted[0] for j in range(i + 1, min(len(words), i + 2 * len(wanted) + 2))
            if lowered[j] == wanted[-1]]
    if not runs:
        return None
    *_, i, j = min(runs)
    return words[i][0], words[j][1]


def _closest_words(text: str, words: list[tuple[int, int]], mention: str) -> tuple[int, int]:
    n = max(1, len(_WORD_RE.findall(mention)))
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(mention.lower())
    best, best_score = (words[0][0], words[0][1]), -1.0
    for size in range(max(1, n - 1), min(len(words), n + 2) + 1):
        for i in range(len(words) - size + 1):
            span = (words[i][0], words[i + size - 1][1])
            matcher.set_seq1(text[span[0]:span[1]].lower())
            if matcher.real_quick_ratio() > best_score and matcher.quick_ratio() > best_score:
                score = matcher.ratio()
                if score > best_score:
                    best, best_score = span, score
    return best


def linkable_mention(example: Example) -> str:
    """The words of ``example.text`` to give `Linker.link`: the mention when it occurs in the text, else the
    text at ``meta["mention_span"]`` (the closest span; located now when the example does not carry it)."""
    if example.mention in example.text:
        return example.mention
    start, end = example.meta.get("mention_span") or locate_mention(example.text, example.mention)
    return example.text[start:end]


def _mention_meta(path: Path, where: str, text: str, mention: str,
                  offsets: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """``{}`` for a mention verbatim in the text (at its offsets, when given); else ``verbatim: False`` and the
    ``mention_span`` (the offsets, or the closest span). Offsets that do not fit the text are an error."""
    if offsets is not None:
        start, end = offsets
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in offsets) and 0 <= start < end <= len(text)
        if not ok:
            raise DatasetFormatError(path, where, f"offsets (start, end)={tuple(offsets)!r} of mention {mention!r} "
                                                  f"do not fit a text of {len(text)} characters; fix or drop them")
        return {} if text[start:end] == mention else {"verbatim": False, "mention_span": [start, end]}
    if mention in text:
        return {}
    return {"verbatim": False, "mention_span": list(locate_mention(text, mention))}


# ----------------------------------------------------------------------------- images


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


def _is_url(ref: str) -> bool:
    return bool(_URL_RE.match(ref))


def _relative_to(ref: str, folder: str | Path) -> str:
    """A local relative path resolved against folder; URLs and absolute paths unchanged."""
    if _is_url(ref) or os.path.isabs(ref):
        return ref
    return os.path.normpath(os.path.join(folder, ref))


def _basename_of(ref: str) -> str:
    return unquote(urlsplit(ref).path.rsplit("/", 1)[-1]) if _is_url(ref) else os.path.basename(ref)


def _local_image(image_dir: str | Path, names: Sequence[str]) -> tuple[str | None, dict[str, Any]]:
    """The first of ``names`` (the data set's convention first) that exists in image_dir, and ``{}``; when none
    does, None and ``{"image_missing": image_dir/names[0]}``."""
    for name in names:
        if name and os.path.isfile(os.path.join(image_dir, name)):
            return os.path.normpath(os.path.join(image_dir, name)), {}
    return None, {"image_missing": os.path.normpath(os.path.join(image_dir, names[0]))}


def _image(ref: str | None, config: ReadConfig, names: Callable[[str], list[str]]) -> tuple[str | None, dict]:
    """The reference as found without image_dir, else the local file (or None and the name looked for)."""
    if not ref or config.image_dir is None:
        return ref or None, {}
    return _local_image(config.image_dir, names(ref))


def _wikidiverse_names(url: str) -> list[str]:
    return [wikidiverse_image_name(url), _basename_of(url)]


def _mimic_names(img_path: str) -> list[str]:
    return [mimic_image_name(img_path), _basename_of(img_path)]


# ----------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class DataSummary:
    """What a list of examples holds beyond its size: the counts `gemel eval` and `gemel train` print."""

    examples: int  # mentions
    nil: int  # gold NIL mentions
    not_verbatim: int  # mentions not verbatim in their text (meta["verbatim"] is False), read as given
    missing_images: int  # mentions whose image file was not in image_dir (meta["image_missing"]): text-only
    with_candidates: int  # mentions that list their candidates (meta["candidates"])

    def line(self) -> str:
        parts = [f"{self.examples} mentions ({self.nil} gold NIL)",
                 f"{self.not_verbatim} not verbatim in their text (prompted as given, as the official code does)"]
        if self.missing_images:
            parts.append(f"{self.missing_images} without their image file (text-only)")
        if self.with_candidates:
            parts.append(f"{self.with_candidates} with candidates from the data")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def summarize(examples: Iterable[Example]) -> DataSummary:
    """The counts of `DataSummary` over ``examples`` (read from their ``meta``, as the readers set it)."""
    counts: Counter[str] = Counter()
    for ex in examples:
        counts["examples"] += 1
        counts["nil"] += ex.entity is None
        counts["not_verbatim"] += ex.meta.get("verbatim") is False
        counts["missing_images"] += "image_missing" in ex.meta
        counts["with_candidates"] += isinstance(ex.meta.get("candidates"), list)
    return DataSummary(**{f: counts[f] for f in DataSummary.__dataclass_fields__})


# ----------------------------------------------------------------------------- our JSONL


def read_jsonl(path: str | Path, image_dir: str | Path | None = None, *,
               on_error: str = "raise") -> Iterator[Example]:
    """Examples of a GEMEL Studio JSON-lines file, streamed.

    A relative ``image`` is resolved against ``image_dir`` (default: the file's folder); optional integer
    ``start``/``end`` give the mention's offsets. Unknown keys (and a ``meta`` object) go to ``Example.meta``.
    These files hold people's queries too (the demo's review batches), so a mention must occur in its text
    unless the record says ``"verbatim": false`` (as `write_jsonl` writes a data set's mention read as given).
    """
    path = _existing(path)
    config = ReadConfig(image_dir, on_error)
    base = str(image_dir) if image_dir is not None else str(path.parent)
    return _examples(path, _json_records(path), lambda rec, item: [_from_jsonl(path, rec, item, base)], config)


def _from_jsonl(path: Path, record: Any, item: _Item, base: str) -> Example:
    record = _need_object(path, item.where, record, "jsonl")
    text, mention = _need_str(path, item.where, record, "text"), _need_str(path, item.where, record, "mention")
    span = (record.get("start"), record.get("end")) if "start" in record or "end" in record else None
    if span is None and mention not in text and record.get("verbatim") is not False:
        raise DatasetFormatError(path, item.where, f"mention {mention!r} does not occur in the text {text[:80]!r}; "
                                                   "fix the mention, give its character offsets start/end, or mark "
                                                   'the record "verbatim": false (a data set\'s mention, read as given)')
    located = _mention_meta(path, item.where, text, mention, span)
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

    ``Example.image`` is the file in ``image_dir`` when given (``img_url``: `wikidiverse_image_name`;
    ``img_name``: the name itself, or MIMIC's ``.jpg``), else the raw ``img_url``/``img_name``;
    ``meta["image_key"]`` always keeps the raw key (for `read_clip_features`).
    """
    path = _existing(path)
    config = ReadConfig(image_dir, on_error)
    return _examples(path, _json_records(path), lambda rec, item: [_from_gemel(path, rec, item, config)], config)


def _gemel_entity(path: Path, where: str, record: Mapping[str, Any]) -> str | None:
    for key in ("target", "golden"):
        if key not in record:
            raise DatasetFormatError(path, where, f"no {key!r} field: a GEMEL record has 'target' (the entity name "
                                                  "after [Answer]) and 'golden' ('NIL' for NIL), as the official "
                                                  "utils.py reads them")
    target = record["target"]
    if _nil(record["golden"]) or _nil(target):
        return None
    if not isinstance(target, str):
        raise DatasetFormatError(path, where, f"'target' must be the entity name, got {target!r}")
    return target.strip()


def _from_gemel(path: Path, record: Any, item: _Item, config: ReadConfig) -> Example:
    record = _need_object(path, item.where, record, "gemel")
    text, mention = _need_str(path, item.where, record, "text"), _need_str(path, item.where, record, "mention")
    located = _mention_meta(path, item.where, text, mention)
    entity = _gemel_entity(path, item.where, record)
    key = record.get("img_name", record.get("img_url"))
    if key is not None and not isinstance(key, str):
        raise DatasetFormatError(path, item.where, f"img_url/img_name must be a string, got {key!r}")
    names = _wikidiverse_names if "img_name" not in record else (lambda name: [name, mimic_image_name(name)])
    image, found = _image(key, config, names)
    meta = {k: v for k, v in record.items()
            if k not in ("text", "mention", "target", "id", "img_url", "img_name")} | located | found
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
            raise DatasetError(f"dim={dim} must be >= 1 (GEMEL's CLIP ViT-L/14 features have 1024)")
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
    """The page title of a Wikipedia URL (percent-decoded, ``_`` -> space); None for a missing / "nil" URL.

    A stray character before the scheme or brackets around the URL (``nhttps://``, ``]https://``, as in some
    released WikiDiverse records) are ignored.
    """
    if _nil(url):
        return None
    if not isinstance(url, str):
        raise TypeError(f"Wikipedia URL {url!r} is not a string")
    parts = urlsplit(url.strip().strip("[]"))
    if "/wiki/" in parts.path:
        raw = parts.path.split("/wiki/", 1)[1]
    else:
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        raw = query.get("title", "")
    title = unquote(raw).replace("_", " ").strip()
    if not title:
        raise DatasetError(f"no page title in Wikipedia URL {url!r}; expected https://en.wikipedia.org/wiki/Title")
    return title


def read_wikidiverse(path: str | Path, image_dir: str | Path | None = None, *,
                     on_error: str = "raise") -> Iterator[Example]:
    """Examples of a WikiDiverse file: the annotated data (one Example per mention), the data with candidates
    (``*_w_10cands.json``) or MIMIC's re-release (``wiki_diverse_*.json``); a JSON array, or one per line.

    ``meta`` keeps ``type``, ``topic``, ``start``, ``end``, ``url``, ``image_url`` (and ``candidates``, KB
    titles); ``Example.image`` is the local file `wikidiverse_image_name` names in ``image_dir`` when given,
    else the URL.
    """
    path = _existing(path)
    config = ReadConfig(image_dir, on_error)
    return _examples(path, _json_records(path), lambda rec, item: _from_wikidiverse(path, rec, item, config), config)


def _from_wikidiverse(path: Path, entry: Any, item: _Item, config: ReadConfig) -> list[Example]:
    if isinstance(entry, dict):
        return [_from_mimic(path, entry, item, config)]
    if isinstance(entry, list) and len(entry) == 11:
        return [_from_wikidiverse_cands(path, entry, item, config)]
    if not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[3], list):
        raise DatasetFormatError(path, item.where, "a WikiDiverse entry is [text, image URL, topic, [[mention, type, "
                                                   "start, end, URL], ...]] (annotated data) or [text, image URL, "
                                                   "mention, type, left, right, entity URL, candidates, topic, start, "
                                                   f"end] (*_w_10cands.json), got {str(entry)[:120]}")
    text, image_url, topic, mentions = entry
    _need_text(path, item.where, text)
    image, found = _image(image_url if isinstance(image_url, str) else None, config, _wikidiverse_names)
    meta = {"topic": topic, "image_url": image_url} | found
    return [_wikidiverse_mention(path, item, text, m, j, image, meta) for j, m in enumerate(mentions)]


def _need_text(path: Path, where: str, text: Any) -> None:
    if not isinstance(text, str) or not text.strip():
        raise DatasetFormatError(path, where, f"the text (first element) must be a non-empty string, got {text!r}")


def _wikidiverse_mention(path: Path, item: _Item, text: str, m: Any, j: int, image: str | None,
                         meta: dict[str, Any]) -> Example:
    where = f"{item.where} mention {j}"
    if not isinstance(m, list) or len(m) not in (4, 5) or not isinstance(m[0], str) or not m[0].strip():
        raise DatasetFormatError(path, where, f"a mention is [mention, type, start, end, Wikipedia URL], got {m!r}")
    mention, mtype, start, end = m[:4]
    url = m[4] if len(m) == 5 else None
    located = _mention_meta(path, where, text, mention, (start, end))
    entity = _entity_of_url(path, where, url)
    return Example(text=text, mention=mention, entity=entity, image=image, id=f"{item.ordinal}-{j}",
                   source="wikidiverse",
                   meta={**meta, "type": mtype, "start": start, "end": end, "url": url, **located})


def _entity_of_url(path: Path, where: str, url: Any) -> str | None:
    try:
        return wikipedia_title(url)
    except (TypeError, ValueError) as e:
        raise DatasetFormatError(path, where, f"{e}; use null or \"nil\" for a NIL mention") from e


def _from_wikidiverse_cands(path: Path, entry: list[Any], item: _Item, config: ReadConfig) -> Example:
    text, image_url, mention, mtype, _left, _right, url, cands, topic, start, end = entry
    _need_text(path, item.where, text)
    if not isinstance(mention, str) or not mention.strip() or not isinstance(cands, list):
        raise DatasetFormatError(path, item.where, "in a *_w_10cands.json record the mention (third element) is a "
                                                   "non-empty string and the candidates (eighth) a list, got "
                                                   f"{mention!r} and {str(cands)[:60]}")
    located = _mention_meta(path, item.where, text, mention, (start, end))
    image, found = _image(image_url if isinstance(image_url, str) else None, config, _wikidiverse_names)
    meta = {"type": mtype, "topic": topic, "start": start, "end": end, "url": url, "image_url": image_url,
            "candidates": _candidate_titles(path, item.where, cands)} | located | found
    return Example(text=text, mention=mention, entity=_entity_of_url(path, item.where, url), image=image,
                   id=str(item.ordinal), source="wikidiverse", meta=meta)


def _candidate_titles(path: Path, where: str, cands: list[Any]) -> list[str]:
    """KB titles of the candidates (Wikipedia URLs or titles), in order, without repeats or NIL."""
    titles: list[str] = []
    for c in cands:
        if not isinstance(c, str):
            raise DatasetFormatError(path, where, f"candidate {c!r} is not a Wikipedia URL or title")
        title = _entity_of_url(path, where, c) if "/wiki/" in c or _is_url(c) else unquote(c).replace("_", " ").strip()
        if title and not _nil(title) and title not in titles:
            titles.append(title)
    return titles


# ----------------------------------------------------------------------------- WikiMEL (MIMIC's and the original)


def read_wikimel(path: str | Path, image_dir: str | Path | None = None, *,
                 on_error: str = "raise") -> Iterator[Example]:
    """Examples of WikiMEL as released with MIMIC (JSON array of objects, or JSON lines) or originally
    (MELBench's object keyed by id, lists of mentions; one Example per mention, id ``<id>-<j>``).

    NIL when the answer is ``"nil"``; ``meta["qid"]`` keeps the Wikidata QID. With ``image_dir``,
    ``Example.image`` is ``image_dir/`` `mimic_image_name` (MIMIC) or ``image_dir/<id>.jpg`` (original);
    without it, ``imgPath`` (MIMIC) or None (original: no image reference).
    """
    path = _existing(path)
    config = ReadConfig(image_dir, on_error)
    return _examples(path, _json_records(path), lambda rec, item: _from_wikimel(path, rec, item, config), config)


def _from_wikimel(path: Path, record: Any, item: _Item, config: ReadConfig) -> list[Example]:
    record = _need_object(path, item.where, record, "wikimel")
    if isinstance(record.get("mentions"), list):
        return _from_melbench(path, record, item, config)
    return [_from_mimic(path, record, item, config)]


def _mimic_source(path: Path) -> str:
    """MIMIC ships WikiMEL, WikiDiverse (wiki_diverse_*.json) and RichpediaMEL in one layout: the name tells."""
    return "wikidiverse" if _WIKIDIVERSE_NAME_RE.search(path.name) else "wikimel"


def _mimic_entity(path: Path, where: str, record: Mapping[str, Any]) -> str | None:
    answer = record.get("answer")
    if _nil(answer):
        return None
    entity = record.get("entities")
    if _nil(entity) or not isinstance(entity, str):
        raise DatasetFormatError(path, where, f"answer {answer!r} has no entity name: 'entities' must be the "
                                              "URL-quoted Wikipedia title (or set answer to \"nil\")")
    return unquote(entity).strip()


def _from_mimic(path: Path, record: Mapping[str, Any], item: _Item, config: ReadConfig) -> Example:
    text = _need_str(path, item.where, record, "sentence")
    mention = unquote(_need_str(path, item.where, record, "mentions"))
    located = _mention_meta(path, item.where, text, mention)
    entity = _mimic_entity(path, item.where, record)
    img = record.get("imgPath") or None
    if img is not None and not isinstance(img, str):
        raise DatasetFormatError(path, item.where, f"imgPath must be a string ('' for none), got {img!r}")
    image, found = _image(img, config, _mimic_names)
    meta = {k: v for k, v in record.items() if k not in ("sentence", "mentions", "entities", "answer", "id")}
    meta["qid"] = None if _nil(record.get("answer")) else record.get("answer")
    raw_id = record.get("id")
    return Example(text=text, mention=mention, entity=entity, image=image, source=_mimic_source(path),
                   meta=meta | located | found, id=str(raw_id if raw_id is not None else item.ordinal))


def _from_melbench(path: Path, record: Mapping[str, Any], item: _Item, config: ReadConfig) -> list[Example]:
    text = _need_str(path, item.where, record, "sentence")
    columns = [record.get(k) for k in ("mentions", "entities", "answer")]
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
        raise DatasetFormatError(path, item.where, "the original WikiMEL layout has lists 'mentions', 'entities' "
                                                   "and 'answer' (QIDs) of one length, got "
                                                   f"{[len(c) if isinstance(c, list) else c for c in columns]}")
    rid = str(record.get("id", item.ordinal))
    image, found = _image(rid, config, lambda r: [f"{r}.jpg", f"{r}.png", f"{r}.jpeg"])
    image = image if config.image_dir is not None else None  # no image reference without the folder
    return [_melbench_mention(path, f"{item.where} mention {j}", text, m, e, qid, f"{rid}-{j}", image, found)
            for j, (m, e, qid) in enumerate(zip(*columns))]


def _melbench_mention(path: Path, where: str, text: str, mention: Any, entity: Any, qid: Any, eid: str,
                      image: str | None, found: dict[str, Any]) -> Example:
    if not isinstance(mention, str) or not mention.strip():
        raise DatasetFormatError(path, where, f"the mention must be a non-empty string, got {mention!r}")
    if not _nil(qid) and (_nil(entity) or not isinstance(entity, str)):
        raise DatasetFormatError(path, where, f"answer {qid!r} has no entity name in 'entities'")
    meta = {"qid": None if _nil(qid) else qid} | _mention_meta(path, where, text, mention) | found
    return Example(text=text, mention=mention, entity=None if _nil(qid) else entity.strip(), image=image, id=eid,
                   source="wikimel", meta=meta)


# ----------------------------------------------------------------------------- dispatch


_READERS: dict[str, Callable[..., Iterator[Example]]] = {
    "jsonl": read_jsonl, "gemel": read_gemel, "wikidiverse": read_wikidiverse, "wikimel": read_wikimel}


def _first_value(path: Path) -> Any:
    """The first record of a JSON array, keyed object or JSON-lines file, without reading the whole file when
    possible."""
    with open(path, encoding="utf-8-sig") as f:
        body = f.read(_SNIFF_BYTES).lstrip(" \t\r\n")
    if not body:
        raise UnknownFormatError(f"{path}: the file is empty")
    if body[0] not in "[{":
        raise UnknownFormatError(f"{path}: starts with {body[:20]!r}, not JSON; the readers take JSON arrays, "
                                 f"JSON lines or objects keyed by id in one of the formats {', '.join(FORMATS)}")
    try:
        value = json.JSONDecoder().raw_decode(body)[0]
    except json.JSONDecodeError:  # first value longer than the sniffed head (or broken)
        return _first_element(path, body) if body[0] == "[" else _first_member(path, body)
    if isinstance(value, list) and value and isinstance(value[0], (dict, list)):
        return value[0]  # an array of records; otherwise the value is itself one record (JSON lines)
    return next(iter(value.values())) if _is_keyed(value) else value


def _first_element(path: Path, body: str) -> Any:
    try:
        return json.JSONDecoder().raw_decode(body[1:].lstrip(" \t\r\n"))[0]
    except json.JSONDecodeError:  # first record itself longer than the head, or broken JSON: parse it all
        data = _load_json_array(path)
        return data[0] if data else None


def _first_member(path: Path, body: str) -> Any:
    """The first record of a file starting with ``{`` whose first value does not fit the head: a long JSON line,
    or an object keyed by id (``{"id": {record}, ...}``, the original WikiMEL release)."""
    try:
        return json.loads(_first_line(path))  # JSON lines
    except json.JSONDecodeError:
        pass
    decoder, rest = json.JSONDecoder(), body[1:].lstrip(" \t\r\n")
    try:
        key, end = decoder.raw_decode(rest)
        rest = rest[end:].lstrip(" \t\r\n")
        if isinstance(key, str) and rest.startswith(":"):
            return decoder.raw_decode(rest[1:].lstrip(" \t\r\n"))[0]
    except json.JSONDecodeError:  # the first member is longer than the head, or the JSON is broken
        pass
    value = _load_json_value(path)
    return next(iter(value.values())) if _is_keyed(value) else value


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
    """The format of a data file (one of `FORMATS`), from its first record (and, for MIMIC's layout, its name:
    ``wiki_diverse_*.json`` is WikiDiverse)."""
    path = _existing(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise UnknownFormatError(f"{path} is an HDF5 file: read image features with read_clip_features()")
    try:
        value = _first_value(path)
    except DatasetFormatError as e:
        raise UnknownFormatError(f"{e}; the readers take JSON lines, a JSON array of records or one JSON object "
                                 "keyed by id") from e
    fmt = _classify(value)
    if fmt is None:
        keys = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise UnknownFormatError(
            f"{path}: cannot tell the format from the first record ({keys}). Known formats: jsonl (text, mention, "
            "entity, image), gemel (text, mention, target, golden, img_url/img_name), wikidiverse ([text, image URL, "
            "topic, mentions], or 11-element records with candidates), wikimel (sentence, mentions, entities, "
            "answer, imgPath; or the original object keyed by id with lists). Pass format= to choose.")
    return "wikidiverse" if fmt == "wikimel" and _mimic_source(path) == "wikidiverse" else fmt


def read_dataset(path: str | Path, format: str = "auto", image_dir: str | Path | None = None, *,
                 on_error: str = "raise") -> Iterator[Example]:
    """Examples of any supported data file; ``format="auto"`` sniffs it from the first record."""
    if format != "auto" and format not in _READERS:
        raise DatasetError(f"format={format!r} is not one of auto, {', '.join(FORMATS)}")
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
