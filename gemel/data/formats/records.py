"""What every reader shares between parsing a record and yielding its `gemel.types.Example`s: `ReadConfig`, the
reading loop `read_examples` and the field checks.

A malformed record raises `DatasetFormatError` naming ``file:line`` (or ``file:record N``) and the fix, unless
``on_error="skip"``, which logs it and goes on. A record the release itself leaves blank (`BlankRecord`:
Richpedia-MEL's ``Q79179``, whose mention is ``"\n\n"``) is skipped in either mode, with its key logged. With a
split (``ReadConfig.split``, `gemel.data.formats.splits`) only the split's records are read. When a file is read
through, its counts of mentions not verbatim in their text, of missing image files and of skipped records are
logged, under the ``gemel.data.readers`` logger (that of the public entry points, as before the readers were
split into modules).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemel.data.formats.errors import DatasetError, DatasetFormatError
from gemel.data.formats.files import Item
from gemel.data.formats.splits import Split
from gemel.types import Example

logger = logging.getLogger("gemel.data.readers")


@dataclass(frozen=True)
class ReadConfig:
    image_dir: str | Path | None = None  # folder of the image files; None keeps image references as found
    on_error: str = "raise"  # "raise": stop at the first malformed record; "skip": log it and go on
    split: Split | None = None  # read only the records of this split (gemel.data.formats.splits); None: all

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise DatasetError(f"on_error={self.on_error!r} is not one of 'raise', 'skip'")
        if self.image_dir is not None and not Path(self.image_dir).is_dir():
            raise DatasetError(f"image_dir={str(self.image_dir)!r} is not a folder: pass the folder that holds "
                             "the images, or None to keep the image references of the file")


class BlankRecord(DatasetFormatError):
    """A record that the release itself leaves blank (e.g. a mention of only white space): there is nothing to
    link, so `read_examples` skips it whatever ``on_error`` says, and logs its place (its key)."""


def read_examples(path: Path, items: Iterable[Item], convert: Callable[[Any, Item], list[Example]],
                  config: ReadConfig) -> Iterator[Example]:
    """The examples ``convert`` makes of each record (of ``config.split`` only, when given), malformed ones
    raised or skipped (``config.on_error``), blank ones skipped; the file's counts are logged once it is read
    through. A split of which no record is in the file raises `DatasetError` then."""
    counts: Counter[str] = Counter()
    blank: list[str] = []
    found: set[str] = set()  # the split's ids that are records of the file
    for item in items:
        if config.split is not None and item.key is not None:
            owner = config.split.owner(item.key)
            if owner is None:
                continue  # outside the split: not even parsed
            found.add(owner)
        try:
            examples = convert(item.load(), item)
        except BlankRecord as e:
            blank.append(item.where)
            logger.warning("skipping: %s", e)
            continue
        except DatasetFormatError as e:
            if config.on_error == "raise":
                raise
            counts["skipped"] += 1
            logger.warning("skipping: %s", e)
            continue
        if config.split is not None and item.key is None:  # JSON arrays and lines: the examples' ids decide
            owners = [config.split.owner(ex.id) for ex in examples]
            examples = [ex for ex, owner in zip(examples, owners) if owner is not None]
            found.update(owner for owner in owners if owner is not None)
        for example in examples:
            counts["examples"] += 1
            counts["not_verbatim"] += example.meta.get("verbatim") is False
            counts["missing_images"] += "image_missing" in example.meta
            yield example
    _log_counts(path, counts, config)
    if blank:
        logger.warning("%s: skipped %d record(s) that the data set leaves blank: %s", path, len(blank),
                       ", ".join(blank[:10]) + (", ..." if len(blank) > 10 else ""))
    if config.split is not None:
        _check_split(path, config.split, found)


def _check_split(path: Path, split: Split, found: set[str]) -> None:
    """Raises when no record of the split is in the file; logs how many of its ids are not."""
    if not found:
        raise DatasetError(f"{path}: none of the {len(split.ids)} ids of split {split.name!r} ({split.path}) is a "
                           f"record of this file: give the split file that goes with this data file")
    missing = sorted(split.ids - found)
    if missing:
        logger.warning("%s: %d of the %d ids of split %r (%s) are not records of this file (first: %s)", path,
                       len(missing), len(split.ids), split.name, split.path, ", ".join(missing[:5]))


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


def need_str(path: Path, where: str, record: Mapping[str, Any], key: str) -> str:
    """``record[key]``, which must be a non-empty string."""
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in record else f"{value!r}"
        raise DatasetFormatError(path, where, f"field {key!r} must be a non-empty string, got {got}")
    return value


def need_object(path: Path, where: str, record: Any, fmt: str) -> Mapping[str, Any]:
    """``record``, which must be a JSON object (a record of format ``fmt``)."""
    if not isinstance(record, dict):
        raise DatasetFormatError(path, where, f"expected a JSON object, found {type(record).__name__}; "
                                              f"is this really a {fmt} file? (see gemel.data.readers.FORMATS)")
    return record


def is_nil(value: Any) -> bool:
    """A NIL (or missing) entity: None, ``""`` or ``"nil"`` (any case, surrounding blanks ignored)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "nil"))
