"""Export and import of annotations: JSONL and Parquet, with images copied alongside.

An export holds one record per *current* decision (latest live one per input and annotator):
`image` (path relative to the export file, or null), `text`, `mention`, `entity`, and provenance
`annotator`, `decision`, `time`, `comment`, `model_entity`, `candidates`, `profile`,
`mapper_version`, `mention_start`, `mention_end`, `image_sha256`. Images are copied to
`<out stem>_images/` next to the export file (`corrections.jsonl` -> `corrections_images/`), so the
folder can be zipped, shared and read by `datasets.load_dataset("json" | "parquet", ...)`.
In Parquet, `candidates` is a JSON string (its dicts have varying keys).

Import reads the same records back into a store (copying images into it); it is idempotent: a
record whose input, annotator, time, decision and entity are already there is skipped, so
export -> import -> export gives the same set.

A team's existing gold imports too (`import_gold`, `import_examples`): a labelled example (``text``,
``mention``, ``entity``, optional ``image``; the plain MEL layout, or what a data-set reader such as
`gemel.data.readers.read_dataset` yields for WikiMEL / WikiDiverse) becomes a ``search`` decision of one named
annotator, or ``nil`` where the entity is empty. A gold label that already is that annotator's current
decision on the input is skipped, so importing the same file twice adds nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .errors import AnnotationError, ImportFormatError, MissingImageError
from .images import find_stored
from .store import Store

logger = logging.getLogger(__name__)

GOLD_FIELDS = ("text", "mention", "entity")  # a labelled example; "image", "start"/"end" are optional
FIELDS = ("image", "text", "mention", "entity", "annotator", "decision", "time", "comment", "model_entity",
          "candidates", "profile", "mapper_version", "mention_start", "mention_end", "image_sha256")
_REQUIRED = ("text", "mention", "annotator", "decision")


def images_folder(out: str | Path) -> Path:
    """Folder where an export to `out` puts its images: `<out stem>_images` beside it."""
    out = Path(out)
    return out.parent / f"{out.stem}_images"


def export_records(store: Store, out: str | Path) -> list[dict[str, Any]]:
    """The export records of `store`'s current decisions, copying images next to `out`."""
    folder = images_folder(out)
    return [_record(d, _copy_image(store, d, folder, Path(out).parent)) for d in store.decisions()]


def _record(d: dict[str, Any], image: str | None) -> dict[str, Any]:
    rec = {k: d.get(k) for k in FIELDS}
    rec["image"] = image
    return rec


def _copy_image(store: Store, d: dict[str, Any], folder: Path, base: Path) -> str | None:
    if d["image_sha256"] is None:
        return None
    source = None if store.images_dir is None else find_stored(store.images_dir, d["image_sha256"])
    if source is None:
        raise MissingImageError(
            f"the stored image {d['image_path']!r} of correction {d['id']} is missing from "
            f"{store.images_dir}; restore the images folder next to the database"
        )
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    if not target.exists():
        shutil.copyfile(source, target)
    return target.relative_to(base).as_posix()


def export_jsonl(store: Store, out: str | Path) -> int:
    """Write one JSON line per current decision to `out`; return the number of lines."""
    records = export_records(store, out)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(_json_line(rec) for rec in records)
    logger.info("exported %d decisions to %s", len(records), out)
    return len(records)


# characters that str.splitlines() and some editors take as line ends, escaped to keep one record a line
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _json_line(rec: dict[str, Any]) -> str:
    line = json.dumps(rec, ensure_ascii=False)
    for char, escape in _LINE_BREAKS.items():
        line = line.replace(char, escape)
    return line + "\n"


def export_parquet(store: Store, out: str | Path) -> int:
    """Write the current decisions to a Parquet file (readable by `datasets`); return the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = export_records(store, out)
    for rec in records:
        rec["candidates"] = None if rec["candidates"] is None else json.dumps(rec["candidates"], ensure_ascii=False)
    types = {"mention_start": pa.int64(), "mention_end": pa.int64()}
    schema = pa.schema([(k, types.get(k, pa.string())) for k in FIELDS])
    pq.write_table(pa.Table.from_pylist(records, schema=schema), out)
    logger.info("exported %d decisions to %s", len(records), out)
    return len(records)


def import_jsonl(store: Store, path: str | Path) -> dict[str, int]:
    """Import an export (JSONL) into `store`, all or nothing; return {"imported", "skipped"}."""
    return _import(store, _jsonl_records(Path(path)), Path(path).parent)


def import_parquet(store: Store, path: str | Path) -> dict[str, int]:
    """Import a Parquet export into `store`, all or nothing; return {"imported", "skipped"}."""
    import pyarrow.parquet as pq

    def records() -> Iterator[tuple[str, dict[str, Any]]]:
        for i, rec in enumerate(pq.read_table(path).to_pylist(), start=1):
            if rec.get("candidates") is not None:
                rec["candidates"] = json.loads(rec["candidates"])
            yield f"{path}: row {i}", rec

    return _import(store, records(), Path(path).parent)


def import_file(store: Store, path: str | Path, annotator: str | None = None,
                image_dir: str | Path | None = None) -> dict[str, int]:
    """Import a `.parquet` or JSONL file (chosen by its suffix): an export, or with ``annotator`` a labelled
    data set whose records (text, mention, entity, image) become that annotator's decisions (`import_gold`; its
    images relative to ``image_dir``, default the file's folder)."""
    if annotator is not None:
        return import_gold(store, path, annotator, image_dir)
    if Path(path).suffix.lower() == ".parquet":
        return import_parquet(store, path)
    return import_jsonl(store, path)


def import_gold(store: Store, path: str | Path, annotator: str, image_dir: str | Path | None = None
                ) -> dict[str, int]:
    """Import labelled examples (JSONL, or `.parquet`, with ``text``, ``mention``, ``entity`` (empty or null:
    NIL) and an optional ``image`` relative to ``image_dir``, default the file's folder) as ``annotator``'s
    decisions, all or nothing;
    return {"imported", "skipped"} (skipped: already that annotator's current decision)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        rows: Iterable[tuple[str, Any]] = ((f"{path}: row {i}", r)
                                           for i, r in enumerate(pq.read_table(path).to_pylist(), start=1))
    else:
        rows = _jsonl_records(path)
    check_annotator_name(annotator)
    base = Path(image_dir) if image_dir is not None else path.parent
    return _import(store, ((where, gold_record(where, rec, annotator)) for where, rec in rows), base, gold=True)


def import_examples(store: Store, examples: Iterable[Any], annotator: str, source: str | Path) -> dict[str, int]:
    """Import a data-set reader's examples (objects with ``text``, ``mention``, ``entity``, ``image`` and
    ``meta``, as `gemel.data.readers` yields them) as ``annotator``'s decisions, all or nothing. A mention that the
    data set gives not verbatim in its text (``meta["verbatim"] is False``) is stored as the closest span
    (``meta["mention_span"]``), the data set's wording kept in the comment; a missing image makes the decision
    text-only. Returns {"imported", "skipped", "not_verbatim", "missing_images"}."""
    check_annotator_name(annotator)
    counts = {"not_verbatim": 0, "missing_images": 0}

    def records() -> Iterator[tuple[str, dict[str, Any]]]:
        for i, ex in enumerate(examples, start=1):
            where = f"{source}: example {i}" + (f" (id {ex.id})" if getattr(ex, "id", None) else "")
            rec = _example_record(ex)
            counts["not_verbatim"] += rec.get("comment") is not None
            counts["missing_images"] += "image_missing" in (getattr(ex, "meta", None) or {})
            yield where, gold_record(where, rec, annotator)

    result = _import(store, records(), Path(source).parent, gold=True)
    return {**result, **counts}


def _example_record(ex: Any) -> dict[str, Any]:
    meta = getattr(ex, "meta", None) or {}
    rec = {"text": ex.text, "mention": ex.mention, "entity": ex.entity, "image": ex.image}
    span = meta.get("mention_span")
    if meta.get("verbatim") is False and span:
        start, end = int(span[0]), int(span[1])
        rec.update(mention=ex.text[start:end], start=start, end=end,
                   comment=f"mention as given in the data set: {ex.mention!r}")
    return rec


def check_annotator_name(annotator: Any) -> str:
    if not isinstance(annotator, str) or not annotator.strip():
        raise ImportFormatError(f"--annotator {annotator!r} is not a name; pass who the gold labels are from, "
                                "e.g. --annotator gold")
    return annotator.strip()


def gold_record(where: str, rec: Any, annotator: str) -> dict[str, Any]:
    """A labelled example as an import record: a ``search`` decision of ``annotator`` on its entity, or
    ``nil`` when the entity is empty or null."""
    if not isinstance(rec, dict) or any(k not in rec for k in GOLD_FIELDS):
        raise ImportFormatError(f"{where}: a labelled record needs the fields {list(GOLD_FIELDS)} (entity empty or "
                                f"null for NIL), and optionally image; got {str(rec)[:80]}")
    entity = rec["entity"]
    if entity is not None and not isinstance(entity, str):
        raise ImportFormatError(f"{where}: entity {entity!r} must be a KB title, or empty / null for NIL")
    entity = (entity or "").strip() or None
    return {"text": rec["text"], "mention": rec["mention"], "image": rec.get("image"),
            "mention_start": rec.get("mention_start", rec.get("start")),
            "mention_end": rec.get("mention_end", rec.get("end")), "comment": rec.get("comment"),
            "annotator": annotator.strip(), "decision": "search" if entity else "nil", "entity": entity}


def _jsonl_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if not path.is_file():
        raise ImportFormatError(f"import file {str(path)!r} does not exist; check the path")
    with open(path, encoding="utf-8") as f:
        lineno = 0
        try:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    yield f"{path}: line {lineno}", _json_object(line, f"{path}: line {lineno}")
        except UnicodeDecodeError as e:
            raise ImportFormatError(
                f"{path}: line {lineno + 1} is not UTF-8 text; import JSONL, or Parquet with a .parquet suffix"
            ) from e


def _json_object(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise ImportFormatError(f"{where}: not valid JSON ({e.msg}); each line must be one JSON object") from e


def _import(store: Store, records: Iterable[tuple[str, dict[str, Any]]], base: Path,
            gold: bool = False) -> dict[str, int]:
    prepared = [_prepare(store, where, rec, base) for where, rec in tqdm(records, desc="import", disable=None, leave=False)]
    known = 0
    if gold:  # gold has no decision time: skip what already is the annotator's current label on the input
        current = {(d["input_key"], d["annotator"], d["decision"], d["entity"]) for d in store.decisions()}
        new = [r for r in prepared if (r["input_key"], r["annotator"], r["decision"], r["entity"]) not in current]
        known, prepared = len(prepared) - len(new), new
    ids = store.record_many(prepared, skip_existing=True) if prepared else []
    imported = sum(i is not None for i in ids)
    skipped = len(ids) - imported + known
    logger.info("imported %d decisions, skipped %d already present", imported, skipped)
    return {"imported": imported, "skipped": skipped}


def _prepare(store: Store, where: str, rec: Any, base: Path) -> dict[str, Any]:
    if not isinstance(rec, dict) or any(k not in rec for k in _REQUIRED):
        hint = ""
        if isinstance(rec, dict) and all(k in rec for k in GOLD_FIELDS):
            hint = (" (this is a labelled example, not an export of a store: pass --annotator NAME to import it as "
                    "NAME's decisions)")
        raise ImportFormatError(f"{where}: a record needs the fields {list(_REQUIRED)}{hint}; got {str(rec)[:80]}")
    try:
        row = store.prepare(
            rec["annotator"], rec["decision"], rec.get("entity"), text=rec["text"], mention=rec["mention"],
            start=rec.get("mention_start"), end=rec.get("mention_end"), image=_image(store, rec, base),
            model_entity=rec.get("model_entity"), candidates=rec.get("candidates"), profile=rec.get("profile"),
            mapper_version=rec.get("mapper_version"), comment=rec.get("comment"), at=rec.get("time"),
        )
    except AnnotationError as e:
        raise type(e)(f"{where}: {e}") from e
    expected = rec.get("image_sha256")
    if expected is not None and row["image_sha256"] != expected:
        raise ImportFormatError(f"{where}: the image file's sha256 is {row['image_sha256']}, not {expected}")
    return row


def _image(store: Store, rec: dict[str, Any], base: Path) -> Path | None:
    if rec.get("image") is None:
        return None
    if "://" in str(rec["image"]):
        raise MissingImageError(f"image {rec['image']!r} is a URL and nothing is downloaded: download the images and "
                                "give their folder (gemel annotations import --image-dir DIR)")
    path = Path(rec["image"])
    path = path if path.is_absolute() else base / path
    if path.is_file():
        return path
    stored = None if store.images_dir is None or not rec.get("image_sha256") else find_stored(
        store.images_dir, rec["image_sha256"])
    if stored is None:
        raise MissingImageError(f"image {rec['image']!r} is not under {base}: copy it there, or give its folder "
                                f"(gemel annotations import --image-dir DIR)")
    return stored
