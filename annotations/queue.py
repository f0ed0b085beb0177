"""The review queue: pending inputs served to each annotator, least certain prediction first.

Uncertainty sampling (Lewis & Gale 1994; "margin sampling", Scheffer et al. 2001): the items whose
two best candidates have the closest scores are the ones where a correction teaches the model most.
Order of an annotator's queue:

1. items with a prediction and >= 2 scored candidates, smallest margin (score[0] - score[1]) first;
2. items with a prediction but fewer than 2 scored candidates (no margin to rank by);
3. items without a prediction: they carry no uncertainty signal, so they come last;
4. items this annotator skipped, oldest skip first (a skip moves an item to the end, it is not lost).

Ties keep import order. An item leaves an annotator's queue once that annotator has a live (not
undone) decision on its input, whoever imported it. Each annotator has a cursor (the item being
shown), so a page reload or newly imported items do not change the item under their eyes.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ._db import one, rows
from .errors import NotFoundError

_DECIDED = """EXISTS (SELECT 1 FROM corrections c
    WHERE c.input_id = q.input_id AND c.annotator = :annotator AND c.undone_at IS NULL)"""

_ITEMS = f"""
SELECT q.id AS item_id, q.input_id, q.batch, q.model_entity, q.model_candidates, q.profile,
       q.mapper_version, q.has_prediction, q.margin, q.model_extra, i.text, i.mention, i.mention_start,
       i.mention_end, i.image_path, i.image_sha256, s.skipped_at
FROM queue_items q JOIN inputs i ON i.id = q.input_id
LEFT JOIN queue_skips s ON s.item_id = q.id AND s.annotator = :annotator
WHERE NOT {_DECIDED} AND (:item_id IS NULL OR q.id = :item_id)
ORDER BY s.skipped_at IS NOT NULL, s.skipped_at, q.has_prediction = 0, q.margin IS NULL, q.margin, q.id
LIMIT 1
"""


def upsert_item(conn: sqlite3.Connection, input_id: int, batch: str | None, prediction: dict[str, Any], now: str) -> int:
    """Add the input to the queue (a second import only refreshes a given prediction); return item id."""
    conn.execute(
        """INSERT INTO queue_items (input_id, batch, model_entity, model_candidates, profile,
               mapper_version, has_prediction, margin, model_extra, created_at)
           VALUES (:input_id, :batch, :model_entity, :model_candidates, :profile, :mapper_version,
                   :has_prediction, :margin, :model_extra, :now)
           ON CONFLICT (input_id) DO UPDATE SET
               model_entity = excluded.model_entity, model_candidates = excluded.model_candidates,
               profile = excluded.profile, mapper_version = excluded.mapper_version,
               has_prediction = 1, margin = excluded.margin, model_extra = excluded.model_extra
           WHERE excluded.has_prediction = 1""",
        {"input_id": input_id, "batch": batch, "now": now, **prediction},
    )
    return int(conn.execute("SELECT id FROM queue_items WHERE input_id = ?", (input_id,)).fetchone()[0])


def pending_item(conn: sqlite3.Connection, annotator: str, item_id: int | None = None) -> dict[str, Any] | None:
    """The first pending item of `annotator` (or item `item_id` if it is pending for them)."""
    return one(conn, _ITEMS, {"annotator": annotator, "item_id": item_id})


def cursor_item_id(conn: sqlite3.Connection, annotator: str) -> int | None:
    row = conn.execute("SELECT item_id FROM queue_cursors WHERE annotator = ?", (annotator,)).fetchone()
    return None if row is None else row[0]


def set_cursor(conn: sqlite3.Connection, annotator: str, item_id: int | None, now: str) -> None:
    conn.execute(
        """INSERT INTO queue_cursors (annotator, item_id, updated_at) VALUES (?, ?, ?)
           ON CONFLICT (annotator) DO UPDATE SET item_id = excluded.item_id, updated_at = excluded.updated_at""",
        (annotator, item_id, now),
    )


def next_item(conn: sqlite3.Connection, annotator: str, now: str) -> dict[str, Any] | None:
    """The item under the annotator's cursor if still pending and not skipped, else the next one."""
    cursor = cursor_item_id(conn, annotator)
    if cursor is not None:
        row = pending_item(conn, annotator, cursor)
        if row is not None and row["skipped_at"] is None:
            return row
    row = pending_item(conn, annotator)
    new_cursor = None if row is None else row["item_id"]
    if new_cursor != cursor:
        set_cursor(conn, annotator, new_cursor, now)
    return row


def item(conn: sqlite3.Connection, item_id: int) -> dict[str, Any]:
    """One queue item with its input, whoever decided it; NotFoundError if there is none."""
    row = one(
        conn,
        """SELECT q.id AS item_id, q.input_id, q.batch, q.model_entity, q.model_candidates, q.profile,
                  q.mapper_version, q.has_prediction, q.margin, q.model_extra, i.text, i.mention, i.mention_start,
                  i.mention_end, i.image_path, i.image_sha256, NULL AS skipped_at
           FROM queue_items q JOIN inputs i ON i.id = q.input_id WHERE q.id = ?""",
        (item_id,),
    )
    if row is None:
        raise NotFoundError(f"queue item {item_id} does not exist; take ids from store.next_item()")
    return row


def skip(conn: sqlite3.Connection, annotator: str, item_id: int | None, now: str) -> int:
    """Move an item (default: the one under the cursor) to the end of the annotator's queue."""
    if item_id is None:
        current = next_item(conn, annotator, now)
        if current is None:
            raise NotFoundError(f"the queue of {annotator!r} is empty; there is no item to skip")
        item_id = current["item_id"]
    item(conn, item_id)  # raises NotFoundError
    conn.execute(
        "INSERT OR REPLACE INTO queue_skips (annotator, item_id, skipped_at) VALUES (?, ?, ?)",
        (annotator, item_id, now),
    )
    set_cursor(conn, annotator, None, now)
    return item_id


def progress(conn: sqlite3.Connection, annotator: str) -> dict[str, int]:
    """Counts for one annotator: total items, done (decided), skipped (and not done), left."""
    counts = rows(
        conn,
        f"""SELECT COUNT(*) AS total,
                   COALESCE(SUM({_DECIDED}), 0) AS done,
                   COALESCE(SUM(s.item_id IS NOT NULL AND NOT {_DECIDED}), 0) AS skipped
            FROM queue_items q
            LEFT JOIN queue_skips s ON s.item_id = q.id AND s.annotator = :annotator""",
        {"annotator": annotator},
    )[0]
    counts["left"] = counts["total"] - counts["done"]
    return {k: int(v) for k, v in counts.items()}
