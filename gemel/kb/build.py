"""`gemel kb build`: stream a TSV/JSONL source into a built KB folder (:mod:`gemel.kb.store`), resumably.

Three stages, each resumable, all in ``DIR.partial/`` (renamed to ``DIR`` only when complete, so a linker never
opens half a KB):

1. entries: the source is read line by line and written to ``entries.sqlite`` in transactions of
   ``BuildConfig.chunk`` records; each transaction also records the last source line it holds, so a re-run
   starts after it. Empty titles and repeated titles are skipped and counted; a broken line or non-UTF-8 bytes
   stop the build with ``file:line`` (fix the line and re-run: the entries before it are kept).
2. vectors: shard ``i`` of ``n`` embeds rows ``[i N / n, (i + 1) N / n)`` (and the KB demonstrations among
   them) batch by batch into memory-mapped float16 arrays under ``shards/i-of-n/``, with a progress mark
   after every batch. ``n`` machines can each run one shard (``--shard i/n``); ``gemel kb merge`` joins them.
3. merge: the shards are joined into ``vectors.npy`` / ``demo_vectors.npy``, an IVF index is built when the
   KB is large (:mod:`gemel.kb.index`), the optional prefix tree is written, then ``manifest.json``, then the
   rename.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gemel.kb.demonstrations import kb_example
from gemel.kb.entities import Entity, KBError, name_keys, read_numbered
from gemel.kb.index import KBIndexConfig, build_ivf, gather
from gemel.kb.store import ENTRIES, FORMAT, MANIFEST, VERSION, add_title_search, partial_of
from gemel.memory import drop_pages, release_unused_gpu_libraries, trim
from gemel.models.embedder import TextEmbedder, mention_in_context

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (row INTEGER PRIMARY KEY, title TEXT NOT NULL UNIQUE, description TEXT,
                                     extract TEXT, aliases TEXT, demo INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS names (key TEXT NOT NULL, row INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS progress (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class BuildConfig:
    """How `gemel kb build` streams a source."""

    chunk: int = 10_000  # source records per SQLite transaction: the resume step of stage 1
    embed_batch: int = 2048  # texts embedded between two progress marks: the resume step of stage 2
    # texts per forward pass where the build loads its own embedder (a loader, not a model, given to `build`):
    # on the 1M benchmark's longest texts 64 at a time peaked 130 MB higher than 16, and took longer (2 cores)
    encode_batch: int = 16
    index: KBIndexConfig = field(default_factory=KBIndexConfig)
    progress: bool = True  # tqdm bars on standard error

    def __post_init__(self) -> None:
        if min(self.chunk, self.embed_batch, self.encode_batch) < 1:
            raise KBError(f"BuildConfig chunk={self.chunk}, embed_batch={self.embed_batch} and "
                          f"encode_batch={self.encode_batch} must be >= 1")


@dataclass
class EntriesReport:
    """What stage 1 kept and skipped."""

    entries: int = 0
    duplicates: int = 0  # records whose title was already taken (the first one is kept)
    empty: int = 0  # records with an empty title
    examples: list[str] = field(default_factory=list)  # "line N: 'title'" of the first duplicates


def parse_shard(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4): shard 2 of 4 (0-based)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise KBError(f"--shard {text!r} is not like 0/4 (shard index / number of shards)") from None
    if not 0 <= i < n:
        raise KBError(f"--shard {text!r}: the index must be in 0..{n - 1} (0-based) and n >= 1")
    return i, n


# ---- stage 1: entries -------------------------------------------------------------------------------
def write_entries(source: Path, folder: Path, config: BuildConfig) -> EntriesReport:
    """Stream ``source`` into ``folder/entries.sqlite`` (resuming after the last committed chunk)."""
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / ENTRIES)
    try:
        db.executescript(SCHEMA)
        state = dict(db.execute("SELECT key, value FROM progress").fetchall())
        stamp = _source_stamp(state, source, folder)
        report = EntriesReport(int(state.get("rows", 0)), int(state.get("duplicates", 0)),
                               int(state.get("empty", 0)), json.loads(state.get("examples", "[]")))
        if state.get("entries_done") != "1":
            _stream_entries(db, source, stamp, int(state.get("line", 0)), report, config)
        return report
    finally:
        db.close()


def _source_stamp(state: dict[str, str], source: Path, folder: Path) -> str:
    """The source's path, size and time; a resumed build must read the very same file."""
    stat = source.stat()
    stamp = f"{source.resolve()} {stat.st_size} {stat.st_mtime_ns}"
    if "source" in state and state["source"] != stamp:
        raise KBError(f"{folder} was started from another or a changed source ({state['source']}); delete "
                      f"{folder} to build from {source} afresh")
    return stamp


def _stream_entries(db: sqlite3.Connection, source: Path, stamp: str, done_line: int, report: EntriesReport,
                    config: BuildConfig) -> None:
    bar = tqdm(desc="reading entries", unit="entry", initial=report.entries, disable=not config.progress)
    pending: list[tuple[int, Entity | None]] = []
    for n, entity in read_numbered(source):
        if n > done_line:
            pending.append((n, entity))
        if len(pending) >= config.chunk:
            _commit(db, pending, report, stamp, bar)
            pending = []
    _commit(db, pending, report, stamp, bar, last=True)
    bar.close()


def _commit(db: sqlite3.Connection, pending: list[tuple[int, Entity | None]], report: EntriesReport, stamp: str,
            bar: tqdm, last: bool = False) -> None:
    """One transaction: the chunk's entries and the progress mark that says they are in."""
    before = report.entries
    with db:
        for n, e in pending:
            _insert(db, n, e, report)
        state = {"source": stamp, "rows": report.entries, "duplicates": report.duplicates, "empty": report.empty,
                 "examples": json.dumps(report.examples)}
        if pending:
            state["line"] = pending[-1][0]
        if last:
            state["entries_done"] = 1
        db.executemany("INSERT OR REPLACE INTO progress VALUES (?, ?)", [(k, str(v)) for k, v in state.items()])
    bar.update(report.entries - before)


def _insert(db: sqlite3.Connection, n: int, e: Entity | None, report: EntriesReport) -> None:
    if e is None:
        report.empty += 1
        return
    row = report.entries
    try:
        db.execute("INSERT INTO entities VALUES (?, ?, ?, ?, ?, ?)",
                   (row, e.title, e.description, e.extract, json.dumps(list(e.aliases), ensure_ascii=False)
                    if e.aliases else "", int(kb_example(e) is not None)))
    except sqlite3.IntegrityError:
        report.duplicates += 1
        if len(report.examples) < 5:
            report.examples.append(f"line {n}: {e.title!r}")
        return
    db.executemany("INSERT INTO names VALUES (?, ?)", [(k, row) for k in name_keys(e)])
    report.entries += 1


# ---- stage 2: vectors of one shard ------------------------------------------------------------------
def shard_folder(folder: Path, i: int, n: int) -> Path:
    return folder / "shards" / f"{i}-of-{n}"


def embed_shard(folder: Path, embedder: TextEmbedder, i: int, n: int, config: BuildConfig) -> Path:
    """Embed shard ``i`` of ``n`` of the entries (and their demonstrations) into ``shards/i-of-n/``."""
    release_unused_gpu_libraries()  # on a CPU-only machine: ~200 MB of the build's peak RSS
    db = sqlite3.connect(folder / ENTRIES)
    try:
        size = db.execute("SELECT count(*) FROM entities").fetchone()[0]
        if size == 0:
            raise KBError(f"the source of {folder} has no entity with a title: nothing to build")
        lo, hi = i * size // n, (i + 1) * size // n
        out = shard_folder(folder, i, n)
        out.mkdir(parents=True, exist_ok=True)
        state = _shard_state(out, embedder, lo, hi, size)
        if not state.get("done"):
            demo_rows = _demo_rows(db, out, lo, hi)
            _embed_rows(db, out / "vectors.npy", np.arange(lo, hi), embedder, state, "vectors", _index_texts, config)
            _embed_rows(db, out / "demo_vectors.npy", demo_rows, embedder, state, "demos", _demo_texts, config)
            state["done"] = True
            _write_json(out / "progress.json", state)
        return out
    finally:
        db.close()


def _shard_state(out: Path, embedder: TextEmbedder, lo: int, hi: int, size: int) -> dict:
    path = out / "progress.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    fresh = {"embedder": embedder.name, "dim": embedder.dim, "rows": [lo, hi], "entries": size}
    if state and any(state.get(k) != v for k, v in fresh.items()):
        raise KBError(f"{out} was started with {({k: state.get(k) for k in fresh})}, not {fresh}: delete {out} "
                      "to embed it again")
    return state or {**fresh, "vectors": 0, "demos": 0, "done": False}


def _demo_rows(db: sqlite3.Connection, out: Path, lo: int, hi: int) -> np.ndarray:
    path = out / "demo_rows.npy"
    if not path.exists():
        rows = [r for (r,) in db.execute("SELECT row FROM entities WHERE demo = 1 AND row >= ? AND row < ? "
                                         "ORDER BY row", (lo, hi))]
        np.save(path, np.asarray(rows, np.int32))
    return np.load(path)


def _embed_rows(db: sqlite3.Connection, path: Path, rows: np.ndarray, embedder: TextEmbedder, state: dict,
                key: str, texts: Callable[[list[Entity]], list[str]], config: BuildConfig) -> None:
    """Embed the entities of ``rows`` into the (len(rows), D) float16 array at ``path``, resuming at
    ``state[key]`` and marking progress after every batch."""
    shape = (len(rows), embedder.dim)
    out = np.lib.format.open_memmap(path, "r+" if path.exists() else "w+", np.float16, shape)
    bar = tqdm(total=len(rows), initial=state[key], desc=f"embedding {key}", unit="text",
               disable=not config.progress)
    for start in range(state[key], len(rows), config.embed_batch):
        chunk = rows[start:start + config.embed_batch]
        out[start:start + len(chunk)] = embedder.encode(texts(_entities(db, chunk)))
        out.flush()
        drop_pages(out)  # written pages stay in the file and page cache, not in the build's RSS
        trim()  # the batch's freed tensors and strings go back to the system: the build's peak stays flat
        state[key] = start + len(chunk)
        _write_json(path.parent / "progress.json", state)
        bar.update(len(chunk))
    bar.close()
    del out


def _entities(db: sqlite3.Connection, rows: Sequence[int]) -> list[Entity]:
    """The entities of ``rows`` (ascending), one query: a range when they are contiguous."""
    if not len(rows):
        return []
    lo, hi = int(rows[0]), int(rows[-1])
    if hi - lo + 1 == len(rows):
        found = db.execute("SELECT title, description, extract FROM entities WHERE row BETWEEN ? AND ? ORDER BY row",
                           (lo, hi))
        return [Entity(*r) for r in found]
    marks = ",".join("?" * len(rows))
    by_row = {r[0]: Entity(*r[1:]) for r in db.execute(
        f"SELECT row, title, description, extract FROM entities WHERE row IN ({marks})", [int(r) for r in rows])}
    return [by_row[int(r)] for r in rows]


def _index_texts(entities: list[Entity]) -> list[str]:
    return [e.index_text() for e in entities]


def _demo_texts(entities: list[Entity]) -> list[str]:
    examples = [kb_example(e) for e in entities]
    return [mention_in_context(ex.text, ex.mention) for ex in examples if ex is not None]


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


@contextlib.contextmanager
def writing(out: str | Path, part: str = "") -> Iterator[None]:
    """Hold a write lock of the KB ``out`` (``<out>.lock``, or ``<out>.<part>.lock`` for one shard's
    embedding; an advisory ``flock``): a second `gemel kb build` of the same rows, or a merge or index of the
    same KB, is refused with a sentence instead of writing the same rows and files (shards of one KB may embed
    side by side). The lock goes with the process, so a killed build leaves nothing that blocks the next one."""
    out = Path(out)
    path = out.with_name(f"{out.name}.{part}.lock" if part else f"{out.name}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            f.close()
            what = f"{part} of {out}" if part else str(out)
            raise KBError(f"another `gemel kb` process (pid {holder}) is writing {what}: wait for it to finish, or "
                          "stop it (it resumes where it stopped), then run this again") from None
        if path.exists() and os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
            break
        f.close()  # the holder removed this file as we locked it: lock the one that is there now
    with f:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


# ---- stage 3: merge, index, manifest, rename ----------------------------------------------------------
def merge(out: Path, embedder_name: str, config: BuildConfig,
          name_tokens: Callable[[Iterable[str]], Iterable[Sequence[int]]] | None = None,
          tokenizer: str = "") -> dict:
    """Join the finished shards of ``out`` into the built KB (see :func:`_merge`), holding its write lock."""
    with writing(out):
        return _merge(Path(out), embedder_name, config, name_tokens, tokenizer)


def _merge(out: Path, embedder_name: str, config: BuildConfig,
           name_tokens: Callable[[Iterable[str]], Iterable[Sequence[int]]] | None = None,
           tokenizer: str = "") -> dict:
    """Join the shards of ``out.partial``, index the vectors, write the manifest and rename to ``out``.
    ``name_tokens`` (titles -> token ids ending in EOS) also writes the prefix tree for ``tokenizer``."""
    folder = partial_of(out)
    shards = _complete_shards(folder)
    states = [json.loads((s / "progress.json").read_text()) for s in shards]
    if any(s["embedder"] != embedder_name for s in states):
        raise KBError(f"the shards of {folder} were embedded with {sorted({s['embedder'] for s in states})}, not "
                      f"{embedder_name!r}: build them again with one embedder")
    vectors = _join(shards, "vectors.npy", folder / "vectors.npy")
    demos = _join(shards, "demo_vectors.npy", folder / "demo_vectors.npy")
    np.save(folder / "demo_rows.npy", np.concatenate([np.load(s / "demo_rows.npy") for s in shards]))
    index = _index(vectors, demos, folder / "index", config)
    demo_index = _index(demos, demos, folder / "demo_index", config)
    if name_tokens is not None:
        _write_trie(folder, name_tokens, tokenizer, config)
    _index_titles(folder)
    manifest = {"format": FORMAT, "version": VERSION, "entries": len(vectors), "demos": len(demos),
                "embedder": embedder_name, "dim": int(vectors.shape[1]), "dtype": "float16",
                "index": index, "demo_index": demo_index, "shards": len(shards)}
    del vectors, demos
    shutil.rmtree(folder / "shards")
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))  # last: the folder is now complete
    _swap_in(folder, out)
    return manifest


def _index_titles(folder: Path) -> None:
    """The title index of the autocomplete (`StoredKB.search`): 1M titles take ~10 s."""
    db = sqlite3.connect(folder / ENTRIES)
    try:
        if not add_title_search(db):
            log.warning("this SQLite has no FTS5: `gemel kb search` over %s will scan its titles", folder)
    finally:
        db.close()


def _complete_shards(folder: Path) -> list[Path]:
    if not (folder / ENTRIES).exists():
        raise KBError(f"{folder} holds no entries: run `gemel kb build SOURCE --out {folder.name[:-8]}` first")
    found = sorted((folder / "shards").glob("*-of-*"), key=lambda p: int(p.name.split("-")[0]))
    counts = {p.name.split("-of-")[1] for p in found}
    if len(counts) != 1:
        raise KBError(f"{folder}/shards holds shards of different splits {sorted(p.name for p in found)}: keep one")
    n = int(counts.pop())
    missing = [f"{i}/{n}" for i in range(n)
               if not (shard_folder(folder, i, n) / "progress.json").exists()
               or not json.loads((shard_folder(folder, i, n) / "progress.json").read_text()).get("done")]
    if missing:
        raise KBError(f"shard(s) {missing} of {folder} are missing or unfinished: run `gemel kb build ... --shard "
                      f"{missing[0]}` (or copy its shards/ folder here), then merge again")
    return [shard_folder(folder, i, n) for i in range(n)]


def _join(shards: list[Path], name: str, target: Path) -> np.ndarray:
    """Concatenate the shards' arrays into ``target`` (a rename when there is one shard); memory-mapped."""
    parts = [np.load(s / name, mmap_mode="r") for s in shards]
    if len(shards) == 1:
        del parts
        os.replace(shards[0] / name, target)
        return np.load(target, mmap_mode="r")
    out = np.lib.format.open_memmap(target, "w+", np.float16, (sum(len(p) for p in parts), parts[0].shape[1]))
    at = 0
    for p in parts:
        for lo in range(0, len(p), 65_536):
            out[at + lo:at + lo + len(p[lo:lo + 65_536])] = p[lo:lo + 65_536]
            out.flush()
            drop_pages(out)
            drop_pages(p)
        at += len(p)
    out.flush()
    del out
    return np.load(target, mmap_mode="r")


def _index(vectors: np.ndarray, queries: np.ndarray, folder: Path, config: BuildConfig) -> dict:
    """An IVF index of ``vectors`` when there are at least ``index.exact_below``, else {"kind": "exact"}. The
    nprobe is measured on (up to ``sample_queries``) of ``queries``: the KB demonstrations' mention-in-context
    embeddings, real text like a linker's queries (the vectors themselves when there are too few)."""
    c = config.index
    if len(vectors) < c.exact_below:
        return {"kind": "exact"}
    pool = queries if len(queries) >= 50 else vectors
    rng = np.random.default_rng(c.seed + 1)
    sample = gather(pool, np.sort(rng.choice(len(pool), min(c.sample_queries, len(pool)), replace=False)))
    meta = build_ivf(vectors, folder, c, sample, progress=config.progress)
    return {"kind": "ivf", **{k: meta[k] for k in ("nlist", "nprobe", "recall")}}


def _write_trie(folder: Path, name_tokens: Callable, tokenizer: str, config: BuildConfig) -> None:
    from gemel.generation.trie import ArrayTrie

    db = sqlite3.connect(folder / ENTRIES)
    try:
        titles = (t for (t,) in db.execute("SELECT title FROM entities ORDER BY row"))
        trie = ArrayTrie.build(name_tokens(titles), progress=config.progress)
    finally:
        db.close()
    trie.save(folder / "trie")
    (folder / "trie.tokenizer").write_text(tokenizer + "\n")


def _swap_in(folder: Path, out: Path) -> None:
    """Rename the finished ``folder`` to ``out``; an older KB at ``out`` is removed only after that."""
    old = out.with_name(out.name + ".old")
    if out.exists():
        os.replace(out, old)
    os.replace(folder, out)
    if old.exists():
        shutil.rmtree(old)


def reindex(out: str | Path, config: BuildConfig | None = None) -> dict:
    """Choose and build the vector indexes of the built KB ``out`` again (e.g. another ``exact_below`` or target
    recall) from its stored vectors, without embedding anything, and its title index; returns the new manifest.
    Each new index is built beside the old one and swapped in before the manifest (which the linker follows)
    names it."""
    with writing(out):
        return _reindex(Path(out), config or BuildConfig())


def _reindex(out: Path, config: BuildConfig) -> dict:
    from gemel.kb.store import read_manifest

    manifest = read_manifest(out)
    _index_titles(out)  # a KB built before the title index gets it here
    vectors = np.load(out / "vectors.npy", mmap_mode="r")
    demos = np.load(out / "demo_vectors.npy", mmap_mode="r")
    for name, vecs in (("index", vectors), ("demo_index", demos)):
        fresh = out / f"{name}.new"
        shutil.rmtree(fresh, ignore_errors=True)
        choice = _index(vecs, demos, fresh, config)
        _write_json(out / MANIFEST, {**manifest, name: {"kind": "exact"}})  # never names a folder being swapped
        shutil.rmtree(out / name, ignore_errors=True)
        if fresh.exists():
            os.replace(fresh, out / name)
        manifest[name] = choice
        _write_json(out / MANIFEST, manifest)
    return manifest


def build(source: str | Path, out: str | Path, embedder: TextEmbedder | Callable[[], TextEmbedder], *,
          shard: tuple[int, int] = (0, 1), config: BuildConfig | None = None, name_tokens: Callable | None = None,
          tokenizer: str = "") -> tuple[EntriesReport, dict | None]:
    """Build (or resume) the KB folder ``out`` from ``source``; with ``shard=(i, n)``, n > 1, only shard i's
    vectors (the manifest is None until `merge`). ``embedder`` may be a picklable function that loads one: it
    is then loaded and run in a process of its own (:func:`_embed_elsewhere`), and the merge runs here without
    the models' memory, so the build's peak is the larger of the two stages, not their sum."""
    config = config or BuildConfig()
    source, out = Path(source), Path(out)
    if not source.exists():
        raise KBError(f"knowledge base source {str(source)!r} does not exist")
    folder = partial_of(out)
    with writing(out):
        report = write_entries(source, folder, config)
    name = _embed(folder, out, embedder, shard, config)
    if shard[1] > 1:
        return report, None
    return report, merge(out, name, config, name_tokens, tokenizer)


def _embed(folder: Path, out: Path, embedder: TextEmbedder | Callable[[], TextEmbedder], shard: tuple[int, int],
           config: BuildConfig) -> str:
    """Embed the shard, holding its lock; returns the embedder's name."""
    with writing(out, f"shard-{shard[0]}-of-{shard[1]}"):
        if hasattr(embedder, "encode"):
            embed_shard(folder, embedder, *shard, config)
            return embedder.name
        return _embed_elsewhere(folder, embedder, shard, config)


def _embed_elsewhere(folder: Path, load: Callable[[], TextEmbedder], shard: tuple[int, int],
                     config: BuildConfig) -> str:
    """Load the embedder with ``load`` and embed the shard in a fresh (spawned) process; returns its name.
    Importing torch alone leaves ~280 MB in a process for good and the loaded encoder ~160 MB more, which the
    merge's IVF training (a 1M KB: a 245 MB k-means sample; 6M: ~600 MB) would otherwise add to; a process
    that ends gives all of it back. The child's progress bars share this terminal; its errors come back here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            return pool.submit(_load_and_embed, folder, load, shard, config, os.getpid()).result()
    except BrokenProcessPool:
        raise KBError(f"the process embedding shard {shard[0]}/{shard[1]} of {folder} stopped before finishing (out "
                      "of memory, or killed?): run the same command again, it resumes after the last finished "
                      "batch") from None


def _die_with_parent(parent: int) -> None:
    """Linux: end this process when the build that started it ends (``prctl(PR_SET_PDEATHSIG, SIGTERM)``). The
    build holds the shard's write lock; an embedding process left running after it was killed would write the
    shard beside the next build's, unlocked."""
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the build ended before the line above ran
            raise SystemExit(1)


def _load_and_embed(folder: Path, load: Callable[[], TextEmbedder], shard: tuple[int, int],
                    config: BuildConfig, parent: int) -> str:
    _die_with_parent(parent)
    embedder = _loaded(load, config)
    embed_shard(folder, embedder, *shard, config)
    return embedder.name


def _loaded(load: Callable[[], TextEmbedder], config: BuildConfig) -> TextEmbedder:
    release_unused_gpu_libraries()  # before the load: the pages torch's import left would add to its peak (~90 MB)
    embedder = load()
    embedder.config = replace(embedder.config, batch_size=config.encode_batch)
    return embedder


# ---- a distributed build's parts (gemel.distributed.kb runs them as Ray tasks) ---------------------------
def embed_part(out: str | Path, load: Callable[[], TextEmbedder], i: int, n: int,
               config: BuildConfig | None = None) -> str:
    """Embed shard ``i`` of ``n`` of the build of ``out`` in this process, holding the shard's lock, with the
    embedder ``load()`` gives: what ``gemel kb build --shard i/n`` embeds, as one worker's task (the entries
    must be written: :func:`write_entries`; :func:`merge` joins the shards). Resumes after the shard's last
    finished batch; returns the embedder's name."""
    config = config or BuildConfig()
    with writing(out, f"shard-{i}-of-{n}"):
        embedder = _loaded(load, config)
        embed_shard(partial_of(Path(out)), embedder, i, n, config)
        return embedder.name


def started_split(out: str | Path) -> int | None:
    """The number of shards an unfinished build of ``out`` was split into, or None (no shard started)."""
    found = {p.name.split("-of-")[1] for p in (partial_of(Path(out)) / "shards").glob("*-of-*")}
    if len(found) > 1:
        raise KBError(f"{partial_of(Path(out))}/shards holds shards of different splits {sorted(found)}: keep one")
    return int(found.pop()) if found else None


def texts_to_embed(out: str | Path) -> int:
    """How many texts the build of ``out`` embeds: one per entry, one more per KB demonstration."""
    db = sqlite3.connect(partial_of(Path(out)) / ENTRIES)
    try:
        entries, demos = db.execute("SELECT count(*), coalesce(sum(demo), 0) FROM entities").fetchone()
        return int(entries) + int(demos)
    finally:
        db.close()


def texts_embedded(out: str | Path, n: int) -> int:
    """How many texts the ``n`` shards of the build of ``out`` have embedded so far (their progress marks)."""
    done = 0
    for i in range(n):
        with contextlib.suppress(OSError, ValueError):
            state = json.loads((shard_folder(partial_of(Path(out)), i, n) / "progress.json").read_text())
            done += int(state.get("vectors", 0)) + int(state.get("demos", 0))
    return done
