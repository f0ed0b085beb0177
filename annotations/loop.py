"""The correction loop: the one place where stored decisions become (and stop being) demonstrations.

Every current entity decision of an annotator on an input is one demonstration, keyed by (input, annotator):
the same rule at start-up (`CorrectionLoop.load`) and live (`record`, `record_item`, `undo_last`, `sync`).
A re-decision replaces that annotator's earlier label (one live label per input and annotator); an undo by
one annotator withdraws only theirs; a NIL or "need more context" decision withdraws it too. The linker also
remembers each decision for the exact item (caption, mention, image content): that item is answered with the
latest decision on it, NIL included (`Prediction.source == "correction"`). Two annotators
who agree give one demonstration in the prompt (the pool never returns the same content twice).

The linker is duck-typed (``kb``, ``add_demonstrations(dicts)``, ``remove_demonstrations(ids)``), so this
module, like the rest of `annotations`, never imports torch or `gemel`. Training and evaluation want one gold
label per input instead: :func:`gold_examples` (the majority over annotators).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import AnnotationError, NotFoundError
from .store import Store
from .validation import ENTITY_DECISIONS

log = logging.getLogger(__name__)


def demonstration_id(input_key: str, annotator: str) -> str:
    """The id of an annotator's demonstration for an input (what a later decision of theirs replaces)."""
    return f"{input_key}@{annotator}"


def demonstration(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """A store decision row as an `Example`-shaped dict (entity None for NIL: the linker remembers it for the
    exact item but never shows it as a demonstration), or None for "need more context" (no answer at all)."""
    if row["decision"] not in (*ENTITY_DECISIONS, "nil"):
        return None
    entity = row.get("entity") if row["decision"] in ENTITY_DECISIONS else None
    return {"text": row["text"], "mention": row["mention"], "entity": entity, "image": row.get("image"),
            "id": demonstration_id(row["input_key"], row["annotator"]), "source": "annotations",
            "meta": {"input_key": row["input_key"], "annotator": row["annotator"], "decision": row["decision"],
                     "correction_id": row["id"]}}


class CorrectionLoop:
    """Keeps one linker's labelled demonstrations equal to one store's current entity decisions."""

    def __init__(self, store: Store, linker: Any, lock: threading.RLock | None = None) -> None:
        self.store = store
        self.linker = linker
        self.lock = lock or threading.RLock()  # the linker's pools are not thread-safe

    def load(self) -> int:
        """Add every current entity decision (each annotator's, on each input); returns how many were added."""
        demos = [d for d in map(demonstration, self.store.decisions()) if d is not None]
        known = [d for d in demos if d["entity"] is None or d["entity"] in self.linker.kb]
        if len(known) < len(demos):
            log.warning("%d stored decisions name entities this KB lacks; not used as demonstrations",
                        len(demos) - len(known))
        with self.lock:
            added = self.linker.add_demonstrations(known)
        log.info("%d stored decisions added as demonstrations", added)
        return added

    def sync(self, input_id: int, annotator: str) -> None:
        """Make the annotator's demonstration for this input match their current decision (or drop it)."""
        current = self.store.current(annotator, input_id)
        key = current["input_key"] if current else self._input_key(input_id)
        demo = demonstration(current) if current else None
        with self.lock:
            self.linker.remove_demonstrations([demonstration_id(key, annotator)])
            if demo is not None and (demo["entity"] is None or demo["entity"] in self.linker.kb):
                self.linker.add_demonstrations([demo])

    def record(self, annotator: str, decision: str, entity: str | None = None, **fields: Any) -> int:
        """`Store.record`, then the linker learns it at once; returns the correction id."""
        cid = self.store.record(annotator, decision, entity, **fields)
        self.sync(self.store.get(cid)["input_id"], annotator)
        return cid

    def record_item(self, item_id: int, annotator: str, decision: str, entity: str | None = None,
                    **fields: Any) -> int:
        """`Store.record_item` (a review-queue decision), then the linker learns it; returns the id."""
        cid = self.store.record_item(item_id, annotator, decision, entity, **fields)
        self.sync(self.store.get(cid)["input_id"], annotator)
        return cid

    def undo_last(self, annotator: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Undo the annotator's latest decision: (what was undone, their decision now current on that input or
        None). Its demonstration is withdrawn; the earlier one, if any, is learnt again."""
        undone = self.store.undo_last(annotator)
        self.sync(undone["input_id"], annotator)
        return undone, self.store.current(annotator, undone["input_id"])

    def _input_key(self, input_id: int) -> str:
        rows = self.store.history(input_id=input_id, limit=1)
        if not rows:
            raise NotFoundError(f"input {input_id} has no decision in this store")
        return rows[0]["input_key"]


def gold_examples(db: str | Path, include_nil: bool = False) -> list[dict[str, Any]]:
    """One `Example`-shaped dict per decided input (the majority label over its annotators), for training
    and evaluation; NIL inputs (entity None) too when asked."""
    path = Path(db)
    if not path.is_file():
        raise NotFoundError(f"annotation store {str(db)!r} does not exist")
    include = (*ENTITY_DECISIONS, "nil") if include_nil else ENTITY_DECISIONS
    examples = list(Store.open(path).training_examples(include))
    if not examples:
        raise AnnotationError(f"annotation store {str(db)!r} has no decided example yet")
    return examples


def open_loop(db: str | Path, linker: Any) -> CorrectionLoop:
    """The loop of an existing store file, loaded into ``linker`` (`gemel link --annotations DB`)."""
    path = Path(db)
    if not path.is_file():
        raise NotFoundError(f"annotation store {str(db)!r} does not exist")
    loop = CorrectionLoop(Store.open(path), linker)
    loop.load()
    return loop

