"""``gemel eval`` (see `gemel.data.evaluate`); registered by `gemel.cli.main`.

    gemel eval --profile offline --data assets/eval/test.jsonl --mapper runs/seed/mapper.pt --report test.json
    gemel eval --profile offline --data assets/eval/test.jsonl --baseline
    gemel eval --profile paper --data Wikidata-MEL.json --split splits.json:test \
        --pool Wikidata-MEL.json --pool-split splits.json:train
"""

from __future__ import annotations

import argparse
import logging
import tomllib
from pathlib import Path
from typing import Any, Sequence

from gemel.cli.main import UsageError
from gemel.config import ProfileError
from gemel.types import Example

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    _add_eval(sub)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="offline", help="profile name or .toml path (default: offline)")
    p.add_argument("--format", default="auto",
                   help="data format: auto, jsonl, gemel, wikidiverse, wikimel, richpedia")
    p.add_argument("--split", metavar="FILE:NAME", help="use one split of the data file, named in a split file, "
                   "e.g. splits.json:test (MEL-GHMFC's official split of the original WikiMEL release)")
    p.add_argument("--image-dir", help="folder of the data's images (default: next to the data file)")
    p.add_argument("--features", metavar="HDF5", help="precomputed image features instead of images (GEMEL's "
                                                      "clip_vit_large_patch14_1024.hdf5; keys img_url / img_name)")
    p.add_argument("--pool", metavar="FILE", help="demonstration pool to use instead of the profile's seed pool "
                                                  "(the paper: the data set's train.json)")
    p.add_argument("--pool-split", metavar="FILE:NAME", help="use one split of the --pool file, e.g. "
                                                             "splits.json:train")
    p.add_argument("--mapper", metavar="CKPT", help="mapper checkpoint (ours .pt or an official .pkl)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a profile value, e.g. --set decode.mode=beam --set decode.candidates=0")
    p.add_argument("--limit", type=int, help="use the first N examples only")
    p.add_argument("--drop-nil", action="store_true", help="leave out gold-NIL mentions (as the paper does)")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy of a profile (and mapper) on a labelled data set",
                       description="Link every mention of a data set and report exact-match accuracy (the "
                                   "paper's metric) with a Wilson interval, recall@k, NIL precision/recall and "
                                   "accuracy per type, beside the embedding-lookup baseline.")
    p.add_argument("--data", required=True, metavar="FILE",
                   help="labelled data (JSONL, GEMEL, WikiDiverse, WikiMEL, Richpedia-MEL)")
    _common(p)
    p.add_argument("--report", metavar="JSON", help="write the report (figures + one row per mention) here")
    p.add_argument("--baseline", action="store_true", help="evaluate the embedding-lookup baseline only (no LLM)")
    p.add_argument("--candidates", choices=("retrieval", "from-data"), default="retrieval",
                   help="where each mention's candidates come from: the profile's retrieval (default), or the "
                        "data file's own lists (WikiDiverse *_w_10cands.json), as several MEL papers evaluate")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)


# ---- shared -------------------------------------------------------------------------------------------
def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["decode.mode=beam", "decode.candidates=0"]`` -> ``{"decode": {"mode": "beam", "candidates": 0}}``;
    values are read as TOML (numbers, booleans, quoted strings), else taken as plain strings."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            raise ProfileError(f"--set {item!r} must look like SECTION.KEY=VALUE, e.g. decode.num_beams=1")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out.setdefault(section, {})[name] = tuple(value) if isinstance(value, list) else value
    return out


def profile_with(profile: str, sets: list[str], mapper: str | None = None) -> Any:
    """The config of ``profile`` with ``--set`` overrides and ``--mapper`` applied."""
    from gemel.config import load_profile

    sections = parse_sets(sets)
    if mapper:
        sections.setdefault("mapper", {})["checkpoint"] = str(Path(mapper).resolve())
    config = load_profile(profile)
    known = ("llm", "vision", "embedder", "kb", "mapper", "demos", "decode", "image", "rank")
    unknown = sorted(set(sections) - set(known))
    if unknown:
        raise ProfileError(f"--set: unknown section(s) {unknown}; known: {list(known)}")
    try:
        return config.replace(**sections) if sections else config
    except TypeError as e:
        raise ProfileError(f"--set: {e}") from e


def load_for_eval(args: argparse.Namespace) -> Any:
    """The linker of ``--profile`` with ``--mapper``/``--set`` applied, its pool and features as asked."""
    from gemel.linker import Linker

    linker = Linker.load(profile_with(args.profile, args.set, args.mapper))
    if args.features:
        from gemel.data.evaluate import with_precomputed_features

        linker, _ = with_precomputed_features(linker, args.features)
    if args.pool:
        linker = with_pool(linker, args.pool, args.format, args.image_dir, split=getattr(args, "pool_split", None))
    return linker


def with_pool(linker: Any, path: str, fmt: str = "auto", image_dir: str | None = None, *,
              split: str | None = None) -> Any:
    """A variant of ``linker`` whose demonstration pool is the labelled examples of ``path`` (of its split
    ``split``, ``FILE:NAME``, when given; the profile's seed pool is dropped)."""
    from gemel.data.evaluate import load_examples, with_feature_keys

    examples = load_examples(path, fmt, image_dir=image_dir, split=split)
    features = getattr(linker.features, "features", None)
    if features is not None:
        examples = with_feature_keys(examples, features)
    variant = linker.replace(pool=examples)
    log.info("demonstration pool: %d examples from %s%s", len(variant.labelled_pool), path,
             f", split {split}" if split else "")
    return variant


def check_data_options(args: argparse.Namespace) -> None:
    """Refuse, before any model loads, a split without the file it splits and a split file that cannot be read
    (`gemel.data.readers.read_split` names the splits the file has)."""
    from gemel.data.readers import read_split

    for option, target in (("split", "data"), ("pool_split", "pool")):
        spec = getattr(args, option, None)
        if spec and not getattr(args, target, None):
            raise UsageError(f"--{option.replace('_', '-')} {spec} splits the --{target} file: give --{target} too")
        if spec:
            read_split(spec)


def data_line(examples: Sequence[Example], split: str | None) -> str:
    """What `gemel eval` prints of its data: the split when there is one (its name, how many ids it has and
    how many of them were read) and the counts of `gemel.data.readers.summarize`."""
    from gemel.data.readers import read_split, summarize

    line = summarize(examples).line()
    return f"{read_split(split).describe(examples)}: {line}" if split else line


def examples_from_store(db: str, include_nil: bool = False) -> list:
    """The gold examples of an annotation store (one majority label per input), as `Example`s."""
    from annotations.loop import gold_examples  # the CLI layer is where gemel meets the store
    from gemel.types import Example

    return [Example.from_dict(d) for d in gold_examples(db, include_nil)]


def examples_for(args: argparse.Namespace, linker: Any) -> list:
    from gemel.data.evaluate import check_images, load_examples, with_feature_keys

    if getattr(args, "annotations", None):
        examples = examples_from_store(args.annotations, include_nil=True)[: args.limit]
    else:
        examples = load_examples(args.data, args.format, image_dir=args.image_dir, limit=args.limit,
                                 drop_nil=args.drop_nil, split=getattr(args, "split", None))
    features = getattr(linker.features, "features", None)
    if features is not None:
        return with_feature_keys(examples, features)
    check_images(examples)
    return examples


# ---- gemel eval ---------------------------------------------------------------------------------------
def run_eval(args: argparse.Namespace) -> int:
    from gemel.data.evaluate import EvalOptions, check_candidates, evaluate_linker, write_report
    from gemel.data.readers import summarize

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit} must be >= 1")
    check_data_options(args)
    linker = load_for_eval(args)
    examples = examples_for(args, linker)
    from_data = args.candidates == "from-data"
    if from_data and not args.baseline:
        check_candidates(examples)
    summary = summarize(examples)
    print(f"data: {data_line(examples, args.split)}")
    options = EvalOptions(progress=not args.quiet, candidates_from_data=from_data)
    base = evaluate_linker(linker, examples, baseline=True, options=options)
    result = base if args.baseline else evaluate_linker(linker, examples, options=options)
    print(f"{'baseline (embedding lookup)' if args.baseline else 'GEMEL'}: profile {linker.config.name!r}, "
          f"mapper {result.info['mapper']}, {args.data}")
    print(result.report.table())
    if not args.baseline:
        lo, hi = base.report.ci
        print(f"embedding-lookup baseline: accuracy {base.accuracy:.4f} [{lo:.4f}, {hi:.4f}]")
    print(f"time: {result.seconds / max(1, len(examples)):.2f} s per mention")
    if args.report:
        extra: dict[str, Any] = {"data": str(args.data), "data_summary": summary.to_dict()}
        if args.split:
            from gemel.data.readers import read_split

            extra["split"] = read_split(args.split).to_dict(examples)
        if not args.baseline:
            extra["baseline"] = {k: v for k, v in base.to_dict().items() if k != "predictions"}
        print(f"report: {write_report(result, args.report, **extra)}")
    return 0
