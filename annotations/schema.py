"""The store's SQLite schema, as an ordered list of migrations.

The schema version lives in `PRAGMA user_version` (0 = empty database). Migration *i* takes a
database at version *i-1* to version *i*; `migrate` applies the missing ones inside one
`BEGIN IMMEDIATE` transaction, so two processes opening a new database at once cannot both apply
them. A migration, once released, is never edited: a change of schema is a new migration appended
to `MIGRATIONS`, and `tests/test_annotations_migrations.py` keeps checking that a database created
by migration 1 alone still opens. (The idea is the one of Django / Alembic migrations, reduced to
`user_version`, as sqlite-utils' own `sqlite-migrate` does.)

The tables are plain (TEXT/INTEGER/REAL, JSON stored as TEXT) so the file opens in Datasette as is.
"""

from __future__ import annotations

import logging
import sqlite3

from .errors import SchemaError

logger = logging.getLogger(__name__)

# Migration 1 (GEMEL Studio 0.1): inputs and the history of corrections.
_V1 = """
CREATE TABLE inputs (
    id INTEGER PRIMARY KEY,
    input_key TEXT NOT NULL UNIQUE,      -- sha256 of [text, mention, start, end, image_sha256]
    text TEXT NOT NULL,                  -- caption, stored exactly as given
    mention TEXT NOT NULL,
    mention_start INTEGER NOT NULL,      -- Python str offsets (code points): text[start:end] == mention
    mention_end INTEGER NOT NULL,
    image_sha256 TEXT,                   -- NULL = text only
    image_path TEXT,                     -- relative to the database folder: images/<sha256>.<ext>
    created_at TEXT NOT NULL             -- UTC ISO 8601
);
CREATE TABLE corrections (
    id INTEGER PRIMARY KEY,
    input_id INTEGER NOT NULL REFERENCES inputs(id),
    annotator TEXT NOT NULL,
    created_at TEXT NOT NULL,            -- UTC ISO 8601
    decision TEXT NOT NULL CHECK (decision IN ('accept', 'candidate', 'search', 'nil', 'more_context')),
    entity TEXT,                         -- NULL for nil / more_context
    comment TEXT,
    model_entity TEXT,                   -- what the model said (NULL = NIL or no prediction)
    model_candidates TEXT,               -- JSON list of {"name", "score", ...}, best first
    profile TEXT,
    mapper_version TEXT,
    undone_at TEXT                       -- set by undo; the row stays as history
);
CREATE INDEX corrections_by_input_annotator ON corrections (input_id, annotator, id);
CREATE INDEX corrections_by_annotator ON corrections (annotator, id);
"""

# Migration 2 (GEMEL Studio 0.1): the review queue; "latest" by time (so an import of older decisions
# does not override newer ones), with its index and views for Datasette and the queries.
_V2 = """
CREATE TABLE queue_items (
    id INTEGER PRIMARY KEY,
    input_id INTEGER NOT NULL UNIQUE REFERENCES inputs(id),
    batch TEXT,                          -- free label of the import batch
    model_entity TEXT,
    model_candidates TEXT,               -- JSON, as in corrections
    profile TEXT,
    mapper_version TEXT,
    has_prediction INTEGER NOT NULL DEFAULT 0,
    margin REAL,                         -- score[0] - score[1]; NULL when < 2 candidates
    created_at TEXT NOT NULL
);
CREATE INDEX queue_items_order ON queue_items (margin, id);
CREATE TABLE queue_skips (
    annotator TEXT NOT NULL,
    item_id INTEGER NOT NULL REFERENCES queue_items(id),
    skipped_at TEXT NOT NULL,
    PRIMARY KEY (annotator, item_id)
);
CREATE TABLE queue_cursors (
    annotator TEXT PRIMARY KEY,
    item_id INTEGER REFERENCES queue_items(id),
    updated_at TEXT NOT NULL
);
CREATE INDEX corrections_latest ON corrections (input_id, annotator, created_at, id);
-- the current decision of an annotator on an input: the latest live one, by time then id
CREATE VIEW current_decisions AS
    SELECT c.* FROM corrections c
    WHERE c.undone_at IS NULL AND c.id = (
        SELECT c2.id FROM corrections c2
        WHERE c2.input_id = c.input_id AND c2.annotator = c.annotator AND c2.undone_at IS NULL
        ORDER BY c2.created_at DESC, c2.id DESC LIMIT 1
    );
CREATE VIEW current_decisions_with_input AS
    SELECT d.id, d.annotator, d.created_at, d.decision, d.entity, d.comment, d.model_entity,
           d.profile, d.mapper_version, i.text, i.mention, i.mention_start, i.mention_end,
           i.image_path, i.image_sha256, d.input_id
    FROM current_decisions d JOIN inputs i ON i.id = d.input_id;
"""

# what Review shows of an item besides its candidates: the explanation in words, how the picture took part, the
# demonstrations and timings (JSON of the rest of `Prediction.to_dict()`; NULL for items queued before)
_V3 = """
ALTER TABLE queue_items ADD COLUMN model_extra TEXT;
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version stored in the database (0 for a new, empty one)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> int:
    """Apply the missing migrations up to version `upto` (default: the latest); return how many.

    `conn` must be in autocommit mode (`isolation_level=None`); the caller retries on "database is
    locked". Raises `SchemaError` for a database newer than this code.
    """
    latest = len(MIGRATIONS)
    upto = latest if upto is None else upto
    if not 0 <= upto <= latest:
        raise ValueError(f"upto={upto} is not a schema version; use 0..{latest}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = user_version(conn)
        _check_known(conn, current, latest)
        for version in range(current + 1, upto + 1):
            _apply(conn, version)
        conn.execute(f"PRAGMA user_version = {max(current, upto)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return max(0, upto - current)


def _check_known(conn: sqlite3.Connection, current: int, latest: int) -> None:
    if current > latest:
        raise SchemaError(
            f"the database has schema version {current} but this GEMEL Studio knows versions up to "
            f"{latest}; upgrade GEMEL Studio (pip install -U gemel-studio) to open it"
        )
    if current == 0:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        if tables:
            raise SchemaError(
                f"the database already holds tables {sorted(tables)} that are not a GEMEL annotation "
                "store; choose another path (--db / $GEMEL_DB)"
            )


def _apply(conn: sqlite3.Connection, version: int) -> None:
    logger.info("applying annotation store migration %d", version)
    for statement in _statements(MIGRATIONS[version - 1]):
        conn.execute(statement)


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit our transaction)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {buffer.strip()[:80]!r}")
    return statements
