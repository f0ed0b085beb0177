"""Low-level SQLite helpers: dict rows, and retry with backoff on "database is locked".

Several processes (Gradio workers, the CLI, the load benchmark) write one store. SQLite lets one
writer in at a time; the others wait in SQLite's busy handler (`PRAGMA busy_timeout`) and, if that
runs out, get `sqlite3.OperationalError: database is locked`. `retry` catches exactly that error and
tries again with jittered exponential backoff, so it never reaches a caller before `max_wait_s`
(then `StoreBusyError`). Writes start with `BEGIN IMMEDIATE`, which takes the write lock up front:
a transaction that first reads and then writes cannot then fail half-way with SQLITE_BUSY.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .errors import StoreBusyError

logger = logging.getLogger(__name__)

T = TypeVar("T")

_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)
_BUSY_WORDS = ("database is locked", "database table is locked", "database is busy")


def rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
    """Run a parameterised query and return its rows as dicts."""
    cursor = conn.execute(sql, params)
    keys = [d[0] for d in cursor.description]
    return [dict(zip(keys, r)) for r in cursor.fetchall()]


def one(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
    """The first row of a query as a dict, or None."""
    found = rows(conn, sql, params)
    return found[0] if found else None


def is_busy(error: BaseException) -> bool:
    """Whether `error` is SQLite's "database is locked / busy" (worth retrying)."""
    if not isinstance(error, sqlite3.OperationalError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _BUSY_CODES:
        return True
    return any(word in str(error).lower() for word in _BUSY_WORDS)


def retry(operation: Callable[[], T], max_wait_s: float, first_delay_s: float = 0.001) -> T:
    """Run `operation`, retrying on "database is locked" for up to `max_wait_s` seconds."""
    deadline = time.monotonic() + max_wait_s
    delay, attempts = first_delay_s, 0
    while True:
        try:
            return operation()
        except sqlite3.OperationalError as e:
            if not is_busy(e):
                raise
            attempts += 1
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"the annotation database stayed locked by other writers for {max_wait_s:.0f} s "
                    f"({attempts} attempts); try again, or raise StoreConfig.max_wait_s"
                ) from e
            logger.debug("database is locked (attempt %d), retrying in %.4f s", attempts, delay)
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.05)


def transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T], immediate: bool) -> T:
    """Run `body(conn)` in one transaction (`BEGIN IMMEDIATE` for writes); roll back on any error."""
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        result = body(conn)
        conn.execute("COMMIT")
        return result
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
