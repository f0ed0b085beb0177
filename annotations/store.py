"""`Store`: the SQLite annotation store of GEMEL Studio (corrections, history, queue, statistics).

One SQLite file (see `default_db_path`) in WAL mode holds every correction a person made to the
linker's answers. Nothing is overwritten: a new decision on the same input by the same annotator
supersedes the old one, which stays in `history`; `undo` marks the latest one undone and the previous
one becomes current again. "Current" means the latest live row per (input, annotator), by time then
id (the `current_decisions` view). The corrections feed back into the linker as demonstrations
(`training_examples`, `examples_since`), the idea of human-in-the-loop entity linking.

All SQL is parameterised; text is stored exactly as given. The design follows sqlite-utils' habits
(plain tables, JSON as TEXT, named `NotFoundError`) so the file opens in Datasette as is.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self, TypeVar

import sqlite_utils
from tqdm.auto import tqdm

from . import agreement as agreement_mod
from . import queue as queue_mod
from ._db import one, retry, rows, transaction
from .errors import ConfigError, InvalidDecisionError, NotFoundError, NothingToUndoError
from .images import image_bytes, sha256_hex, store_image
from .schema import migrate
from .validation import (
    DECISIONS,
    ENTITY_DECISIONS,
    check_annotator,
    check_decision,
    from_json,
    input_key,
    margin_of,
    normalize_candidates,
    resolve_offsets,
    to_json,
    utc_iso,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
# what a queue item keeps of its prediction besides entity, candidates, profile and mapper (Review shows them)
EXTRA = ("why", "image", "demonstrations", "timings", "precision", "source", "corrected_by")

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def default_db_path(spaces_dir: str | os.PathLike = "/data") -> Path:
    """`$GEMEL_DB` if set, else `/data/gemel.db` when `/data` is a writable folder (Hugging Face
    Spaces persistent storage), else `./data/gemel.db` (absolute)."""
    env = os.environ.get("GEMEL_DB", "").strip()
    if env:
        return Path(env).expanduser()
    spaces = Path(spaces_dir)
    if spaces.is_dir() and os.access(spaces, os.W_OK):
        return spaces / "gemel.db"
    return Path.cwd() / "data" / "gemel.db"


@dataclass
class StoreConfig:
    """Settings of a `Store` connection."""

    busy_timeout_s: float = 0.2  # SQLite's own wait for a lock per attempt (PRAGMA busy_timeout)
    max_wait_s: float = 60.0  # total patience, retries included, before StoreBusyError
    synchronous: str = "NORMAL"  # WAL + NORMAL survives process crashes; "FULL" also power loss
    images_dir: str | None = None  # default: images/ next to the database file

    def __post_init__(self) -> None:
        if not self.busy_timeout_s >= 0:
            raise ConfigError(f"busy_timeout_s={self.busy_timeout_s!r} must be >= 0 seconds, e.g. 0.2")
        if not self.max_wait_s > 0:
            raise ConfigError(f"max_wait_s={self.max_wait_s!r} must be > 0 seconds, e.g. 60")
        self.synchronous = str(self.synchronous).upper()
        if self.synchronous not in _SYNCHRONOUS:
            raise ConfigError(f"synchronous={self.synchronous!r} is not one of {_SYNCHRONOUS}; use 'NORMAL'")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StoreConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown store settings {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)


class Store:
    """The annotation store. Build with `Store.open(path)` (a file) or `Store(db)` (any sqlite-utils
    Database, e.g. `Database(memory=True)` in tests; a file database gets WAL and images/ beside
    it either way). Thread-safe within a process (use `Store.open` for that: its connection may
    cross threads); several processes may write one file at once."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        *,
        entity_exists: Callable[[str], bool] | None = None,
        config: StoreConfig | Mapping[str, Any] | None = None,
        path: str | os.PathLike | None = None,
    ) -> None:
        self.config = config if isinstance(config, StoreConfig) else StoreConfig.from_dict(config or {})
        self.db = db
        self.conn: sqlite3.Connection = db.conn
        self.path = Path(path) if path is not None else _file_of(db.conn)
        self.entity_exists = entity_exists
        self._lock = threading.RLock()
        self.conn.isolation_level = None  # explicit transactions only (BEGIN IMMEDIATE for writes)
        self._configure()
        self._retry(lambda: migrate(self.conn))

    @classmethod
    def open(
        cls,
        path: str | os.PathLike | None = None,
        *,
        entity_exists: Callable[[str], bool] | None = None,
        config: StoreConfig | Mapping[str, Any] | None = None,
    ) -> Store:
        """Open (creating if needed) the store at `path` (default: `default_db_path()`)."""
        cfg = config if isinstance(config, StoreConfig) else StoreConfig.from_dict(config or {})
        if str(path) == ":memory:":
            return cls(sqlite_utils.Database(memory=True), entity_exists=entity_exists, config=cfg)
        file = Path(path) if path is not None else default_db_path()
        if file.is_dir():
            raise ConfigError(f"{str(file)!r} is a folder; pass the database file, e.g. {str(file / 'gemel.db')!r}")
        file.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(file), timeout=cfg.busy_timeout_s, check_same_thread=False)
        return cls(sqlite_utils.Database(conn), entity_exists=entity_exists, config=cfg, path=file)

    # ---- connection -------------------------------------------------------------------------

    def _configure(self) -> None:
        self.conn.execute(f"PRAGMA busy_timeout = {int(self.config.busy_timeout_s * 1000)}")
        self.conn.execute("PRAGMA foreign_keys = ON")
        if self.path is not None:
            mode = self._retry(lambda: self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                logger.warning("journal_mode is %s, not WAL: concurrent readers will wait for writers", mode)
            self.conn.execute(f"PRAGMA synchronous = {self.config.synchronous}")

    def _retry(self, operation: Callable[[], T]) -> T:
        with self._lock:
            return retry(operation, self.config.max_wait_s)

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return self._retry(lambda: transaction(self.conn, body, immediate=True))

    def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return self._retry(lambda: transaction(self.conn, body, immediate=False))

    @property
    def images_dir(self) -> Path | None:
        """Folder of the content-addressed images (None for an in-memory store without images_dir)."""
        if self.config.images_dir is not None:
            return Path(self.config.images_dir)
        return None if self.path is None else self.path.parent / "images"

    def _images_dir_or_raise(self) -> Path:
        if self.images_dir is None:
            raise ConfigError(
                "this in-memory store has no folder for images; pass config={'images_dir': ...}"
            )
        return self.images_dir

    def image_abspath(self, image_path: str | None) -> str | None:
        """Absolute path of a stored image given its `image_path` column (None stays None)."""
        if image_path is None or self.images_dir is None:
            return None
        return str((self.images_dir / Path(image_path).name).resolve())

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- recording --------------------------------------------------------------------------

    def prepare(
        self,
        annotator: str,
        decision: str,
        entity: str | None = None,
        *,
        text: str,
        mention: str,
        start: int | None = None,
        end: int | None = None,
        image: Any = None,
        model_entity: str | None = None,
        candidates: Iterable[Any] | None = None,
        profile: str | None = None,
        mapper_version: str | None = None,
        comment: str | None = None,
        at: datetime | str | None = None,
    ) -> dict[str, Any]:
        """Validate a correction and store its image; return the row `record_many` inserts."""
        cands = normalize_candidates(candidates)
        row = {
            "annotator": check_annotator(annotator),
            "decision": decision,
            "entity": check_decision(decision, entity, model_entity, cands, self.entity_exists),
            "model_entity": model_entity,
            "model_candidates": to_json(cands),
            "profile": profile,
            "mapper_version": mapper_version,
            "comment": comment,
            "created_at": utc_iso(at),
        }
        return {**self._prepare_input(text, mention, start, end, image), **row}

    def _prepare_input(
        self, text: str, mention: str, start: int | None, end: int | None, image: Any, keep_image: bool = True
    ) -> dict[str, Any]:
        start, end = resolve_offsets(text, mention, start, end)
        if image is None:
            sha, name = None, None
        elif keep_image:
            sha, name = store_image(image, self._images_dir_or_raise())
        else:  # only the hash, e.g. to look an input up
            sha, name = sha256_hex(image_bytes(image)[0]), None
        return {
            "input_key": input_key(text, mention, start, end, sha),
            "text": text,
            "mention": mention,
            "mention_start": start,
            "mention_end": end,
            "image_sha256": sha,
            "image_path": None if name is None else f"images/{name}",
        }

    def record(
        self,
        annotator: str,
        decision: str,
        entity: str | None = None,
        *,
        text: str,
        mention: str,
        start: int | None = None,
        end: int | None = None,
        image: Any = None,
        model_entity: str | None = None,
        candidates: Iterable[Any] | None = None,
        profile: str | None = None,
        mapper_version: str | None = None,
        comment: str | None = None,
        at: datetime | str | None = None,
    ) -> int:
        """Record one decision; return its correction id.

        `decision`: accept / candidate / search / nil / more_context. `entity`: the resulting KB
        title (None for nil and more_context; accept defaults to `model_entity`, candidate must be
        one of `candidates` when they are given). `start`/`end`: the mention's offsets in `text`
        (default: its first occurrence). `image`: bytes, a path, a PIL image or None.
        `candidates`: the model's ranked candidates (dicts with name, score, or `Candidate`s).
        `at`: the decision's time (default now, UTC). Raises an `AnnotationError` subclass."""
        row = self.prepare(
            annotator, decision, entity, text=text, mention=mention, start=start, end=end, image=image,
            model_entity=model_entity, candidates=candidates, profile=profile,
            mapper_version=mapper_version, comment=comment, at=at,
        )
        return self.record_many([row])[0]  # type: ignore[return-value]

    def record_many(self, prepared: Sequence[Mapping[str, Any]], skip_existing: bool = False) -> list[int | None]:
        """Insert prepared corrections in one transaction; return their ids (None when skipped
        because an identical decision, same input, annotator, time, decision and entity, exists)."""
        return self._write(lambda conn: [_insert_correction(conn, r, skip_existing) for r in prepared])

    def record_item(
        self, item_id: int, annotator: str, decision: str, entity: str | None = None, *,
        comment: str | None = None, at: datetime | str | None = None,
    ) -> int:
        """Record a decision on a queue item, with the item's input and prediction."""
        it = self._read(lambda conn: queue_mod.item(conn, item_id))
        row = self.prepare(
            annotator, decision, entity, text=it["text"], mention=it["mention"], start=it["mention_start"],
            end=it["mention_end"], model_entity=it["model_entity"], candidates=from_json(it["model_candidates"]),
            profile=it["profile"], mapper_version=it["mapper_version"], comment=comment, at=at,
        )
        row.update(image_sha256=it["image_sha256"], image_path=it["image_path"])
        row["input_key"] = input_key(it["text"], it["mention"], it["mention_start"], it["mention_end"], it["image_sha256"])
        return self.record_many([row])[0]  # type: ignore[return-value]

    # ---- reading decisions ------------------------------------------------------------------

    def find_input(
        self, text: str, mention: str, start: int | None = None, end: int | None = None, image: Any = None
    ) -> int:
        """Id of the input (text + mention + offsets + image); NotFoundError if never recorded."""
        key = self._prepare_input(text, mention, start, end, image, keep_image=False)["input_key"]
        row = self._read(lambda conn: one(conn, "SELECT id FROM inputs WHERE input_key = ?", (key,)))
        if row is None:
            raise NotFoundError(f"no decision was recorded for mention {mention!r} in this text and image")
        return int(row["id"])

    def get(self, correction_id: int) -> dict[str, Any]:
        """One correction with its input and status; NotFoundError if there is none."""
        found = self._corrections("c.id = ?", (correction_id,))
        if not found:
            raise NotFoundError(f"correction {correction_id} does not exist; take ids from record() or history()")
        return found[0]

    def current(self, annotator: str, input_id: int) -> dict[str, Any] | None:
        """The annotator's current decision on an input, or None."""
        found = self._corrections("c.input_id = ? AND c.annotator = ? AND status = 'current'", (input_id, annotator))
        return found[0] if found else None

    def history(
        self, input_id: int | None = None, annotator: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Corrections, newest first, each with `status`: current / superseded / undone.

        Filter by input, by annotator, or both; `limit` keeps the newest ones."""
        where: list[str] = ["1"]
        params: list[Any] = []
        if input_id is not None:
            where.append("c.input_id = ?")
            params.append(input_id)
        if annotator is not None:
            where.append("c.annotator = ?")
            params.append(annotator)
        return self._corrections(" AND ".join(where), params, limit=limit)

    def decisions(self) -> list[dict[str, Any]]:
        """Every current decision (latest live one per input and annotator), oldest first."""
        return self._corrections("status = 'current'", (), newest_first=False)

    def _corrections(
        self, where: str, params: Sequence[Any], limit: int | None = None, newest_first: bool = True
    ) -> list[dict[str, Any]]:
        order = "DESC" if newest_first else "ASC"
        sql = f"""SELECT * FROM (
                SELECT c.*, i.input_key, i.text, i.mention, i.mention_start, i.mention_end,
                       i.image_path, i.image_sha256,
                       CASE WHEN c.undone_at IS NOT NULL THEN 'undone'
                            WHEN d.id IS NOT NULL THEN 'current' ELSE 'superseded' END AS status
                FROM corrections c JOIN inputs i ON i.id = c.input_id
                LEFT JOIN current_decisions d ON d.id = c.id) c
            WHERE {where} ORDER BY c.created_at {order}, c.id {order}"""
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._public(r) for r in self._read(lambda conn: rows(conn, sql, params))]

    def _public(self, row: dict[str, Any]) -> dict[str, Any]:
        row["candidates"] = from_json(row.pop("model_candidates"))
        row["time"] = row.pop("created_at")
        row["image"] = self.image_abspath(row["image_path"])
        return row

    # ---- undo -------------------------------------------------------------------------------

    def undo(self, annotator: str, input_id: int) -> dict[str, Any] | None:
        """Undo the annotator's current decision on an input; return the decision now current
        (the previous one) or None. NothingToUndoError when there is no live decision."""
        def body(conn: sqlite3.Connection) -> None:
            row = one(conn, "SELECT id FROM current_decisions WHERE input_id = ? AND annotator = ?", (input_id, annotator))
            if row is None:
                raise NothingToUndoError(f"{annotator!r} has no decision on input {input_id} to undo")
            conn.execute("UPDATE corrections SET undone_at = ? WHERE id = ?", (utc_iso(), row["id"]))

        self._write(body)
        return self.current(annotator, input_id)

    def undo_last(self, annotator: str) -> dict[str, Any]:
        """Undo the annotator's most recent live decision ("undo my last decision"); return what was
        undone (a row with status "undone"; `current(annotator, row["input_id"])` is what is current now)."""
        row = self._read(lambda conn: one(
            conn, "SELECT id, input_id FROM current_decisions WHERE annotator = ? "
            "ORDER BY created_at DESC, id DESC LIMIT 1", (annotator,)))
        if row is None:
            raise NothingToUndoError(f"{annotator!r} has no decision left to undo")
        self.undo(annotator, row["input_id"])
        return self.get(row["id"])

    # ---- queue ------------------------------------------------------------------------------

    def enqueue(self, items: Iterable[Mapping[str, Any]], batch: str | None = None) -> list[int]:
        """Add pending items to the review queue; return their queue item ids.

        Each item: `text`, `mention`, optional `start`/`end`, `image` (bytes, path, PIL, None) and
        `prediction` (a `Prediction.to_dict()`-shaped mapping with `entity`, `candidates`, `profile`,
        `mapper`) or None. Enqueuing an input again keeps one item (a new prediction replaces the old)."""
        prepared = [self._prepare_item(it) for it in tqdm(list(items), desc="enqueue", disable=None, leave=False)]
        now = utc_iso()

        def body(conn: sqlite3.Connection) -> list[int]:
            return [queue_mod.upsert_item(conn, _insert_input(conn, inp, now), batch, pred, now) for inp, pred in prepared]

        return self._write(body)

    def last_queue_item_id(self) -> int:
        """Highest review-queue item id (0 for an empty queue). Items are never deleted and a new one gets a
        higher id, so the ids `enqueue` returns above this watermark are the items it added, the others were
        already queued (items another session enqueues meanwhile are not among these ids)."""
        return self._read(lambda conn: conn.execute("SELECT COALESCE(MAX(id), 0) FROM queue_items").fetchone()[0])

    def _prepare_item(self, item: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        inp = self._prepare_input(item["text"], item["mention"], item.get("start"), item.get("end"), item.get("image"))
        given: Any = item.get("prediction")
        pred: Mapping[str, Any] = (given.to_dict() if hasattr(given, "to_dict") else given) or {}
        cands = normalize_candidates(pred.get("candidates"))
        return inp, {
            "model_entity": pred.get("entity"),
            "model_candidates": to_json(cands),
            "profile": pred.get("profile"),
            "mapper_version": pred.get("mapper"),
            "has_prediction": int(given is not None),
            "margin": margin_of(cands),
            "model_extra": to_json({k: pred[k] for k in EXTRA if k in pred}) if pred else None,
        }

    def next_item(self, annotator: str) -> dict[str, Any] | None:
        """The item to show the annotator (their cursor), or None when their queue is empty."""
        check_annotator(annotator)
        row = self._write(lambda conn: queue_mod.next_item(conn, annotator, utc_iso()))
        return None if row is None else self._public_item(row)

    def skip(self, annotator: str, item_id: int | None = None) -> dict[str, Any] | None:
        """Move an item (default: the current one) to the end of the annotator's queue; return the next."""
        check_annotator(annotator)
        self._write(lambda conn: queue_mod.skip(conn, annotator, item_id, utc_iso()))
        return self.next_item(annotator)

    def progress(self, annotator: str) -> dict[str, int]:
        """{"total", "done", "skipped", "left"} of the annotator's queue."""
        return self._read(lambda conn: queue_mod.progress(conn, annotator))

    def _public_item(self, row: dict[str, Any]) -> dict[str, Any]:
        pred = None
        if row.pop("has_prediction"):
            pred = {**(from_json(row["model_extra"]) or {}), "entity": row["model_entity"],
                    "candidates": from_json(row["model_candidates"]), "profile": row["profile"],
                    "mapper": row["mapper_version"]}
        for key in ("model_entity", "model_candidates", "profile", "mapper_version", "model_extra"):
            row.pop(key)
        row["skipped"] = row.pop("skipped_at") is not None
        row["image"] = self.image_abspath(row["image_path"])
        return {**row, "prediction": pred}

    # ---- training data ----------------------------------------------------------------------

    def training_examples(self, include: Sequence[str] = ENTITY_DECISIONS) -> Iterator[dict[str, Any]]:
        """One `gemel.types.Example`-shaped dict per decided input, by input id.

        The label of an input is the majority over its annotators' current decisions (ties: the
        most recent); the input is yielded when that decision's kind is in `include`. `id` is the
        input's content key (stable across export/import); `meta` holds decision, votes, row_id.
        An input decided nil yields entity None (only when "nil" is included)."""
        _check_include(include)
        return iter([e for e in self._examples("1", ()) if e["meta"]["decision"] in include])

    def examples_since(self, row_id: int, include: Sequence[str] = ENTITY_DECISIONS) -> list[dict[str, Any]]:
        """Examples of the inputs that got a decision with correction id > `row_id` (see
        `last_row_id`), to add new corrections to the linker incrementally: an example whose `id`
        was seen before replaces the earlier one. (An undo creates no new row: rebuild in full.)"""
        _check_include(include)
        where = "d.input_id IN (SELECT input_id FROM corrections WHERE id > ?)"
        return [e for e in self._examples(where, (row_id,)) if e["meta"]["decision"] in include]

    def count_since(self, row_id: int) -> int:
        """Number of live corrections with id > `row_id`."""
        return self._read(lambda conn: conn.execute(
            "SELECT COUNT(*) FROM corrections WHERE id > ? AND undone_at IS NULL", (row_id,)).fetchone()[0])

    def last_row_id(self) -> int:
        """Highest correction id (0 for an empty store): the watermark for `examples_since`."""
        return self._read(lambda conn: conn.execute("SELECT COALESCE(MAX(id), 0) FROM corrections").fetchone()[0])

    def _examples(self, where: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        sql = f"""SELECT d.id, d.input_id, d.annotator, d.created_at, d.decision, d.entity,
                         i.input_key, i.text, i.mention, i.mention_start, i.mention_end, i.image_path, i.image_sha256
                  FROM current_decisions d JOIN inputs i ON i.id = d.input_id
                  WHERE {where} ORDER BY d.input_id, d.created_at, d.id"""
        by_input: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in self._read(lambda conn: rows(conn, sql, params)):
            by_input[r["input_id"]].append(r)
        return [self._example(v) for v in by_input.values()]

    def _example(self, decisions: list[dict[str, Any]]) -> dict[str, Any]:
        winner, votes = _majority(decisions)
        return {
            "text": winner["text"], "mention": winner["mention"], "entity": winner["entity"],
            "image": self.image_abspath(winner["image_path"]),
            "id": winner["input_key"], "source": "annotations",
            "meta": {"decision": winner["decision"], "votes": votes, "annotators": len(decisions),
                     "row_id": max(d["id"] for d in decisions), "mention_start": winner["mention_start"],
                     "mention_end": winner["mention_end"], "image_sha256": winner["image_sha256"]},
        }

    # ---- agreement and statistics -----------------------------------------------------------

    def agreement(self) -> dict[str, Any]:
        """Agreement over inputs decided by >= 2 annotators: items, annotators, percent_agreement,
        fleiss_kappa, cohen_kappa (exactly 2 annotators), pairwise, disagreements (see agreement.py)."""
        decisions = [
            {"input_id": d["input_id"], "annotator": d["annotator"], "label": agreement_mod.label_of(d["decision"], d["entity"]),
             "decision": d["decision"], "entity": d["entity"], "time": d["time"], "id": d["id"],
             "text": d["text"], "mention": d["mention"], "image": d["image"]}
            for d in self.decisions()
        ]
        return agreement_mod.summarize(decisions)

    def stats(self) -> dict[str, Any]:
        """Counts per annotator and decision, corrections per day, model accuracy per mapper version,
        and agreement (without the disagreement list, see `agreement()` for it)."""
        body = self._read(_stats_queries)
        agree = self.agreement()
        agree["disagreements"] = len(agree["disagreements"])
        return {**body, "agreement": agree}


def _file_of(conn: sqlite3.Connection) -> Path | None:
    """The file behind a connection's main database (None in memory)."""
    name = next((r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main"), "")
    return Path(name) if name else None


def _check_include(include: Sequence[str]) -> None:
    unknown = [d for d in include if d not in DECISIONS]
    if isinstance(include, str) or unknown:
        raise InvalidDecisionError(f"include={include!r} must be a tuple of decisions from {DECISIONS}")


def _insert_input(conn: sqlite3.Connection, inp: Mapping[str, Any], now: str) -> int:
    conn.execute(
        """INSERT INTO inputs (input_key, text, mention, mention_start, mention_end, image_sha256, image_path, created_at)
           VALUES (:input_key, :text, :mention, :mention_start, :mention_end, :image_sha256, :image_path, :now)
           ON CONFLICT (input_key) DO NOTHING""",
        {**{k: inp[k] for k in _INPUT_FIELDS}, "now": now},
    )
    return int(conn.execute("SELECT id FROM inputs WHERE input_key = ?", (inp["input_key"],)).fetchone()[0])


_INPUT_FIELDS = ("input_key", "text", "mention", "mention_start", "mention_end", "image_sha256", "image_path")
_CORRECTION_FIELDS = ("annotator", "created_at", "decision", "entity", "comment", "model_entity",
                      "model_candidates", "profile", "mapper_version")


def _insert_correction(conn: sqlite3.Connection, row: Mapping[str, Any], skip_existing: bool) -> int | None:
    input_id = _insert_input(conn, row, row["created_at"])
    values = {k: row[k] for k in _CORRECTION_FIELDS}
    if skip_existing and conn.execute(
        """SELECT 1 FROM corrections WHERE input_id = ? AND annotator = ? AND created_at = ?
           AND decision = ? AND entity IS ?""",
        (input_id, values["annotator"], values["created_at"], values["decision"], values["entity"]),
    ).fetchone():
        return None
    cursor = conn.execute(
        f"INSERT INTO corrections (input_id, {', '.join(_CORRECTION_FIELDS)}) "
        f"VALUES (:input_id, {', '.join(':' + k for k in _CORRECTION_FIELDS)})",
        {"input_id": input_id, **values},
    )
    return int(cursor.lastrowid)  # type: ignore[arg-type]  # set after an INSERT


def _majority(decisions: list[dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """The decision of the most voted label (ties: the most recent) and its number of votes."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in decisions:
        groups[agreement_mod.label_of(d["decision"], d["entity"])].append(d)
    latest = {label: max(g, key=lambda d: (d["created_at"], d["id"])) for label, g in groups.items()}
    label = max(groups, key=lambda k: (len(groups[k]), latest[k]["created_at"], latest[k]["id"]))
    return latest[label], len(groups[label])


def _stats_queries(conn: sqlite3.Connection) -> dict[str, Any]:
    per_annotator: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows(conn, "SELECT annotator, decision, COUNT(*) AS n FROM current_decisions GROUP BY annotator, decision"):
        per_annotator[r["annotator"]][r["decision"]] = r["n"]
    per_day = rows(conn, """SELECT substr(created_at, 1, 10) AS day, COUNT(*) AS corrections
                            FROM corrections WHERE undone_at IS NULL GROUP BY day ORDER BY day""")
    accuracy = rows(conn, """
        SELECT COALESCE(mapper_version, 'unknown') AS mapper_version, COUNT(*) AS decisions,
               SUM(model_entity IS entity) AS correct, AVG(model_entity IS entity) AS accuracy
        FROM current_decisions
        WHERE decision != 'more_context' AND (mapper_version IS NOT NULL OR model_entity IS NOT NULL)
        GROUP BY 1 ORDER BY MIN(created_at)""")
    totals = one(conn, """SELECT (SELECT COUNT(*) FROM corrections) AS corrections,
                                 (SELECT COUNT(*) FROM current_decisions) AS current_decisions,
                                 (SELECT COUNT(*) FROM inputs) AS inputs,
                                 (SELECT COUNT(*) FROM queue_items) AS queue_items""")
    return {"totals": totals, "per_annotator": dict(per_annotator), "per_day": per_day, "model_accuracy": accuracy}
