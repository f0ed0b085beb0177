"""Batch linking on Ray against one process: the same 40 mentions, the same answers, how much faster.

The first 40 cases of ``assets/eval/test.jsonl`` (real photos, the offline default), as a `gemel link --input`
batch, linked three ways through the CLI's own line rule (``gemel.cli.main.result_line``):
- single: in this process, on one torch thread (one core, as each Ray actor has);
- ray1 / ray2: ``gemel.distributed.link.link_cases`` on a local Ray (``ray.init(num_cpus=2)``) with 1 and 2
  actors, each one CPU, one thread and one linker loaded once.

The ``*_s`` figures are the linking alone, from the first link's start to the last one's end: the linker's load
(single) and the Ray start and actors' loads (ray1, ray2) are left out of all three alike. The three ways run
``--repeat`` rounds, interleaved (a busy spell of a shared machine then falls on each alike), and each way's
fastest round counts. The line before the last gives the wall times with the loads (``*_total_s``), the Ray
start, how far apart the 2 actors began linking (``ready_gap_s``: the slower actor's load), with
``--two-threads`` the same links in one process on 2 torch threads (what `gemel link` does without Ray), and
the text embedder's rate on one core (KB builds: "title: description" texts per second).

Last line: ``items= single_s= ray1_s= ray2_s= speedup2= same_answers=`` (speedup2 = single_s / ray2_s;
same_answers = 1 when every Ray output line equals the single-process one, timings aside). Goals on 2 cores:
same_answers=1, ray1_s <= 1.15 x single_s, speedup2 >= 1.6.

``--smoke``: 4 mentions and 64 embedded texts; the same lines, figures meaningless.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._smoke import SMOKE_HELP, smoke_out  # noqa: E402
from gemel.cli.main import load_linker, result_line  # noqa: E402
from gemel.kb.demonstrations import load_jsonl_examples  # noqa: E402

OUT = ROOT / "bench" / "out" / "ray_scale"
TIMINGS = ("timings",)  # seconds, the only part of a result that differs between two runs


def cases_file(n: int, folder: Path) -> Path:
    """The first ``n`` test cases as a batch input (absolute image paths)."""
    test = next(p for p in (ROOT / "assets/eval/test.jsonl", ROOT / "gemel/assets/eval/test.jsonl") if p.exists())
    path = folder / "cases.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for ex in load_jsonl_examples(test, "test")[:n]:
            f.write(json.dumps({"id": ex.id, "image": ex.image, "text": ex.text, "mention": ex.mention}) + "\n")
    return path


def stamped(linker, line: str, n: int, base: Path) -> str:
    """The CLI's output line of one case, wrapped with when its link began and ended (wall clock, seconds)."""
    t0, c0 = time.time(), time.process_time()
    out = result_line(linker, line, n, base)
    return json.dumps({"t0": t0, "t1": time.time(), "cpu": time.process_time() - c0, "pid": os.getpid(), "line": out})


def answers(lines: list[str]) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k not in TIMINGS} for x in lines]


def run_single(profile: str, cases: list[tuple[int, str]], base: Path, threads: int) -> dict:
    """Link seconds, seconds with the load, CPU seconds of the links and the output lines, in this process on
    ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    t = time.perf_counter()
    linker = load_linker(argparse.Namespace(profile=profile, mapper=None))
    loaded, c0 = time.perf_counter(), time.process_time()
    lines = [result_line(linker, line, n, base) for n, line in cases]
    end = time.perf_counter()
    return {"link_s": end - loaded, "total_s": end - t, "cpu_s": time.process_time() - c0, "ready_gap_s": 0.0,
            "lines": lines}


def run_ray(profile: str, cases: list[tuple[int, str]], base: Path, actors: int) -> dict:
    from gemel.distributed.link import link_cases

    load = functools.partial(load_linker, argparse.Namespace(profile=profile, mapper=None), None)
    t = time.time()
    got = [json.loads(x) for x in link_cases(cases, load, functools.partial(stamped, base=base), actors=actors)]
    end = time.time()
    first = {}
    for g in got:
        first[g["pid"]] = min(first.get(g["pid"], g["t0"]), g["t0"])
    return {"link_s": max(g["t1"] for g in got) - min(g["t0"] for g in got), "total_s": end - t,
            "ready_gap_s": max(first.values()) - min(first.values()), "workers": len(first),
            "cpu_s": sum(g["cpu"] for g in got),
            "lines": [g["line"] for g in got]}


def embed_rates(profile: str, texts: int) -> tuple[float, float]:
    """Texts per second of the profile's text embedder on one thread, in the KB build's batches
    (``BuildConfig.encode_batch``): its KB's "title: description" texts, and its KB demonstrations' texts (a
    first sentence with the name marked: longer)."""
    import torch

    from gemel.config import load_profile
    from gemel.kb.build import BuildConfig
    from gemel.kb.demonstrations import kb_example
    from gemel.kb.entities import KnowledgeBase
    from gemel.models.embedder import TextEmbedder, mention_in_context
    from gemel.sources import resolve

    torch.set_num_threads(1)
    config = load_profile(profile)
    kb = KnowledgeBase.load(resolve(config.kb.source, config.base_dir))
    entities = [kb.get(t) for t in list(kb.titles)[:texts]]
    demos = [ex for ex in map(kb_example, entities) if ex is not None]
    embedder = TextEmbedder.load(config.embedder, config.base_dir)
    batch = BuildConfig().encode_batch
    rates = []
    for items in ([e.index_text() for e in entities], [mention_in_context(ex.text, ex.mention) for ex in demos]):
        embedder.encode(items[:batch])  # warm-up
        t = time.perf_counter()
        for i in range(0, len(items), batch):
            embedder.encode(items[i:i + batch])
        rates.append(len(items) / (time.perf_counter() - t))
    return rates[0], rates[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="offline")
    ap.add_argument("--items", type=int, default=40, help="mentions to link")
    ap.add_argument("--texts", type=int, default=4000, help="KB texts to embed for the per-core rate")
    ap.add_argument("--repeat", type=int, default=2, help="rounds of the three ways; the fastest round of each counts")
    ap.add_argument("--two-threads", action="store_true", help="also link in one process on 2 torch threads")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    if args.smoke:
        args.items, args.texts, args.repeat = 4, 64, 1
    folder = smoke_out("ray_scale") if args.smoke else OUT
    folder.mkdir(parents=True, exist_ok=True)
    src = cases_file(args.items, folder)
    cases = [(n, line) for n, line in enumerate(src.read_text().splitlines(keepends=True), 1) if line.strip()]
    base = src.parent

    import ray

    t = time.time()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    start_s = time.time() - t
    runs: dict[str, list[dict]] = {"single": [], "ray1": [], "ray2": []}
    for r in range(args.repeat):  # interleaved: a busy spell of the machine falls on every way alike
        runs["single"].append(run_single(args.profile, cases, base, threads=1))
        for k in (1, 2):
            runs[f"ray{k}"].append(run_ray(args.profile, cases, base, k))
        for name, got in runs.items():
            print(f"round {r + 1} {name}: {got[-1]['link_s']:.1f} s linking ({got[-1]['cpu_s']:.1f} CPU s), "
                  f"{got[-1]['total_s']:.1f} s with the load(s), ready gap {got[-1]['ready_gap_s']:.1f} s", flush=True)
    ray.shutdown()
    best = {name: min(got, key=lambda g: g["link_s"]) for name, got in runs.items()}
    single = best["single"]["lines"]
    same = all(answers(g["lines"]) == answers(single) for got in runs.values() for g in got)
    entities = sum(a.get("entity") == b.get("entity") for a, b in zip(answers(best["ray2"]["lines"]), answers(single)))
    (folder / "single.jsonl").write_text("".join(x + "\n" for x in single))
    (folder / "ray2.jsonl").write_text("".join(x + "\n" for x in best["ray2"]["lines"]))
    two = ""
    if args.two_threads:
        two = f" single_2threads_s={run_single(args.profile, cases, base, threads=2)['link_s']:.1f}"
    eps, demo_eps = embed_rates(args.profile, args.texts)
    single_s, ray1_s, ray2_s = (best[k]["link_s"] for k in ("single", "ray1", "ray2"))
    print(f"rounds={args.repeat} single_total_s={best['single']['total_s']:.1f} ray_start_s={start_s:.1f} "
          f"ray1_total_s={best['ray1']['total_s']:.1f} ray2_total_s={best['ray2']['total_s']:.1f} "
          f"ready_gap_s={best['ray2']['ready_gap_s']:.1f}{two} single_cpu_s={best['single']['cpu_s']:.1f} "
          f"ray1_cpu_s={best['ray1']['cpu_s']:.1f} ray2_cpu_s={best['ray2']['cpu_s']:.1f} "
          f"link_s_per_mention_core={single_s / len(cases):.2f} "
          f"embed_texts_per_s_core={eps:.0f} embed_demo_texts_per_s_core={demo_eps:.0f} "
          f"same_entities={entities}/{len(cases)}")
    print(f"items={len(cases)} single_s={single_s:.1f} ray1_s={ray1_s:.1f} ray2_s={ray2_s:.1f} "
          f"speedup2={single_s / ray2_s:.2f} same_answers={int(same)}")


if __name__ == "__main__":
    main()
