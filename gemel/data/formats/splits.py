"""Official splits of a data set released as one file: `read_split` reads one split of a split file, and the
readers keep only its records (``read_dataset(..., split="splits.json:test")``).

The original WikiMEL release (MELBench's ``Wikidata-MEL.json``) has no split; the one the WikiMEL papers use is
``datasets/WikiMEL/input_data/splits.json`` of github.com/seukgcode/MEL-GHMFC, written by its
``code/data_model/data_split.py``: one JSON object ``{"train": [id, ...], "test": [...], "dev": [...]}`` (17,091 /
4,883 / 2,443 ids, strings) whose ids are the keys of ``Wikidata-MEL.json``. A split is named as ``FILE:NAME``
(``splits.json:test``), on the command line (``--split``) and in Python alike.

A record is in the split when its key (in an object keyed by id) or, in the other layouts, its example's id is
one of the split's ids, or ``<id>-<i>`` for one of them: MEL-GHMFC's and DRIN's one-mention-per-record keys, and
the ``<id>-<j>`` ids the reader gives the mentions of the original release (`Split.owner`). Records outside the
split are not parsed, so a malformed one there does not stop the reading.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemel.data.formats.errors import DatasetError
from gemel.data.formats.files import existing_file, load_json_value
from gemel.types import Example

SPLIT_LAYOUT = '{"train": [id, ...], "dev": [...], "test": [...]} (MEL-GHMFC\'s splits.json)'


@dataclass(frozen=True)
class Split:
    """One split of a split file: its name, the file, and the ids it selects."""

    name: str
    path: Path
    ids: frozenset[str]

    @property
    def spec(self) -> str:
        """``FILE:NAME``, as `read_split` takes it."""
        return f"{self.path}:{self.name}"

    def owner(self, key: str) -> str | None:
        """The id of the split that a record key or example id belongs to: itself, or ``<id>`` of ``<id>-<i>``;
        None when it is outside the split."""
        if key in self.ids:
            return key
        head, sep, _ = key.rpartition("-")
        return head if sep and head in self.ids else None

    def found(self, examples: Iterable[Example]) -> int:
        """How many of the split's ids have at least one of ``examples``."""
        return len({owner for ex in examples if (owner := self.owner(ex.id)) is not None})

    def describe(self, examples: Iterable[Example]) -> str:
        """``split 'test' of splits.json (4883 ids, 4883 read)``: what `gemel eval` and `gemel train`
        print before the counts of the data."""
        n = len(self.ids)
        return f"split {self.name!r} of {self.path.name} ({n} {'id' if n == 1 else 'ids'}, {self.found(examples)} read)"

    def to_dict(self, examples: Iterable[Example]) -> dict[str, Any]:
        """The split as the eval report records it."""
        return {"file": str(self.path), "name": self.name, "ids": len(self.ids), "read": self.found(examples)}


def read_split(spec: str | Path | Split) -> Split:
    """The split ``FILE:NAME`` names (a `Split` is returned as is); raises `DatasetError` saying which names the
    file has when NAME is missing or not one of them, and when FILE is not a split file."""
    if isinstance(spec, Split):
        return spec
    text = str(spec)
    file, sep, name = text.rpartition(":")
    if not sep or not file or os.sep in name or "/" in name:  # no ":NAME" (a Windows drive's colon is no name)
        file, name = text, ""
    path = existing_file(file)
    splits = split_lists(path)
    if splits is None:
        raise DatasetError(f"{path} is not a split file (one JSON object of id lists, {SPLIT_LAYOUT}): give the "
                           "data file as the data and its split file as the split")
    names = ", ".join(splits)
    if not name:
        raise DatasetError(f"{text!r} names no split: add one of the file's splits ({names}), e.g. "
                           f"{path}:{next(iter(splits))}")
    if name not in splits:
        raise DatasetError(f"{path} has no split {name!r}; its splits are {names}: pass e.g. "
                           f"{path}:{next(iter(splits))}")
    return Split(name, path, splits[name])


def split_lists(path: Path) -> dict[str, frozenset[str]] | None:
    """The id lists of a split file by name; None when the file is JSON but no split file. Ids are strings (a
    number is read as its decimal text, as the keys of the data are strings)."""
    return _as_splits(load_json_value(path))


def is_split_value(value: Any) -> bool:
    """A JSON value in the layout of a split file (an object whose values are all lists of ids)."""
    return _as_splits(value) is not None


def _as_splits(value: Any) -> dict[str, frozenset[str]] | None:
    if not isinstance(value, dict) or not value or not all(isinstance(v, list) for v in value.values()):
        return None
    if not all(isinstance(i, (str, int)) and not isinstance(i, bool) for ids in value.values() for i in ids):
        return None
    return {str(name): frozenset(str(i) for i in ids) for name, ids in value.items()}
