"""Where the offline linker's memory goes: RSS after each step of loading it, then after linking.

Loads a profile step by step, in the order `Linker.load` does (the same public loaders, then
``Linker(config, Components(...))``), and after each step reads ``VmRSS`` from ``/proc/self/status``, then runs
``gc.collect()`` and glibc's ``malloc_trim(0)`` and reads it again: the second figure is what the step really
retains (freed heap that malloc had kept is handed back). RSS is split into anonymous memory (heap, Python
objects, tensors) and file-backed pages (shared libraries, memory-mapped weights: safetensors weights are
mapped, not copied, so the LLM's weights show up when the first link reads them, not when it loads).
Besides the steps, the bytes each component holds are counted directly (parameters, vectors, indexes).

The steps trim the heap after each one, which a server does not: a second process (``--as-served``) loads the
profile with ``Linker.load`` and links the same cases, nothing else, and reports its RSS and peak: what a serving
process really holds (freed heap that malloc keeps included).

Last line: ``rss_mb=<after the links> peak_mb=<VmHWM> torch_mb=<import torch> libs_mb=<other imports>
llm_mb=<LLM weights> embedder_mb=... vision_mb=... kb_mb=<vectors + index + demonstration pool>
gpu_libs_released_mb=<CUDA library pages a CPU-only process drops, gemel/memory.py>
served_rss_mb=<as served, after the links> served_peak_mb=<as served, VmHWM>``; the whole breakdown goes to
``bench/out/memory.json``. Run: ``OMP_NUM_THREADS=1 python bench/memory.py``. ``--smoke`` (under a minute): one
link in each process, the breakdown to ``bench/out/smoke/memory/``; the same last line, figures meaningless.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._smoke import SMOKE_HELP  # noqa: E402
from gemel.memory import trim  # noqa: E402  (gemel's package root imports no torch)

STATUS_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def status_mb() -> dict[str, float]:
    """VmRSS, VmHWM (peak RSS), RssAnon and RssFile of this process, in MiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in STATUS_FIELDS:
                out[key] = int(value.split()[0]) / 1024
    return out


class Steps:
    """The table: one row per step, RSS right after it and after `trim`, and the change from the last row."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def mark(self, step: str) -> dict:
        raw = status_mb()["VmRSS"]
        trim()
        now = status_mb()
        last = self.rows[-1]["rss_trimmed_mb"] if self.rows else 0.0
        row = {"step": step, "rss_mb": raw, "rss_trimmed_mb": now["VmRSS"], "delta_mb": now["VmRSS"] - last,
               "anon_mb": now["RssAnon"], "file_mb": now["RssFile"], "peak_mb": now["VmHWM"]}
        self.rows.append(row)
        print(f"{step:34s} {raw:7.0f} {now['VmRSS']:8.0f} {row['delta_mb']:+7.0f} {now['RssAnon']:6.0f} "
              f"{now['RssFile']:6.0f} {now['VmHWM']:6.0f}", flush=True)
        return row

    def delta(self, first: str, last: str) -> float:
        """Trimmed RSS after step ``last`` minus that before step ``first``."""
        names = [r["step"] for r in self.rows]
        i, j = names.index(first), names.index(last)
        before = self.rows[i - 1]["rss_trimmed_mb"] if i else 0.0
        return self.rows[j]["rss_trimmed_mb"] - before


def tensor_mb(module) -> float:
    """Bytes of a module's parameters and buffers, each storage counted once (tied weights are one)."""
    seen, total = set(), 0
    for t in [*module.parameters(), *module.buffers()]:
        if t.untyped_storage().data_ptr() not in seen:
            seen.add(t.untyped_storage().data_ptr())
            total += t.untyped_storage().nbytes()
    return total / 2**20


def held_mb(linker) -> dict[str, float]:
    """What the loaded linker holds, counted from its objects rather than from RSS."""
    vectors, pool = linker.kb_vectors, linker.kb_pool
    return {
        "llm_weights": tensor_mb(linker.lm.model),
        "embedder_weights": tensor_mb(getattr(linker.embedder.model, "model", linker.embedder.model)),
        "vision_weights": tensor_mb(linker.vision) if linker.vision is not None else 0.0,
        "mapper_weights": tensor_mb(linker.mapper) if linker.mapper is not None else 0.0,
        "kb_vectors": vectors.nbytes / 2**20 if vectors.flags.owndata else 0.0,  # 0: a view of the index's
        "kb_index": len(linker.kb_index) * linker.kb_index.dim * 4 / 2**20,
        "kb_demo_pool_vectors": len(pool) * linker.embedder.dim * 4 / 2**20 if pool is not None else 0.0,
    }


def test_cases(n: int) -> list:
    from gemel.kb.demonstrations import load_jsonl_examples

    return [e for e in load_jsonl_examples(ROOT / "assets/eval/test.jsonl", "test") if e.entity][:n]


def as_served(profile: str, links: int) -> None:
    """``Linker.load`` then the links, as a server runs them (no trims in between); prints one JSON line."""
    from gemel.linker import Linker

    linker = Linker.load(profile)
    loaded = status_mb()
    answers = []
    for ex in test_cases(links):
        pred = linker.link(ex.image, ex.text, ex.mention)
        answers.append([pred.entity, pred.candidates[0].score if pred.candidates else None])
    final = status_mb()
    print(json.dumps({"loaded_rss_mb": loaded["VmRSS"], "loaded_peak_mb": loaded["VmHWM"], "rss_mb": final["VmRSS"],
                      "peak_mb": final["VmHWM"], "answers": answers}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="offline")
    ap.add_argument("--links", type=int, default=5, help="real test cases linked after loading")
    ap.add_argument("--out", default=str(ROOT / "bench/out/memory.json"))
    ap.add_argument("--as-served", action="store_true", help="only the served process (one JSON line)")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    if args.smoke:
        from bench._smoke import smoke_out

        args.links, args.out = 1, str(smoke_out("memory") / "memory.json")
    if args.as_served:
        as_served(args.profile, args.links)
        return
    steps = Steps()
    print(f"{'step':34s} {'rss':>7s} {'trimmed':>8s} {'delta':>7s} {'anon':>6s} {'file':>6s} {'peak':>6s}  (MiB)")
    steps.mark("python")
    import torch  # noqa: F401

    steps.mark("import torch")
    import faiss  # noqa: F401
    import transformers  # noqa: F401

    steps.mark("import transformers, faiss")
    from gemel.config import load_profile
    from gemel.kb.demonstrations import load_jsonl_examples
    from gemel.kb.entities import KnowledgeBase
    from gemel.components import Components, build_mapper
    from gemel.linker import Linker
    from gemel.models.embedder import TextEmbedder
    from gemel.models.llm import LanguageModel
    from gemel.models.vision import VisionEncoder
    from gemel.sources import resolve

    steps.mark("import gemel")
    config = load_profile(args.profile)
    t0 = time.perf_counter()
    lm = LanguageModel.load(config.llm, config.base_dir)
    steps.mark("LLM (weights mapped, not read)")
    vision = VisionEncoder.load(config.vision, config.base_dir) if config.vision.kind != "none" else None
    steps.mark("vision encoder (+ timm)")
    embedder = TextEmbedder.load(config.embedder, config.base_dir)
    steps.mark("text embedder")
    kb = KnowledgeBase.load(resolve(config.kb.source, config.base_dir), name=config.kb.name)
    steps.mark("KB entities")
    seed_path = resolve(config.demos.seed_pool, config.base_dir) if config.demos.seed_pool else None
    seed = load_jsonl_examples(seed_path, "seed") if seed_path else []
    mapper = build_mapper(config, lm, vision)
    steps.mark("seed pool + mapper")
    linker = Linker(config, Components(lm=lm, embedder=embedder, kb=kb, vision=vision, seed_examples=seed,
                                       mapper=mapper))
    steps.mark("linker: names, KB vectors, index")
    linker.kb_pool  # noqa: B018  (built on first use)
    steps.mark("KB demonstration pool")
    from gemel.memory import release_unused_gpu_libraries

    released_mb = release_unused_gpu_libraries() / 2**20  # as Linker.load does, last
    steps.mark("unused GPU library pages released")
    load_s = time.perf_counter() - t0
    cases = test_cases(args.links)
    answers = []
    for i, ex in enumerate(cases):
        pred = linker.link(ex.image, ex.text, ex.mention)
        answers.append([pred.entity, pred.candidates[0].score if pred.candidates else None])
        if i == 0:
            steps.mark("first link (LLM weights read)")
    steps.mark(f"after {len(cases)} links")
    final = status_mb()
    held = held_mb(linker)
    served_cmd = [sys.executable, __file__, "--as-served", "--profile", args.profile, "--links", str(args.links)]
    run = subprocess.run(served_cmd, capture_output=True, text=True, check=True)
    served = json.loads(run.stdout.strip().splitlines()[-1])
    figures = {
        "rss_mb": steps.rows[-1]["rss_mb"], "rss_trimmed_mb": final["VmRSS"], "peak_mb": final["VmHWM"],
        "torch_mb": steps.delta("import torch", "import torch"),
        "libs_mb": steps.delta("import transformers, faiss", "import gemel"),
        "llm_mb": held["llm_weights"], "embedder_mb": held["embedder_weights"],
        "vision_mb": held["vision_weights"] + held["mapper_weights"],
        "kb_mb": held["kb_vectors"] + held["kb_index"] + held["kb_demo_pool_vectors"],
        "gpu_libs_released_mb": released_mb,
        "served_rss_mb": served["rss_mb"], "served_peak_mb": served["peak_mb"],
    }
    print("\nheld by the linker (MiB): " + ", ".join(f"{k} {v:.1f}" for k, v in held.items()))
    print(f"loaded in {load_s:.1f} s; answers: {answers}")
    print(f"as served (Linker.load, then the links; no trims): loaded {served['loaded_rss_mb']:.0f} "
          f"(peak {served['loaded_peak_mb']:.0f}), after the links {served['rss_mb']:.0f} "
          f"(peak {served['peak_mb']:.0f}); same answers: {served['answers'] == answers}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"profile": args.profile, "steps": steps.rows, "held_mb": held, "figures": figures,
                               "answers": answers, "load_s": load_s, "served": served}, indent=1))
    print(" ".join(f"{k}={v:.0f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
