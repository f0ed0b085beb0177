"""``gemel corpus``: build the image–entity corpus and train the image scorer on it; registered by `gemel.cli.main`.

    gemel corpus build [--sources noto twemoji ...] [--limit N]     # cached under the project cache
    gemel corpus train-projection [--out scorer.pt]                 # <= a few minutes on 2 cores
    gemel corpus captions --out data/captions                       # synthetic captions, groups, flags
    gemel corpus train-projection --hold-out-style twemoji          # a scorer that never saw one style
    gemel corpus stamps --out data/captions                         # real photos: Tux Paint's stamps
    gemel corpus top --image photo.png [--k 10]                      # what the image alone suggests
    gemel corpus reference [--size 512]                              # the reference pictures the ranker reads
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from gemel.training.corpus_sources import READERS

    p = sub.add_parser("corpus", help="image–entity corpus from packaged pictures; train the image scorer",
                       description="Build a corpus of named pictures linked to KB titles, train the image scorer.")
    csub = p.add_subparsers(title="corpus commands", metavar="CMD")
    b = csub.add_parser("build", help="read, link, render and split the named pictures (cached, resumable)",
                        description="Link packaged pictures (emoji, logos, clip art) to KB titles; writes "
                                    "corpus.jsonl, images/, report.json under the cache (or --out).")
    b.add_argument("--profile", default="offline", help="profile whose KB and embedder to use (default offline)")
    b.add_argument("--sources", nargs="+", default=list(READERS), choices=list(READERS),
                   help=f"sources to read (default: all: {' '.join(READERS)})")
    b.add_argument("--limit", type=int, help="read at most N pictures per source (quick trials)")
    b.add_argument("--out", help="corpus folder (default: <cache>/corpus/<kb>-<hash of sources>)")
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    b.set_defaults(func=run_build)
    t = csub.add_parser("train-projection", help="train the image scorer's projection, fit fusion weights",
                        description="Train the vision-feature -> embedder projection (InfoNCE) on the corpus "
                                    "train split, fit the fusion weights on dev, save the scorer artifact.")
    t.add_argument("--profile", default="offline", help="profile name or .toml path (default offline)")
    t.add_argument("--corpus", help="corpus folder (default: the one `build` writes with all sources)")
    t.add_argument("--out", help="artifact path (default: <corpus>/image_scorer.pt)")
    t.add_argument("--epochs", type=int, help="training epochs (default: ProjectionConfig's, 60, the shipped scorer's)")
    t.add_argument("--hold-out-style", metavar="STYLE",
                   help="train without this art style's pictures (e.g. twemoji), default out "
                        "<corpus>/image_scorer-without-STYLE.pt: the ranker's fitting data in an unfamiliar style")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=run_train_projection)
    c = csub.add_parser("captions", help="write synthetic captions, same-caption groups and the flags set",
                        description="Write OUT/{train,dev}.jsonl (captions per picture), OUT/groups.jsonl "
                                    "(same-caption groups from the test split), OUT/flags.jsonl (held-out style), "
                                    "OUT/recurring.jsonl (recurring entities, captions shared in pairs: the "
                                    "learning curve of corrections) and OUT/mismatched.jsonl (dev captions naming "
                                    "their entity, each beside a picture of another: teaches the ranker that a named "
                                    "mention outweighs the picture).")
    c.add_argument("--profile", default="offline", help="profile whose KB to use (default offline)")
    c.add_argument("--corpus", help="corpus folder (default: the one `build` writes with all sources)")
    c.add_argument("--out", required=True, help="folder to write the JSONL files to")
    c.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    c.add_argument("--hidden", type=float, default=0.0, metavar="SHARE",
                   help="share of captions that name nothing (\"This is the thing in the picture.\"), so that only "
                        "the picture decides: mapper training data (default 0)")
    c.add_argument("--hold-out-style", metavar="STYLE",
                   help="also OUT/style-dev.jsonl (captions on this style's training pictures), "
                        "OUT/style-mismatched.jsonl (those naming their entity, beside another's picture) and "
                        "OUT/groups-dev.jsonl (same-caption groups from dev and those pictures, one line per "
                        "picture): the ranker's fitting data, linked with `train-projection --hold-out-style STYLE`'s "
                        "scorer, which never saw them")
    c.set_defaults(func=run_captions)
    s = csub.add_parser("stamps", help="write the Tux Paint photo set: stamps-dev (fitting) and stamps-test (held out)",
                        description="Write OUT/stamps-dev.jsonl and OUT/stamps-test.jsonl: Debian's Tux Paint "
                                    "stamps that are photographs (assets/corpus/stamps.tsv), split by entity, two "
                                    "captions each (one naming the entity, one naming nothing); the photos, on white "
                                    "as JPEG, under --images.")
    s.add_argument("--profile", default="offline", help="profile whose KB to use (default offline)")
    s.add_argument("--stamps", default=None, help="the stamps folder (default /usr/share/tuxpaint/stamps)")
    s.add_argument("--images", default=None, help="folder for the photos (default: <cache>/stamps)")
    s.add_argument("--out", required=True, help="folder to write the JSONL files to")
    s.add_argument("--seed", type=int, default=0, help="random seed of the caption templates (default 0)")
    s.set_defaults(func=run_stamps)
    q = csub.add_parser("top", help="the KB entities an image alone suggests (image scorer top-k)",
                        description="Print the top-k KB entities of an image by the image scorer.")
    q.add_argument("--image", required=True, help="image file")
    q.add_argument("--scorer", help="artifact (default: <default corpus>/image_scorer.pt)")
    q.add_argument("--profile", default="offline", help="profile name or .toml path (default offline)")
    q.add_argument("--k", type=int, default=10, help="entities to print (default 10)")
    q.set_defaults(func=run_top)
    r = csub.add_parser("reference", help="the reference pictures: how near is near for a query picture",
                        description="Sample training pictures of the corpus (every style), add the seed pool's "
                                    "photos, and save their pooled "
                                    "features and colour layouts: the level a labelled picture must beat to count "
                                    "for the ranker (memory_excess, decision_excess).")
    r.add_argument("--profile", default="offline", help="profile whose vision encoder to use (default offline)")
    r.add_argument("--corpus", help="corpus folder (default: the one `build` writes with all sources)")
    r.add_argument("--size", type=int, help="pictures to keep (default 512)")
    r.add_argument("--seed", type=int, default=0, help="random seed of the sample (default 0)")
    r.add_argument("--out", help="file to write (default: the shipped gemel/assets/models/picture_reference.npz)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.set_defaults(func=run_reference)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def default_corpus(profile: str, sources=None, limit=None) -> Path:
    from gemel.config import load_profile
    from gemel.training.corpus import corpus_dir
    from gemel.training.corpus_sources import READERS

    return corpus_dir(load_profile(profile).kb.name, list(sources or READERS), limit)


def run_build(args: argparse.Namespace) -> int:
    from gemel.training.corpus import NameLinker, build_corpus
    from gemel.training.image_scorer import load_parts

    parts = load_parts(args.profile)
    out = Path(args.out) if args.out else default_corpus(args.profile, args.sources, args.limit)
    linker = NameLinker(parts.kb, parts.embedder, entity_vectors=parts.kb_vectors)
    report = build_corpus(parts.kb, linker, out, args.sources, args.limit, progress=not args.no_progress)
    for line in report.lines():
        print(line)
    print(f"corpus: {out}  (manifest sha256 {report.manifest_sha256[:12]})")
    return 0 if report.items else 1


def run_train_projection(args: argparse.Namespace) -> int:
    from gemel.training.corpus import Corpus
    from gemel.training.image_scorer import default_artifact, load_parts, train_scorer
    from gemel.training.projection import ProjectionConfig

    corpus = Corpus.load(args.corpus or default_corpus(args.profile))
    out = Path(args.out) if args.out else default_artifact(corpus, args.hold_out_style)
    if args.hold_out_style:
        corpus = corpus.holding_out_style(args.hold_out_style)
    parts = load_parts(args.profile)
    config = ProjectionConfig() if args.epochs is None else ProjectionConfig(epochs=args.epochs)
    scorer = train_scorer(corpus, parts, config, progress=not args.no_progress)
    extra = {"profile": args.profile, **({"held_out_style": args.hold_out_style} if args.hold_out_style else {})}
    version = scorer.save(out, extra=extra)
    f = scorer.fusion
    print(f"image scorer {version}: w_projection={f.w_projection:g} w_exemplar={f.w_exemplar:g} -> {out} "
          f"({out.stat().st_size / 2**20:.1f} MB)")
    return 0


def run_captions(args: argparse.Namespace) -> int:
    from gemel.config import load_profile
    from gemel.kb.entities import KnowledgeBase
    from gemel.sources import resolve
    from gemel.training.captions import (captions, flag_set, mismatched, recurring_split, same_caption_groups,
                                         write_jsonl)
    from gemel.training.corpus import Corpus, CorpusError

    if not 0.0 <= args.hidden <= 1.0:
        raise CorpusError(f"--hidden {args.hidden} is not a share: give a number from 0 to 1, e.g. 0.5")
    config = load_profile(args.profile)
    kb = KnowledgeBase.load(resolve(config.kb.source, config.base_dir), name=config.kb.name)
    corpus = Corpus.load(args.corpus or default_corpus(args.profile))
    out, root = Path(args.out), corpus.folder
    for split in ("train", "dev"):
        rows = captions(corpus, kb, split, seed=args.seed, hidden=args.hidden)
        n = write_jsonl((c.to_example_dict(root) for c in rows), out / f"{split}.jsonl")
        print(f"{split}: {n} captions")
    n = write_jsonl((c.to_example_dict(root) for c in mismatched(rows, seed=args.seed)), out / "mismatched.jsonl")
    print(f"mismatched: {n} dev captions naming their entity, each with a picture of another")
    groups = same_caption_groups(corpus, kb, seed=args.seed)
    n = write_jsonl(({"group": g.id, "text": g.text, "mention": g.mention,
                      "members": [m.to_example_dict(root) for m in g.members]} for g in groups), out / "groups.jsonl")
    print(f"groups: {n} same-caption groups, {sum(len(g.members) for g in groups)} pictures")
    n = write_jsonl(({"id": it.id, "image": str(corpus.path(it)), "entity": it.entity, "style": it.style}
                     for it in flag_set(corpus)), out / "flags.jsonl")
    print(f"flags: {n} held-out-style flags")
    rows = recurring_split(corpus, seed=args.seed)
    n = write_jsonl((c.to_example_dict(root) for c in rows), out / "recurring.jsonl")
    print(f"recurring: {n} pictures of {len({c.entity for c in rows})} entities, captions shared in pairs")
    if args.hold_out_style:
        write_style_fold(corpus.holding_out_style(args.hold_out_style), kb, out, args)
    return 0


def write_style_fold(folded: Any, kb: Any, out: Path, args: argparse.Namespace) -> None:
    """The fitting data of a style fold: captions on the held-out style's pictures, those naming their entity
    beside another's picture (as ``mismatched.jsonl``: a confident picture in that style must not overrule a
    named mention), same-caption groups from the folded dev split (members one per line) and its recurring split
    (the learning curve's split to tune on)."""
    from gemel.training.captions import captions, mismatched, recurring_split, same_caption_groups, write_jsonl

    root = folded.folder
    unseen = {it.image for it in folded.split("dev", heldout="style")}
    rows = [c for c in captions(folded, kb, "dev", seed=args.seed, hidden=args.hidden) if c.image in unseen]
    n = write_jsonl((c.to_example_dict(root) for c in rows), out / "style-dev.jsonl")
    print(f"style-dev: {n} captions on {args.hold_out_style} pictures a scorer trained without that style never saw")
    n = write_jsonl((c.to_example_dict(root) for c in mismatched(rows, seed=args.seed)), out / "style-mismatched.jsonl")
    print(f"style-mismatched: {n} of them naming their entity, each with another's {args.hold_out_style} picture")
    groups = same_caption_groups(folded, kb, split="dev", seed=args.seed)
    n = write_jsonl((m.to_example_dict(root) for g in groups for m in g.members), out / "groups-dev.jsonl")
    print(f"groups-dev: {len(groups)} same-caption groups from dev, {n} pictures")
    rows = recurring_split(folded, split="dev", seed=args.seed)
    n = write_jsonl((c.to_example_dict(root) for c in rows), out / "recurring-dev.jsonl")
    print(f"recurring-dev: {n} dev pictures of {len({c.entity for c in rows})} entities (bench/learning_curve.py "
          "--splits recurring-dev)")


def run_stamps(args: argparse.Namespace) -> int:
    from gemel.config import load_profile
    from gemel.kb.entities import KnowledgeBase
    from gemel.sources import cache_dir, resolve
    from gemel.training.captions import write_jsonl
    from gemel.training.stamps import STAMPS_DIR, photo_path, stamp_captions, stamp_items, write_photo

    config = load_profile(args.profile)
    kb = KnowledgeBase.load(resolve(config.kb.source, config.base_dir), name=config.kb.name)
    stamps = Path(args.stamps) if args.stamps else STAMPS_DIR
    items = stamp_items(kb, stamps)
    images = Path(args.images) if args.images else cache_dir("stamps")
    for it in _progress(items, "photos"):
        write_photo(stamps / it.image, images / photo_path(it))
    rows = stamp_captions(items, kb, seed=args.seed)
    for split in ("dev", "test"):
        n = write_jsonl((c.to_example_dict(images) for c in rows if c.split == split),
                        Path(args.out) / f"stamps-{split}.jsonl")
        pictures = {it.id for it in items if it.split == split}
        print(f"stamps-{split}: {n} captions on {len(pictures)} photos of "
              f"{len({it.entity for it in items if it.split == split})} entities")
    return 0


def _progress(items: list, what: str):
    from tqdm import tqdm

    return tqdm(items, desc=what, unit="photo", file=sys.stderr)


def run_reference(args: argparse.Namespace) -> int:
    from gemel.image.reference import REFERENCE
    from gemel.training.corpus import Corpus
    from gemel.training.image_scorer import load_parts
    from gemel.training.picture_reference import DEFAULT_SIZE, build_reference

    corpus = Corpus.load(args.corpus or default_corpus(args.profile))
    parts = load_parts(args.profile)
    pool = seed_pool(args.profile)
    reference = build_reference(corpus, parts.encoder, size=args.size or DEFAULT_SIZE, seed=args.seed, pool=pool,
                                progress=not args.no_progress)
    out = reference.save(args.out or REFERENCE)
    m = reference.manifest
    print(f"reference: {m['size']} training pictures ({', '.join(m['styles'])}) and {m['pool_pictures']} seed pool "
          f"photos, {len(set(reference.titles))} entities -> {out} ({out.stat().st_size / 2**20:.1f} MB)")
    return 0


def seed_pool(profile: str) -> list:
    """The profile's seed pool (its labelled photos), [] without one."""
    from gemel.config import load_profile
    from gemel.kb.demonstrations import load_jsonl_examples
    from gemel.sources import resolve

    config = load_profile(profile)
    path = resolve(config.demos.seed_pool, config.base_dir) if config.demos.seed_pool else None
    return load_jsonl_examples(path, "seed") if path else []


def run_top(args: argparse.Namespace) -> int:
    from gemel.image.scorer import ImageEntityScorer
    from gemel.training.corpus import Corpus
    from gemel.training.image_scorer import default_artifact, load_parts

    parts = load_parts(args.profile)
    path = Path(args.scorer) if args.scorer else default_artifact(Corpus.load(default_corpus(args.profile)))
    scorer = ImageEntityScorer.load(path, parts.encoder, parts.embedder.name, parts.kb_vectors, parts.kb.titles)
    for title, score in scorer.top_k(args.image, args.k):
        sys.stdout.write(f"{score:7.3f}  {title}\n")
    return 0
