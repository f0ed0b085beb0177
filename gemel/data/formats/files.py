"""File access shared by the readers: one data file as a sequence of `Item` records, whatever its JSON layout.

JSON-lines files are streamed; JSON arrays and objects keyed by id (the original WikiMEL release, Richpedia-MEL,
DRIN's WikiMEL files) are parsed whole, then iterated; a keyed record's `Item` keeps its key (`Item.key`), which
is its id and what a split selects (`gemel.data.formats.splits`). Each `Item` parses its record on demand and
carries where it is (``file:line`` or ``file: record N``), so that a malformed record raises `DatasetFormatError`
naming its place (or is skipped, see `gemel.data.formats.records.read_examples`). `gemel.data.readers` sniffs
formats with the same helpers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from gemel.data.formats.errors import DatasetFormatError

SNIFF_BYTES = 1 << 16  # how much of a file's head format sniffing reads


class Item(NamedTuple):
    where: str  # "12" (line) or "record 3" (array index, or key of a keyed object), used in error messages
    number: int  # line number (JSON lines) or record index (JSON array): the default id of our JSONL
    ordinal: int  # 0-based position among the records: the default id of the external data sets
    load: Callable[[], Any]  # parses the record; raises DatasetFormatError
    key: str | None = None  # the record's key in an object keyed by id (None in arrays and JSON lines): its id


def existing_file(path: str | Path) -> Path:
    """``path`` as a `Path`; raises `FileNotFoundError` (saying where relative paths start) when it is no file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; check the path (relative paths start at {os.getcwd()})")
    return path


def first_char(path: Path) -> str:
    """The first character of a file's head after a BOM and blanks ("" when the head is blank)."""
    with open(path, encoding="utf-8") as f:
        head = f.read(SNIFF_BYTES).lstrip("\ufeff \t\r\n")
    return head[:1]


def first_line(path: Path) -> str:
    """The first non-blank line of a file ("" when it has none)."""
    with open(path, encoding="utf-8-sig") as f:
        return next((line for line in f if line.strip()), "")


def parse_line(path: Path, lineno: int, line: str) -> Any:
    """The JSON value of one line; raises `DatasetFormatError` naming ``file:line``."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DatasetFormatError(path, lineno, f"not valid JSON ({e.msg}, column {e.colno}); "
                                               "each line must hold one complete JSON value") from e


def _json_lines(path: Path) -> Iterator[Item]:
    ordinal = 0
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield Item(str(lineno), lineno, ordinal, partial(parse_line, path, lineno, line))
                ordinal += 1


def load_json_value(path: Path) -> Any:
    """The one JSON value of a file; raises `DatasetFormatError` when it is not JSON, or several values."""
    with open(path, encoding="utf-8-sig") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise DatasetFormatError(path, e.lineno, f"not valid JSON ({e.msg}, column {e.colno})") from e


def load_json_array(path: Path) -> list[Any] | None:
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


def is_keyed(value: Any) -> bool:
    """A JSON object of records keyed by id (the original WikiMEL release), not itself a record."""
    return isinstance(value, dict) and bool(value) and all(isinstance(v, dict) for v in value.values())


def _keyed_records(path: Path) -> list[Item] | None:
    """The records of a file holding one JSON object keyed by id; None when the file is JSON lines."""
    try:
        value = json.loads(first_line(path))
    except json.JSONDecodeError:  # one value over several lines, or a broken first line of JSON lines
        try:
            value = load_json_value(path)
        except DatasetFormatError:
            return None  # read as JSON lines: the broken line is reported (or skipped) in its turn
        if not is_keyed(value):
            raise DatasetFormatError(path, None, "one JSON object over several lines that is not keyed by id: "
                                                 "give JSON lines (one record per line), a JSON array of records, "
                                                 "or an object {id: record, ...} (the original WikiMEL release)")
    if not is_keyed(value):
        return None
    return [Item(f"record {key}", i, i, partial(_identity, record), str(key))
            for i, (key, record) in enumerate(value.items())]


def json_records(path: Path) -> Iterable[Item]:
    """A JSON array or keyed object (parsed whole, now) or JSON lines (streamed), whichever the file holds."""
    first = first_char(path)
    data = load_json_array(path) if first == "[" else None
    if data is not None:
        return [Item(f"record {i}", i, i, partial(_identity, record)) for i, record in enumerate(data)]
    keyed = _keyed_records(path) if first == "{" else None
    return keyed if keyed is not None else _json_lines(path)


def _identity(value: Any) -> Any:
    return value
