"""Checks and normal forms of what a correction records, before it reaches SQL.

Pure functions (no database): the mention and its offsets, the decision and its entity, the model's
candidates, times as UTC ISO 8601 strings, and the key that identifies an input
(caption + mention + offsets + image hash). Keeping them apart from the store lets the queue, the
importer and the store share one definition of "a valid correction".
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from .errors import (
    EmptyMentionError,
    InvalidDecisionError,
    MentionNotInTextError,
    UnknownEntityError,
)

DECISIONS = ("accept", "candidate", "search", "nil", "more_context")
ENTITY_DECISIONS = ("accept", "candidate", "search")  # decisions that name a KB entity


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def resolve_offsets(text: str, mention: str, start: int | None, end: int | None) -> tuple[int, int]:
    """(start, end) with `text[start:end] == mention`; the first occurrence when both are None."""
    if not isinstance(text, str):
        raise MentionNotInTextError(f"the text must be a string, got {type(text).__name__}")
    if not isinstance(mention, str) or not mention.strip():
        raise EmptyMentionError(
            f"the mention {mention!r} is empty; select the words of the text that name the entity"
        )
    if start is None and end is None:
        start = text.find(mention)
        if start < 0:
            raise MentionNotInTextError(
                f"the mention {mention!r} does not occur in the text {_short(text)!r}; "
                "copy it from the text exactly (same case and spacing)"
            )
    start = int(end - len(mention) if start is None else start)  # type: ignore[operator]
    end = int(start + len(mention) if end is None else end)
    if not (0 <= start <= end <= len(text)) or text[start:end] != mention:
        raise MentionNotInTextError(
            f"text[{start}:{end}] is {text[max(start, 0):max(end, 0)]!r}, not the mention {mention!r}; "
            "fix the offsets, or leave them out to use the mention's first occurrence"
        )
    return start, end


def check_annotator(annotator: Any) -> str:
    """The annotator's name; it must be a non-empty string."""
    if not isinstance(annotator, str) or not annotator.strip():
        raise InvalidDecisionError(
            f"annotator={annotator!r} is not a name; pass who made the decision, e.g. 'alice'"
        )
    return annotator


def check_decision(
    decision: str,
    entity: str | None,
    model_entity: str | None,
    candidates: list[dict[str, Any]] | None,
    entity_exists: Callable[[str], bool] | None,
) -> str | None:
    """Validate a decision against its entity; return the resulting entity (None for nil/more_context)."""
    if decision not in DECISIONS:
        raise InvalidDecisionError(f"decision {decision!r} is unknown; use one of {', '.join(DECISIONS)}")
    if decision not in ENTITY_DECISIONS:
        if entity is not None:
            raise InvalidDecisionError(
                f"decision {decision!r} means no entity, but entity={entity!r} was given; pass entity=None"
            )
        return None
    entity = _entity_for(decision, entity, model_entity, candidates)
    if entity_exists is not None and not entity_exists(entity):
        raise UnknownEntityError(
            f"entity {entity!r} is not in the knowledge base; pick a title that the KB search offers, "
            "or decide 'nil' when the right entity is missing"
        )
    return entity


def _entity_for(
    decision: str, entity: str | None, model_entity: str | None, candidates: list[dict[str, Any]] | None
) -> str:
    if decision == "accept":
        if model_entity is None:
            raise InvalidDecisionError(
                "decision 'accept' keeps the model's entity, but no model_entity was given; "
                "pass the prediction, or use 'nil' when the model answered NIL"
            )
        if entity is not None and entity != model_entity:
            raise InvalidDecisionError(
                f"decision 'accept' keeps the model's entity {model_entity!r} but entity={entity!r}; "
                "use 'candidate' or 'search' to choose another entity"
            )
        entity = model_entity
    if not isinstance(entity, str) or not entity.strip():
        raise InvalidDecisionError(f"decision {decision!r} needs an entity (a KB title), got {entity!r}")
    names = [c["name"] for c in candidates or []]
    if decision == "candidate" and names and entity not in names:
        raise InvalidDecisionError(
            f"entity {entity!r} is not one of the model's candidates {names[:5]}; "
            "use decision 'search' for an entity found by name"
        )
    return entity


def normalize_candidates(candidates: Iterable[Any] | None) -> list[dict[str, Any]] | None:
    """Candidates as a list of dicts with at least `name` (and `score` when known), best first."""
    if candidates is None:
        return None
    out = []
    for c in candidates:
        d = c.to_dict() if hasattr(c, "to_dict") else c
        if isinstance(d, (tuple, list)) and len(d) == 2:
            d = {"name": d[0], "score": d[1]}
        if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
            raise InvalidDecisionError(
                f"candidate {c!r} has no name; pass dicts like {{'name': 'Paris', 'score': -0.3}}"
            )
        out.append(dict(d))
    return out


def margin_of(candidates: list[dict[str, Any]] | None) -> float | None:
    """How sure the linker was: the best candidate's probability minus the second's where a learned ranker gave
    every candidate one, else the best score minus the second; None with fewer than two finite values."""
    cands = candidates or []
    key = "probability" if cands and all(_is_number(c.get("probability")) for c in cands) else "score"
    scores = sorted((float(c[key]) for c in cands if _is_number(c.get(key))), reverse=True)
    scores = [s for s in scores if math.isfinite(s)]
    return scores[0] - scores[1] if len(scores) >= 2 else None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def utc_iso(at: datetime | str | None = None) -> str:
    """`at` (now when None; naive times are taken as UTC) as an ISO 8601 UTC string with microseconds."""
    if at is None:
        at = datetime.now(timezone.utc)
    elif isinstance(at, str):
        try:
            at = datetime.fromisoformat(at)
        except ValueError as e:
            raise InvalidDecisionError(
                f"time {at!r} is not ISO 8601; write it like 2024-05-01T12:00:00+00:00"
            ) from e
    if not isinstance(at, datetime):
        raise InvalidDecisionError(f"time {at!r} is neither a datetime nor an ISO 8601 string")
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


def input_key(text: str, mention: str, start: int, end: int, image_sha256: str | None) -> str:
    """Stable identity of an input: sha256 of the JSON list [text, mention, start, end, image hash]."""
    payload = json.dumps([text, mention, start, end, image_sha256], ensure_ascii=True)
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def to_json(value: Any) -> str | None:
    """JSON text for a TEXT column (None stays NULL); non-ASCII kept readable for Datasette."""
    return None if value is None else json.dumps(value, ensure_ascii=False)


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)
