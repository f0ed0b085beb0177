"""The KB builder's input (`read_titles`): streamed (title, description) pairs of a list of KB titles.

Three layouts: TSV ``title<TAB>description``, JSON lines ``{"title", "description"}``, or a plain list of titles
(one per line, empty description); the layout comes from the extension, else from the first non-blank line. A
malformed line raises `DatasetFormatError` naming ``file:line``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from gemel.data.formats.errors import DatasetFormatError
from gemel.data.formats.files import existing_file, parse_line


def read_titles(path: str | Path) -> Iterator[tuple[str, str]]:
    """(title, description) pairs of a KB source, streamed: TSV ``title<TAB>description``, JSON lines
    ``{"title", "description"}``, or a plain list of titles (one per line, empty description).

    The kind comes from the extension (.tsv, .jsonl/.json, .txt), else from the first non-blank line.
    """
    path = existing_file(path)
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
    record = parse_line(path, lineno, line)
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
