"""``gemel fit-ranker``: fit the learned decision rule on labelled data and people's decisions (see
`gemel.training.ranker`); registered by `gemel.cli.main`.

    gemel fit-ranker --data gemel/assets/seed/examples.jsonl assets/eval/dev.jsonl --out ranker.json
    gemel fit-ranker --data assets/eval/dev.jsonl --annotations data/gemel.db --out ranker.json
    gemel fit-ranker --profile hub      # what the profile's first start does ([rank] fit_at_start): the shipped
                                        # fitting data, the ranker cached for its image scorer

A profile with ``[rank] fit_at_start`` needs neither ``--data`` nor ``--out``: without them it is fitted on the
shipped fitting data (`gemel.training.first_start.FITTING_DATA`) and written where the profile's next start reads it
(``<cache>/rankers/<image scorer version>.json``). Every artifact records the image scorer it was fitted with.

Each labelled mention is linked once (kept out of its own prompt) to gather its candidates' features; those are
cached per data file (by content, profile and mapper), so refitting after a new correction only links what is
new. Five-fold cross-validation chooses the penalty and the NIL threshold; the artifact records the data it saw.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from gemel.cli.main import UsageError

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-ranker", help="fit the learned decision rule on labelled data (seconds once cached)",
                       description="Link every labelled mention once to gather its candidates' features, then fit "
                                   "the conditional-logit ranker with cross-validation and write its artifact "
                                   "(name it in a profile: [rank] model = \"ranker.json\").")
    p.add_argument("--data", nargs="*", default=[], metavar="FILE",
                   help="labelled data (JSONL, GEMEL, WikiDiverse, WikiMEL); never the test split you report")
    p.add_argument("--annotations", metavar="DB", help="also every decision of an annotation store (each one "
                                                       "linked with the store's other decisions loaded)")
    p.add_argument("--groups", nargs="*", default=[], metavar="FILE",
                   help="also the features another fit gathered (the .groups.jsonl.gz beside its artifact), e.g. "
                        "captions in an art style linked with a scorer trained without it (docs/RANKER.md)")
    p.add_argument("--out", metavar="JSON", help="the ranker artifact to write (a profile with [rank] fit_at_start: "
                                                 "by default where its start reads it, the cache)")
    p.add_argument("--profile", default="offline", help="profile name or .toml path (default: offline)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a profile value, e.g. --set demos.n=8")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--trees", action="store_true", help="also cross-validate a small tree ensemble and keep it when "
                                                        "clearly more accurate (off by default: docs/RANKER.md)")
    p.add_argument("--without-picture", action="store_true",
                   help="fit it with every feature the picture makes at 0: it decides from the text alone and fits "
                        "any image scorer (the rule of a profile with [rank] model = \"\")")
    p.add_argument("--cache", metavar="DIR", help="where gathered features are kept (default: the project cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_fit_ranker)


def run_fit_ranker(args: argparse.Namespace) -> int:
    from gemel.cli.eval import profile_with
    from gemel.rank.model import fitted_path, scorer_version
    from gemel.training.first_start import fit_for_profile, save_fitted
    from gemel.training.ranker import KINDS, WITH_TREES, fit_with_cv

    config = profile_with(args.profile, args.set)
    first_start = config.rank.fit_at_start and not config.rank.active
    if not args.data and not args.annotations and not args.groups and not first_start:
        raise UsageError("give labelled data: --data FILE [FILE ...] and/or --annotations DB")
    if not args.out and not first_start:
        raise UsageError("give --out JSON, the ranker artifact to write")
    if args.folds < 2:
        raise UsageError(f"--folds {args.folds} must be >= 2")
    for flag, files in (("--data", args.data), ("--groups", args.groups)):
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise UsageError(f"{flag} file {missing[0]!r} does not exist")
    linker = gathering_linker(config)
    if first_start and not args.data and not args.annotations and not args.groups:  # the profile's first start
        ranker, out = fit_for_profile(linker, out=args.out, folds=args.folds, progress=not args.quiet)
    else:
        gathering = gatherer(linker)
        groups = []
        for path in args.data:
            groups += groups_of_file(gathering, Path(path), args.cache, not args.quiet)
        if args.annotations:
            groups += groups_of_store(gathering, args.annotations, not args.quiet, args.cache)
        groups += gathered_elsewhere(args.groups)
        ranker = fit_with_cv(groups, files=[*args.data, *([args.annotations] if args.annotations else []),
                                            *args.groups], k=args.folds, kinds=WITH_TREES if args.trees else KINDS,
                             picture=not args.without_picture)
        if args.annotations:
            hash_store_by_decisions(ranker.manifest, args.annotations)
        if args.groups:
            ranker.manifest["groups_from"] = [gathered_by(path) for path in args.groups]
        out = save_fitted(ranker, groups, args.out or fitted_path(scorer_version(linker.image_scorer)), linker)
    m = ranker.manifest
    scores = f"fitted on the scores of {m['scorer']['version']}" if ranker.reads_picture else "reads no picture"
    print(f"ranker written to {out} (its gathered features to {m['groups']}; {scores}): {m['mentions']} mentions ({m['gold_among_candidates']} with the gold entity "
          f"among the candidates, {m['nil']} NIL), {m['cv']['folds']}-fold CV accuracy {m['cv']['accuracy']:.3f}, "
          f"{ranker_kind(ranker)}, NIL below p={ranker.nil_below:.3f}")
    return 0


def gathering_linker(config: Any) -> Any:
    """The profile's linker with a ranker that decides nothing (the features are gathered, then refitted): not
    the shipped one, which may have been fitted on other features than this code computes (a feature added or
    removed is refitted this way)."""
    from gemel.linker import Linker
    from gemel.rank.features import NAMES
    from gemel.rank.model import Ranker
    from gemel.sources import cache_dir

    tag = hashlib.sha256(json.dumps(NAMES).encode()).hexdigest()[:12]
    uniform = Ranker.uniform().save(cache_dir("rankers") / f"uniform-{tag}.json")  # variants read it again
    return Linker.load(config.replace(rank={"fit_at_start": False, "model": str(uniform)}))


def gathered_elsewhere(paths: list[str]) -> list:
    """The groups of ``--groups`` files, refused with a sentence when a file is not one."""
    from gemel.training.ranker import read_groups

    groups = []
    for path in paths:
        try:
            groups += read_groups(path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"--groups {path!r} is not a file of gathered features (the .groups.jsonl.gz "
                             f"`gemel fit-ranker` writes beside its artifact): {e}") from None
    return groups


def gathered_by(path: str) -> dict[str, Any]:
    """A ``--groups`` file and the image scorer its features were gathered with (from the artifact beside it,
    ``X.json`` for ``X.groups.jsonl.gz``; "unknown" without one)."""
    artifact = Path(path.removesuffix(".groups.jsonl.gz") + ".json")
    try:
        scorer = json.loads(artifact.read_text())["manifest"]["scorer"]["version"]
    except (OSError, ValueError, KeyError, TypeError):
        scorer = "unknown"
    return {"file": path, "scorer": scorer}


def ranker_kind(ranker: Any) -> str:
    """The model family cross-validation chose, with its CV accuracy beside the other's."""
    cv = ranker.manifest.get("cv", {}).get("by_kind", {})
    others = ", ".join(f"{k} {a:.3f}" for k, a in cv.items())
    kind = f"conditional logit (l2 {ranker.l2:g})" if hasattr(ranker, "l2") else f"{len(ranker.trees)} trees"
    return f"{kind}, chosen by CV ({others})" if others else kind


def gatherer(linker: Any) -> Any:
    """A variant that links as the learned rule does (its candidates) without deciding anything."""
    from gemel.rank.model import Ranker

    return linker.replace(ranker=Ranker.uniform())


def _cached(linker: Any, path: Path, cache: str | None, content: bytes | None = None) -> Path:
    """Where the gathered features of a data file or store live: keyed by its content (the file's bytes, or
    ``content``), the profile, the mapper, the feature names, `GATHER_VERSION` and the reference pictures."""
    from gemel.rank.features import NAMES
    from gemel.sources import cache_dir
    from gemel.training.ranker import GATHER_VERSION

    data = path.read_bytes() if content is None else content
    config = linker.config.replace(rank={"model": ""}).to_dict()  # the ranker a profile names gathers nothing
    reference = linker.image_signal.reference
    pictures = reference.pictures if reference is not None else ()  # the level labelled pictures must beat
    key = hashlib.sha256(data + json.dumps([config, linker.mapper_version, NAMES, GATHER_VERSION, pictures],
                                           sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(cache or cache_dir("ranker-groups")) / f"{path.stem}-{key}.jsonl"


def groups_of_file(linker: Any, path: Path, cache: str | None, progress: bool) -> list:
    """The groups of a data file, read from the cache when this file, profile and mapper were gathered before."""
    from gemel.data.evaluate import check_images, load_examples
    from gemel.training.ranker import collect, read_groups, write_groups

    cached = _cached(linker, path, cache)
    if cached.is_file():
        log.info("features of %s read from %s", path, cached)
        return read_groups(cached)
    examples = load_examples(path)
    check_images(examples)
    groups = collect(linker, examples, progress=progress, desc=path.stem, file=path.name)
    write_groups(groups, cached)
    return groups


def decided_bytes(examples: list) -> bytes:
    """A store's decisions as bytes: what its gathered features and its manifest hash are keyed by (opening a store
    rewrites the SQLite file, so the file's own hash changes with every refit while the decisions stay)."""
    return json.dumps([e.to_dict() for e in examples] + ["as saved"], sort_keys=True, default=str).encode()


def hash_store_by_decisions(manifest: dict, db: str) -> None:
    """The manifest's entry for the store ``db``: the sha256 of its decisions instead of the file's bytes."""
    from gemel.cli.eval import examples_from_store

    for entry in manifest.get("data", []):
        if entry.get("file") == str(db):
            entry["sha256"] = hashlib.sha256(decided_bytes(examples_from_store(db, include_nil=True))).hexdigest()
            entry["of"] = "its decisions"


def groups_of_store(linker: Any, db: str, progress: bool, cache: str | None = None) -> list:
    """The groups of an annotation store's decisions, each linked with the store as it was when it was saved
    (the decisions before it loaded, itself and the later ones left out); cached like a data file, by the
    decisions."""
    from annotations.loop import open_loop  # the CLI layer is where gemel meets the store
    from gemel.cli.eval import examples_from_store
    from gemel.training.ranker import collect, read_groups, write_groups

    examples = examples_from_store(db, include_nil=True)
    cached = _cached(linker, Path(db), cache, decided_bytes(examples))  # by the decisions: SQLite rewrites the file
    if cached.is_file():
        return read_groups(cached)
    loaded = linker.replace(pool=linker.labelled_pool.with_examples())  # the caller's pool stays as it was
    open_loop(db, loaded)
    groups = collect(loaded, examples, progress=progress, desc="decisions", as_saved=True, file=Path(db).name)
    write_groups(groups, cached)
    return groups
