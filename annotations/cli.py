"""`gemel annotations ...`: import, export and statistics of the annotation store from a shell.

`add_subparsers(subparsers)` registers the `annotations` command on the `gemel` dispatcher (which
calls `args.func(args)`, i.e. `run`); `build_parser()` makes a stand-alone parser for tests and for
`python -m annotations.cli`.

    gemel annotations import FILE.jsonl --db DB                       # an export of a store
    gemel annotations import gold.jsonl --annotator gold --db DB       # labelled data: text, mention, entity, image
    gemel annotations import wikimel.json --format wikimel --image-dir imgs --annotator gold --db DB
    gemel annotations import Wikidata-MEL.json --format wikimel --split splits.json:train --annotator gold --db DB
    gemel annotations export --db DB --out FILE [--format jsonl|parquet]
    gemel annotations stats --db DB [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import AnnotationError, ImportFormatError
from .io import (
    export_jsonl,
    export_parquet,
    images_folder,
    import_examples,
    import_file,
)
from .store import Store, default_db_path

# formats of labelled data sets whose readers live in `gemel.data.readers` (handed in by the `gemel` dispatcher)
DATASET_FORMATS = ("gemel", "wikidiverse", "wikimel", "richpedia")
IMPORT_FORMATS = ("export", "jsonl", *DATASET_FORMATS)
_DB_HELP = "SQLite file of the store (default: $GEMEL_DB, else /data/gemel.db on Spaces, else ./data/gemel.db)"


def add_subparsers(subparsers: Any, read_dataset: Callable[..., Iterable[Any]] | None = None
                   ) -> argparse.ArgumentParser:
    """Register `annotations` (with import / export / stats) on an argparse sub-parsers object.

    ``read_dataset(path, format, image_dir, split=None)`` reads the data-set formats of ``import --format``
    (WikiMEL, Richpedia-MEL, WikiDiverse, GEMEL's files; ``split`` is ``import --split``); the `gemel`
    dispatcher hands in `gemel.data.readers.read_dataset`, so that this package never imports the model library
    itself."""
    parser = subparsers.add_parser(
        "annotations", help="import, export and summarise human corrections",
        description="Import, export and summarise the corrections stored in the annotation database.",
    )
    parser.set_defaults(func=run, read_dataset=read_dataset)
    commands = parser.add_subparsers(dest="annotations_command", metavar="COMMAND", required=True)
    _add_import(commands)
    _add_export(commands)
    _add_stats(commands)
    return parser


def _add_import(commands: Any) -> None:
    p = commands.add_parser("import", help="import an export, or labelled data as one annotator's decisions",
                            description="Import corrections from a JSONL or .parquet export of a store, or, with "
                            "--annotator, a labelled data set (gold) as that annotator's decisions: each record "
                            "becomes a 'search' decision on its entity, or 'nil' where the entity is empty. Images "
                            "are read relative to the file (or --image-dir) and copied into the store. "
                            "Re-importing skips records already present.")
    p.add_argument("file", type=Path, help="file to import (.jsonl, or .parquet)")
    p.add_argument("--db", type=Path, default=None, help=_DB_HELP)
    p.add_argument("--annotator", metavar="NAME", default=None,
                   help="import labelled data (text, mention, entity, image) as NAME's decisions")
    p.add_argument("--format", choices=IMPORT_FORMATS, default=None,
                   help="export: a store's export (default without --annotator); jsonl: labelled JSON lines "
                        "{text, mention, entity, image} (default with --annotator); gemel, wikidiverse, wikimel, "
                        "richpedia: the data sets' released files, read as `gemel eval --format` reads them")
    p.add_argument("--split", metavar="FILE:NAME", default=None,
                   help="with a data-set --format: import one split of the file, named in a split file, e.g. "
                        "splits.json:train (MEL-GHMFC's official split of the original WikiMEL release)")
    p.add_argument("--image-dir", type=Path, default=None,
                   help="folder of a data set's images (default: next to the file); missing images make "
                        "text-only decisions")


def _add_export(commands: Any) -> None:
    p = commands.add_parser("export", help="export the current decisions (JSONL or Parquet)",
                            description="Write one record per current decision (latest per input and "
                            "annotator); images are copied to <out stem>_images/ next to the file.")
    p.add_argument("--db", type=Path, default=None, help=_DB_HELP)
    p.add_argument("--out", type=Path, required=True, help="output file")
    p.add_argument("--format", choices=("jsonl", "parquet"), default=None,
                   help="file format (default: from the --out suffix, jsonl unless .parquet)")


def _add_stats(commands: Any) -> None:
    p = commands.add_parser("stats", help="counts, agreement and model accuracy",
                            description="Print counts per annotator and decision, corrections per day, "
                            "agreement between annotators and model accuracy per mapper version.")
    p.add_argument("--db", type=Path, default=None, help=_DB_HELP)
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")


def build_parser() -> argparse.ArgumentParser:
    """A `gemel`-like top-level parser with only the `annotations` command."""
    parser = argparse.ArgumentParser(prog="gemel", description="GEMEL Studio command line")
    add_subparsers(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    return parser


def run(args: argparse.Namespace) -> int:
    """Run a parsed `annotations` command; return the exit status (1 with a message on error)."""
    db = args.db if args.db is not None else default_db_path()
    try:
        if args.annotations_command != "import" and not Path(db).is_file():
            raise AnnotationError(f"no annotation database at {db}; pass --db or set $GEMEL_DB")
        with Store.open(db) as store:
            return _COMMANDS[args.annotations_command](store, args)
    except AnnotationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _import(store: Store, args: argparse.Namespace) -> int:
    fmt = args.format or ("jsonl" if args.annotator is not None else "export")
    if fmt == "export" and args.annotator is not None:
        raise ImportFormatError("an export names the annotator of every record: leave out --annotator, or pass "
                                "--format jsonl for labelled data {text, mention, entity, image}")
    if fmt != "export" and args.annotator is None:
        raise ImportFormatError(f"--format {fmt} imports labelled data: pass --annotator NAME, whose decisions "
                                "the gold labels become")
    if getattr(args, "split", None) and fmt not in DATASET_FORMATS:
        raise ImportFormatError(f"--split selects records of a data set's released file: pass --format with one "
                                f"of {', '.join(DATASET_FORMATS)} (not {fmt})")
    if fmt in DATASET_FORMATS:
        result = _import_dataset(store, args, fmt)
    else:
        result = import_file(store, args.file, annotator=args.annotator, image_dir=args.image_dir)
    print(f"imported {_count(result['imported'], 'decision')}, skipped {result['skipped']} already present, "
          f"into {store.path}")
    if result.get("not_verbatim"):
        print(f"  {result['not_verbatim']} mentions not verbatim in their text were stored at their closest span "
              "(the data set's wording is in the comment)")
    if result.get("missing_images"):
        print(f"  {result['missing_images']} images were not found under {args.image_dir or args.file.parent}: "
              "those decisions are text-only")
    return 0


def _import_dataset(store: Store, args: argparse.Namespace, fmt: str) -> dict[str, int]:
    read = getattr(args, "read_dataset", None)
    if read is None:
        raise ImportFormatError(f"--format {fmt} needs the data-set readers of the gemel package: run "
                                "`gemel annotations import ...` (this stand-alone CLI reads jsonl and exports)")
    image_dir = args.image_dir if args.image_dir is not None else args.file.parent
    split = getattr(args, "split", None)
    examples = read(args.file, fmt, image_dir, split=split) if split else read(args.file, fmt, image_dir)
    return import_examples(store, examples, args.annotator, args.file)


def _export(store: Store, args: argparse.Namespace) -> int:
    fmt = args.format or ("parquet" if args.out.suffix.lower() == ".parquet" else "jsonl")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    n = (export_parquet if fmt == "parquet" else export_jsonl)(store, args.out)
    print(f"exported {_count(n, 'decision')} to {args.out} ({fmt}; images in {images_folder(args.out)})")
    return 0


def _stats(store: Store, args: argparse.Namespace) -> int:
    stats = store.stats()
    print(json.dumps(stats, indent=2, ensure_ascii=False) if args.json else format_stats(stats))
    return 0


_COMMANDS = {"import": _import, "export": _export, "stats": _stats}


def format_stats(stats: dict[str, Any]) -> str:
    """A short human-readable summary of `Store.stats()`."""
    t, a = stats["totals"], stats["agreement"]
    head = (f"{_count(t['current_decisions'], 'current decision')} ({_count(t['corrections'], 'correction')}) on "
            f"{_count(t['inputs'], 'input')}; {_count(t['queue_items'], 'queue item')}")
    lines = [head]
    for who, counts in sorted(stats["per_annotator"].items()):
        lines.append(f"  {who}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    for m in stats["model_accuracy"]:
        lines.append(f"  model accuracy, mapper {m['mapper_version']}: {m['accuracy']:.1%} of {m['decisions']}")
    if a["items"]:
        lines.append(f"  agreement on {_count(a['items'], 'shared input')}: {_num(a['percent_agreement'], '%')}, "
                     f"Fleiss kappa {_num(a['fleiss_kappa'])}, {_count(a['disagreements'], 'disagreement')}")
    if stats["per_day"]:
        lines.append("  per day: " + ", ".join(f"{d['day']}={d['corrections']}" for d in stats["per_day"][-7:]))
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    """``n`` and the noun, singular for exactly 1 ("1 input", "2 inputs"): "1 inputs" reads as a slip."""
    return f"{n} {noun if n == 1 else noun + 's'}"


def _num(x: float | None, unit: str = "") -> str:
    return "undefined" if x is None else f"{x:.3f}{unit}" if not unit else f"{x:.1f}{unit}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m annotations.cli`."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
