"""Schema migrations: a database created by migration 1 alone, with rows, opens and upgrades."""

from __future__ import annotations

import sqlite3

import pytest
import sqlite_utils

from annotations import SCHEMA_VERSION, SchemaError, Store
from annotations.schema import MIGRATIONS, migrate, user_version
from annotations.validation import input_key

# Migration 1 is frozen: its text must never change once released (append a migration instead).
V1_TABLES = {"inputs", "corrections"}


def v1_database(path) -> None:
    """A database as GEMEL Studio's first schema left it, with rows written by hand."""
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, upto=1) == 1
    key = input_key("Obama in Paris", "Paris", 9, 14, None)
    conn.execute(
        "INSERT INTO inputs (id, input_key, text, mention, mention_start, mention_end, created_at) "
        "VALUES (1, ?, 'Obama in Paris', 'Paris', 9, 14, '2024-01-01T00:00:00.000000+00:00')", (key,))
    for cid, who, when, decision, entity in [
        (1, "alice", "2024-01-01T10:00:00.000000+00:00", "accept", "Paris"),
        (2, "alice", "2024-01-02T10:00:00.000000+00:00", "search", "Paris, Texas"),
        (3, "bob", "2024-01-01T11:00:00.000000+00:00", "nil", None),
    ]:
        conn.execute(
            "INSERT INTO corrections (id, input_id, annotator, created_at, decision, entity, model_entity, "
            "model_candidates, mapper_version) VALUES (?, 1, ?, ?, ?, ?, 'Paris', '[{\"name\": \"Paris\", \"score\": -0.1}]', 'v0')",
            (cid, who, when, decision, entity))
    conn.close()


def test_migration_1_text_is_frozen():
    """Editing a released migration would leave old databases with another schema: append instead."""
    import hashlib

    assert hashlib.sha256(MIGRATIONS[0].encode()).hexdigest() == (
        "b4d3a2a1b0ce652cb9b26f44fea8bd31e2712af4599caca52a4842b3ccf1e537"
    )


def test_v1_database_has_only_the_first_tables(tmp_path):
    v1_database(tmp_path / "old.db")
    db = sqlite_utils.Database(tmp_path / "old.db")
    assert set(db.table_names()) == V1_TABLES
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1


def test_v1_database_opens_upgrades_and_keeps_its_rows(tmp_path):
    v1_database(tmp_path / "old.db")
    store = Store.open(tmp_path / "old.db")
    assert user_version(store.conn) == SCHEMA_VERSION
    input_id = store.find_input("Obama in Paris", "Paris")
    assert [h["id"] for h in store.history(input_id)] == [2, 3, 1]
    assert store.current("alice", input_id)["entity"] == "Paris, Texas"
    assert store.get(1)["candidates"] == [{"name": "Paris", "score": -0.1}]
    assert store.undo("alice", input_id)["id"] == 1  # history from v1 works
    store.record("carol", "search", "Paris", text="Obama in Paris", mention="Paris")
    assert store.stats()["per_annotator"]["carol"] == {"search": 1}
    store.enqueue([{"text": "Obama in Paris", "mention": "Obama"}])  # tables of later migrations work
    assert store.next_item("alice")["mention"] == "Obama"


def test_reopening_applies_nothing(tmp_path):
    Store.open(tmp_path / "a.db").close()
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    assert migrate(conn) == 0 and user_version(conn) == SCHEMA_VERSION


def test_every_migration_is_applied_step_by_step(tmp_path):
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    for version in range(1, len(MIGRATIONS) + 1):
        assert migrate(conn, upto=version) == 1 and user_version(conn) == version


def test_a_newer_database_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "new.db", isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="upgrade GEMEL Studio"):
        Store.open(tmp_path / "new.db")


def test_a_foreign_database_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "other.db")
    conn.execute("CREATE TABLE users (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="not a GEMEL annotation store"):
        Store.open(tmp_path / "other.db")


def test_a_failed_migration_rolls_back(tmp_path, monkeypatch):
    from annotations import schema

    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, "CREATE TABLE broken (;"))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        schema.migrate(conn)
    assert user_version(conn) == 0
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='table'").fetchone()[0] == 0
