"""GEMEL Studio's annotation store: human corrections of the linker, kept in one SQLite file.

Never imports torch or `gemel`: the UI, the CLI and the load benchmark use it alone, and the
linker reads its corrections back as plain `Example`-shaped dicts.

Public API (everything raises subclasses of `AnnotationError` with a message for people)::

    from annotations import Store, export_jsonl, export_parquet, import_jsonl

    store = Store.open(path=None, entity_exists=kb.__contains__)   # default_db_path(); WAL; migrates
    # tests: Store(sqlite_utils.Database(memory=True), config={"images_dir": tmp})
    cid = store.record("alice", "candidate", "Paris, Texas",         # -> correction id
                       text=caption, mention="Paris", start=None, end=None, image=pil_or_path_or_bytes,
                       model_entity="Paris", candidates=prediction.candidates,
                       profile="tiny", mapper_version="v3", comment=None, at=None)
    # decisions: "accept" (entity defaults to model_entity) | "candidate" (one of candidates)
    #            | "search" (any KB entity) | "nil" | "more_context" (entity None)
    store.find_input(text, mention, start=None, end=None, image=None) -> input_id
    store.get(cid) / store.current(annotator, input_id) -> dict | None
    store.history(input_id=None, annotator=None, limit=None) -> [dict], newest first, with
        "status": "current" | "superseded" | "undone"
    store.undo(annotator, input_id) -> the decision now current, or None
    store.undo_last(annotator) -> the decision it undid (its input_id, annotator ...)
    store.decisions() -> every current decision (latest live one per input x annotator)

    store.enqueue([{"text", "mention", "image", "prediction": Prediction.to_dict() | None}], batch=None)
    store.next_item(annotator) -> item dict (item_id, text, mention, image, prediction, margin ...) | None
    store.record_item(item_id, annotator, decision, entity=None, comment=None) -> correction id
    store.skip(annotator, item_id=None) -> next item;  store.progress(annotator) -> {total, done, skipped, left}

    store.agreement() -> {items, annotators, percent_agreement, fleiss_kappa, cohen_kappa, pairwise, disagreements}
    store.stats() -> {totals, per_annotator, per_day, model_accuracy (per mapper version), agreement}
    store.training_examples(include=("accept", "candidate", "search")) -> iterator of
        {"text", "mention", "entity", "image" (absolute path | None), "id", "source": "annotations", "meta"}
    store.last_row_id(); store.count_since(row_id); store.examples_since(row_id)   # incremental updates

    export_jsonl(store, out) / export_parquet(store, out) -> n    # images copied to <out stem>_images/
    import_jsonl(store, path) / import_parquet(store, path) -> {"imported", "skipped"}   # idempotent

Records: a row dict has id, input_id, annotator, time (UTC ISO 8601), decision, entity, comment,
model_entity, candidates (list), profile, mapper_version, text, mention, mention_start,
mention_end (Python str offsets), image (absolute path | None), image_sha256, status.
The database is plain SQLite (JSON as TEXT, views `current_decisions` and
`current_decisions_with_input`): `datasette data/gemel.db` browses it as is.
"""

from __future__ import annotations

from .agreement import cohen_kappa, fleiss_kappa, fleiss_kappa_counts, percent_agreement
from .errors import (
    AnnotationError,
    ConfigError,
    EmptyMentionError,
    ImportFormatError,
    InvalidDecisionError,
    InvalidImageError,
    MentionNotInTextError,
    MissingImageError,
    NotFoundError,
    NothingToUndoError,
    SchemaError,
    StoreBusyError,
    UnknownEntityError,
)
from .io import export_jsonl, export_parquet, import_file, import_jsonl, import_parquet
from .schema import SCHEMA_VERSION
from .store import Store, StoreConfig, default_db_path
from .validation import DECISIONS, ENTITY_DECISIONS

__all__ = [
    "DECISIONS",
    "ENTITY_DECISIONS",
    "SCHEMA_VERSION",
    "AnnotationError",
    "ConfigError",
    "EmptyMentionError",
    "ImportFormatError",
    "InvalidDecisionError",
    "InvalidImageError",
    "MentionNotInTextError",
    "MissingImageError",
    "NotFoundError",
    "NothingToUndoError",
    "SchemaError",
    "Store",
    "StoreBusyError",
    "StoreConfig",
    "UnknownEntityError",
    "cohen_kappa",
    "default_db_path",
    "export_jsonl",
    "export_parquet",
    "fleiss_kappa",
    "fleiss_kappa_counts",
    "import_file",
    "import_jsonl",
    "import_parquet",
    "percent_agreement",
]
