"""A built knowledge base on disk, opened without loading it: entries in SQLite, vectors memory-mapped.

`gemel kb build` (:mod:`gemel.kb.build`) writes a folder; :class:`StoredKB` opens it in well under a second
whatever its size, and materialises an :class:`~gemel.kb.entities.Entity` only when asked for one (a query's
candidates, a demonstration, a UI card). Layout (``FORMAT`` version 1):

* ``manifest.json`` -- format, entry count, embedder, dim, index kinds; written last, so a folder without it
  is unfinished (the build works in ``DIR.partial/`` and renames it to ``DIR`` at the end);
* ``entries.sqlite`` -- ``entities(row, title UNIQUE, description, extract, aliases, demo)`` and
  ``names(key, row)``: the case-folded surface name and aliases of every entry, for name look-ups;
* ``vectors.npy`` -- (N, D) float16 embeddings of ``Entity.index_text()``, row order;
* ``demo_vectors.npy`` (M, D) float16 and ``demo_rows.npy`` (M,) int32 -- the KB-derived demonstrations
  (first extract sentence, see :func:`gemel.kb.demonstrations.kb_example`) of the M entries that have one;
* ``index/`` and ``demo_index/`` -- IVF indexes (:mod:`gemel.kb.index`) when there are enough vectors;
* ``trie/`` and ``trie.tokenizer`` -- optional, the prefix tree of the names for one tokenizer.

SQLite here is a read-only file format for the KB, not the annotation database: ``sqlite3`` is imported only
when a built KB is opened, so a linker over a JSON/JSONL KB still loads no database module.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, overload

import numpy as np

from gemel.kb.entities import Entity, KBError, KnowledgeBase
from gemel.kb.index import ExactIndex, IVFIndex
from gemel.text import match_key, name_key

FORMAT = "gemel-kb-store"
VERSION = 1
MANIFEST = "manifest.json"
ENTRIES = "entries.sqlite"
TITLE_SEARCH = "title_search"  # FTS5 trigram index over entities.title: the autocomplete's substring passes
TITLE_KEYS = "title_keys"  # (row, Python's title.lower()): exact and prefix passes, also for non-ASCII letters
PARTIAL = ".partial"


def partial_of(out: Path) -> Path:
    """The folder a build of ``out`` works in until it is complete."""
    return out.with_name(out.name + PARTIAL)


def is_stored_kb(path: Path) -> bool:
    """Whether ``path`` is a complete built KB folder."""
    return path.is_dir() and (path / MANIFEST).is_file()


def check_not_partial(path: Path) -> None:
    """Refuse an unfinished build with a sentence that says how to finish it."""
    unfinished = path.name.endswith(PARTIAL) or (path.is_dir() and (path / ENTRIES).exists()
                                                 and not (path / MANIFEST).exists())
    if not unfinished and not path.exists() and partial_of(path).exists():
        unfinished, path = True, partial_of(path)
    if unfinished:
        raise KBError(f"{str(path)!r} is an unfinished `gemel kb build` (no {MANIFEST}): run the same build "
                      "command again to resume it, or `gemel kb merge` after sharded builds")


def open_kb(path: str | Path, name: str = "kb") -> "KnowledgeBase | StoredKB":
    """A built folder as a :class:`StoredKB`; any other KB file or folder through :meth:`KnowledgeBase.load`."""
    path = Path(path)
    check_not_partial(path)
    return StoredKB(path, name) if is_stored_kb(path) else KnowledgeBase.load(path, name=name)


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise KBError(f"{folder} has no readable {MANIFEST} ({e}): build it with `gemel kb build`") from e
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise KBError(f"{folder}/{MANIFEST} is format {manifest.get('format')!r} v{manifest.get('version')}, not "
                      f"{FORMAT!r} v{VERSION}: build the KB again with this version of gemel")
    return manifest


class StoredKB:
    """A built KB folder with the surface of :class:`~gemel.kb.entities.KnowledgeBase` (``len``, ``in``, ``index``,
    ``get``, ``titles[i]``, ``entities[i]``, ``search``), read lazily from SQLite and memory-mapped arrays."""

    duplicates: list[str] = []  # skipped at build time (the build reported them)

    def __init__(self, folder: str | Path, name: str = "kb") -> None:
        self.folder = Path(folder)
        check_not_partial(self.folder)
        self.manifest = read_manifest(self.folder)
        self.name = name
        self._size = int(self.manifest["entries"])
        import sqlite3  # here, not at the top: a linker over a kb.jsonl KB loads no database module

        self._db = sqlite3.connect(f"file:{self.folder / ENTRIES}?mode=ro", uri=True, check_same_thread=False)
        self._lock = threading.Lock()  # one connection shared by the UI's threads
        self.vectors = np.load(self.folder / "vectors.npy", mmap_mode="r")  # (N, D) float16
        self.demo_vectors = np.load(self.folder / "demo_vectors.npy", mmap_mode="r")  # (M, D) float16
        self.demo_rows = np.load(self.folder / "demo_rows.npy", mmap_mode="r")  # (M,) int32
        if len(self.vectors) != self._size:
            raise KBError(f"{self.folder}: vectors.npy has {len(self.vectors)} rows, the manifest says {self._size}"
                          ": build the KB again")
        self.entity = lru_cache(maxsize=4096)(self._entity)  # type: ignore[method-assign]
        self.entities = _Rows(self, lambda row: self.entity(row), lambda e: e)
        self.titles = _Rows(self, lambda row: self.entity(row).title, lambda e: e.title)
        self._title_search = bool(self._query("SELECT 1 FROM sqlite_master WHERE name = ?", (TITLE_SEARCH,)))
        # a KB indexed before the key table folds titles with SQLite's lower(), which folds ASCII only
        self._title_keys = bool(self._query("SELECT 1 FROM sqlite_master WHERE name = ?", (TITLE_KEYS,)))

    @property
    def embedder(self) -> str:
        """The embedder the vectors were made with (the linker's must be the same)."""
        return str(self.manifest["embedder"])

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _entity(self, row: int) -> Entity:
        found = self._query("SELECT title, description, extract, aliases FROM entities WHERE row = ?", (int(row),))
        if not found:
            raise IndexError(f"row {row} is not in the knowledge base {self.name!r} (0..{self._size - 1})")
        return _to_entity(found[0])

    def __len__(self) -> int:
        return self._size

    def __contains__(self, title: object) -> bool:
        return isinstance(title, str) and bool(self._query("SELECT 1 FROM entities WHERE title = ?", (title,)))

    def __iter__(self) -> Iterator[Entity]:
        """Every entity in row order, read in pages (never all at once)."""
        for lo in range(0, self._size, 10_000):
            rows = self._query("SELECT title, description, extract, aliases FROM entities "
                               "WHERE row >= ? AND row < ? ORDER BY row", (lo, lo + 10_000))
            yield from (_to_entity(r) for r in rows)

    def index(self, title: str) -> int:
        found = self._query("SELECT row FROM entities WHERE title = ?", (title,))
        if not found:
            raise KeyError(f"{title!r} is not an entity of the knowledge base {self.name!r}")
        return int(found[0][0])

    def get(self, title: str) -> Entity | None:
        return self.entity(self.index(title)) if title in self else None

    def rows_named(self, name: str, limit: int = 8) -> list[int]:
        """Rows whose surface name or an alias is ``name`` (case-folded, a plural as its singular:
        :func:`gemel.text.match_key`; a KB built before keys its names as written (:func:`gemel.text.name_key`),
        which the second key finds, and where a plural mention still finds a singular name), first rows first."""
        found = self._query("SELECT DISTINCT row FROM names WHERE key IN (?, ?) ORDER BY row LIMIT ?",
                            (name_key(name), match_key(name), limit))
        return [int(r[0]) for r in found]

    def search(self, query: str, limit: int = 10) -> list[str]:
        """Titles for an autocomplete box: exact, then prefix, then word-prefix, then substring matches (as
        :meth:`KnowledgeBase.search`). A KB built with its title index (:func:`add_title_search`) answers each
        pass from an index (1M titles: milliseconds); an older one scans the table for every pass after the
        first (100k titles: 66-207 ms per query)."""
        q = " ".join(query.lower().split())
        if not q:
            return []
        like = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        out: list[str] = []
        for n, pattern in enumerate((like, f"{like}%", f"% {like}%", f"%{like}%")):
            rows = self._query(*self._search_sql(n, q, pattern, limit + len(out)))
            out.extend(t for (t,) in rows if t not in out)
            if len(out) >= limit:
                break
        return out[:limit]

    def _search_sql(self, n: int, q: str, pattern: str, limit: int) -> tuple[str, tuple]:
        """The SQL of search pass ``n`` (0 exact, 1 prefix, 2 word prefix, 3 substring): the same matches
        with or without the title index, since the indexed passes keep the LIKE test as a filter. Titles are
        compared lower-cased as Python does (the key table), or with SQLite's ASCII-only lower() in a KB
        indexed before it."""
        order = "ORDER BY length(e.title), e.row LIMIT ?"  # ties in KB order, as KnowledgeBase.search
        if self._title_keys:
            rows, key = f"entities e JOIN {TITLE_KEYS} k ON k.row = e.row", "k.key"
        else:
            rows, key = "entities e", "lower(e.title)"
        if self._title_search and n == 0:
            return f"SELECT e.title FROM {rows} WHERE {key} = ? {order}", (q, limit)
        if self._title_search and n == 1:  # a range on the key's index
            return f"SELECT e.title FROM {rows} WHERE {key} >= ? AND {key} < ? {order}", (q, q + "\U0010ffff", limit)
        if self._title_search and len(q) >= 3:  # trigrams find the candidates, LIKE keeps the exact rule
            return (f"SELECT e.title FROM {rows} WHERE e.row IN (SELECT rowid FROM {TITLE_SEARCH} WHERE "
                    f"{TITLE_SEARCH} MATCH ?) AND {key} LIKE ? ESCAPE '\\' {order}",
                    ('"' + q.replace('"', '""') + '"', pattern, limit))
        return f"SELECT e.title FROM {rows} WHERE {key} LIKE ? ESCAPE '\\' {order}", (pattern, limit)

    def vector_index(self) -> "ExactIndex | IVFIndex":
        """The entries' search index: IVF when the manifest names one, else exact over the vectors."""
        return IVFIndex(self.folder / "index") if self.manifest["index"]["kind"] == "ivf" \
            else ExactIndex(self.vectors)

    def demo_index(self) -> "ExactIndex | IVFIndex":
        """The KB demonstrations' search index (ids are positions in ``demo_rows``)."""
        return IVFIndex(self.folder / "demo_index") if self.manifest["demo_index"]["kind"] == "ivf" \
            else ExactIndex(self.demo_vectors)


def add_title_search(db: Any) -> bool:
    """Index an entries database's titles for :meth:`StoredKB.search`: a key table of lower-cased titles (as
    Python lower-cases them: 'ÉCOLE' -> 'école', which SQLite's lower() leaves) with an index (exact and prefix
    passes), and an FTS5 trigram table (word-prefix and substring passes; it folds non-ASCII case itself).
    False, and nothing written, where this SQLite has no FTS5: the search then scans the table as before."""
    import sqlite3

    try:
        db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {TITLE_SEARCH} USING fts5(title, content='entities', "
                   "content_rowid='row', tokenize='trigram')")
    except sqlite3.OperationalError:
        return False
    db.execute(f"INSERT INTO {TITLE_SEARCH}({TITLE_SEARCH}) VALUES('rebuild')")
    db.execute(f"DROP TABLE IF EXISTS {TITLE_KEYS}")
    db.execute(f"CREATE TABLE {TITLE_KEYS} (row INTEGER PRIMARY KEY, key TEXT NOT NULL)")
    titles = db.execute("SELECT row, title FROM entities ORDER BY row")
    while batch := titles.fetchmany(65_536):
        db.executemany(f"INSERT INTO {TITLE_KEYS} VALUES (?, ?)", [(r, t.lower()) for r, t in batch])
    db.execute(f"CREATE INDEX {TITLE_KEYS}_key ON {TITLE_KEYS}(key)")
    db.execute("DROP INDEX IF EXISTS entities_lower_title")  # the key table's index replaces it
    db.commit()
    return True


def _to_entity(rec: tuple) -> Entity:
    title, description, extract, aliases = rec
    return Entity(title, description, extract, tuple(json.loads(aliases)) if aliases else ())


class _Rows(Sequence):
    """A read-only sequence over a StoredKB's rows that materialises one item per access."""

    def __init__(self, kb: StoredKB, item, of_entity) -> None:
        self._kb, self._item, self._of_entity = kb, item, of_entity

    def __len__(self) -> int:
        return len(self._kb)

    def __iter__(self) -> Iterator:
        return (self._of_entity(e) for e in self._kb)

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._item(j) for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        return self._item(i)
