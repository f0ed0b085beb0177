"""Readers for multimodal entity-linking data sets; each yields `gemel.types.Example` records.

This module holds the entry points: `read_dataset` (any supported file, its format given or sniffed by
`detect_format`), `FORMATS`, the errors, `ReadConfig`, and `summarize` / `DataSummary` (the counts `gemel eval`
and `gemel train` print). The readers themselves live in `gemel.data.formats`, one module per format, with the
layouts of the released files (checked against the public code that reads them) in their docstrings:

* ``jsonl`` -- GEMEL Studio's own JSON lines (`gemel.data.formats.jsonl`: `read_jsonl`, `write_jsonl`);
* ``gemel`` -- the preprocessed files of the official GEMEL code (`gemel.data.formats.gemel_json`:
  `read_gemel`), whose image keys index GEMEL's CLIP features (`gemel.data.formats.clip_features`:
  `read_clip_features`);
* ``wikidiverse`` -- WikiDiverse in any of its three releases (`gemel.data.formats.wikidiverse`:
  `read_wikidiverse`, `wikipedia_title`);
* ``wikimel`` -- WikiMEL in each of its releases (`gemel.data.formats.wikimel`: `read_wikimel`);
* ``richpedia`` -- Richpedia-MEL (`gemel.data.formats.richpedia`: `read_richpedia`).

A data set released as one file is read one split at a time with ``split="FILE:NAME"`` (the official split
file of WikiMEL is MEL-GHMFC's ``splits.json``; `gemel.data.formats.splits`: `read_split`, `Split`).

Shared there: mentions not verbatim in their text, read as given (`gemel.data.formats.mentions`:
`locate_mention`, `linkable_mention`), each data set's image naming and missing images
(`gemel.data.formats.images`), file access and the reading loop (`gemel.data.formats.files`,
`gemel.data.formats.records`). The KB builder's title lists are read by `gemel.data.formats.titles.read_titles`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gemel.data.formats.errors import DatasetError, DatasetFormatError, UnknownFormatError
from gemel.data.formats.files import (SNIFF_BYTES, existing_file, first_char, first_line, is_keyed,
                                      load_json_array, load_json_value)
from gemel.data.formats.gemel_json import read_gemel
from gemel.data.formats.jsonl import read_jsonl
from gemel.data.formats.records import ReadConfig
from gemel.data.formats.richpedia import is_richpedia_record, read_richpedia
from gemel.data.formats.splits import Split, is_split_value, read_split, split_lists
from gemel.data.formats.wikidiverse import read_wikidiverse
from gemel.data.formats.wikimel import mimic_source, read_wikimel
from gemel.types import Example

__all__ = ["FORMATS", "DataSummary", "DatasetError", "DatasetFormatError", "ReadConfig", "Split",
           "UnknownFormatError", "detect_format", "read_dataset", "read_split", "summarize"]

logger = logging.getLogger(__name__)

FORMATS = ("jsonl", "gemel", "wikidiverse", "wikimel", "richpedia")

_READERS: dict[str, Callable[..., Iterator[Example]]] = {
    "jsonl": read_jsonl, "gemel": read_gemel, "wikidiverse": read_wikidiverse, "wikimel": read_wikimel,
    "richpedia": read_richpedia}


def read_dataset(path: str | Path, format: str = "auto", image_dir: str | Path | None = None, *,
                 on_error: str = "raise", split: str | Path | Split | None = None) -> Iterator[Example]:
    """Examples of any supported data file; ``format="auto"`` sniffs it from the first record. ``split``
    (``"splits.json:test"``, or a `Split`) keeps the records of one split of the file (`read_split`)."""
    if format != "auto" and format not in _READERS:
        raise DatasetError(f"format={format!r} is not one of auto, {', '.join(FORMATS)}")
    chosen = read_split(split) if split is not None else None
    fmt = detect_format(path) if format == "auto" else format
    logger.info("reading %s as %s%s", path, fmt, f", split {chosen.spec}" if chosen else "")
    return _READERS[fmt](path, image_dir, on_error=on_error, split=chosen)


# ----------------------------------------------------------------------------- format sniffing


def _first_value(path: Path) -> Any:
    """The first record of a JSON array, keyed object or JSON-lines file, without reading the whole file when
    possible."""
    with open(path, encoding="utf-8-sig") as f:
        body = f.read(SNIFF_BYTES).lstrip(" \t\r\n")
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
    return next(iter(value.values())) if is_keyed(value) else value


def _first_element(path: Path, body: str) -> Any:
    try:
        return json.JSONDecoder().raw_decode(body[1:].lstrip(" \t\r\n"))[0]
    except json.JSONDecodeError:  # first record itself longer than the head, or broken JSON: parse it all
        data = load_json_array(path)
        return data[0] if data else None


def _first_member(path: Path, body: str) -> Any:
    """The first record of a file starting with ``{`` whose first value does not fit the head: a long JSON line,
    or an object keyed by id (``{"id": {record}, ...}``, the original WikiMEL release)."""
    try:
        return json.loads(first_line(path))  # JSON lines
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
    value = load_json_value(path)
    return next(iter(value.values())) if is_keyed(value) else value


def _classify(value: Any) -> str | None:
    if isinstance(value, list):
        return "wikidiverse"
    if not isinstance(value, dict):
        return None
    if "sentence" in value and "mentions" in value:
        return "richpedia" if is_richpedia_record(value) else "wikimel"
    if any(k in value for k in ("img_url", "img_name", "golden", "target")):
        return "gemel"
    if "text" in value and "mention" in value:
        return "jsonl"
    return None


def detect_format(path: str | Path) -> str:
    """The format of a data file (one of `FORMATS`), from its first record (and, for MIMIC's layout, its name:
    ``wiki_diverse_*.json`` is WikiDiverse). A split file is no data file: the error says how to use it."""
    path = existing_file(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise UnknownFormatError(f"{path} is an HDF5 file: read image features with read_clip_features()")
    try:
        value = _first_value(path)
    except DatasetFormatError as e:
        raise UnknownFormatError(f"{e}; the readers take JSON lines, a JSON array of records or one JSON object "
                                 "keyed by id") from e
    _refuse_a_split_file(path, value)
    fmt = _classify(value)
    if fmt is None:
        keys = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise UnknownFormatError(
            f"{path}: cannot tell the format from the first record ({keys}). Known formats: jsonl (text, mention, "
            "entity, image), gemel (text, mention, target, golden, img_url/img_name), wikidiverse ([text, image URL, "
            "topic, mentions], or 11-element records with candidates), wikimel (sentence, mentions, entities, "
            "answer, imgPath; or the original object keyed by id with lists), richpedia (an object keyed by QID of "
            "sentence, mentions, entities, answer). Pass format= to choose.")
    return "wikidiverse" if fmt == "wikimel" and mimic_source(path) == "wikidiverse" else fmt


def _refuse_a_split_file(path: Path, first: Any) -> None:
    """Raises `UnknownFormatError` saying how to use a split file (an object of id lists) given as data."""
    if first_char(path) != "{" or not (isinstance(first, list) or is_split_value(first)):
        return  # an object whose first value is a list is no data layout: a split file, or neither
    try:
        names = list(split_lists(path) or ())
    except DatasetFormatError:  # broken JSON: the generic error below says so
        return
    if names:
        raise UnknownFormatError(f"{path} is a split file (the ids of {', '.join(names)}), not data: read the data "
                                 f"file with split='{path}:{names[0]}' (gemel eval, train, annotations import: "
                                 f"--split {path}:{names[0]})")


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
