"""The offline default in each LLM precision, side by side: link time, prefill floor, accuracy and memory.

Each precision (float32, bfloat16, int8 by default) runs in its own subprocess, so its peak RSS is its own. A
worker loads ``Linker.load(profile, llm={"dtype": ...})`` and measures:
- link: ``linker.link`` p50 over the first ``--cases`` cases of ``assets/eval/test.jsonl`` after one warm-up
  link, the query image's feature not cached (as ``bench/link_latency.py``);
- floor: the prompt prefill's FLOPs over this precision's own matmul rate, measured now on the prefill's MLP
  shape: 2 x non-embedding parameters x T for the linear layers, plus 2 x layers x T^2 x (heads x head_dim)
  for causal attention (QK^T and AV over the lower triangle). int8 quantises the Linear layers only, so its
  attention FLOPs count at the float32 rate;
- accuracy on ``dev.jsonl`` and ``test.jsonl`` (each case kept out of its own demonstrations), and how many
  answers differ from float32's;
- peak RSS (``ru_maxrss``, loading included), RSS after linking, the KV cache of a median prompt.

Last lines, one per precision: ``dtype=... link_p50_s=... floor_ratio=... rss_mb=... dev=... test=...``; also
writes ``bench/out/precision.png`` and each precision's figures to ``bench/out/precision-<dtype>.json``.

The accuracy runs take most of the time (95 links per precision, bfloat16 is slow where it is emulated) and do
not need a quiet machine; the timings do. So ``--jobs 3`` measures the precisions at once (timings then
meaningless), and ``--no-accuracy`` times only, taking the answers from the JSON of an earlier run. Goals
(issue 15, 2 cores): link p50 <= 0.6 s, link/floor <= 1.25, peak RSS <= 1.5 GB.

``--smoke`` (a minute): float32 and int8, one timed case, one case of each split, written under
``bench/out/smoke/precision/``; the same last lines, figures meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._smoke import SMOKE_HELP  # noqa: E402

RESULT = "RESULT "  # prefix of the worker's JSON line


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def matmul_rate(precision: str, rows: int, inner: int, cols: int, repeats: int = 5, rounds: int = 5) -> float:
    """FLOP/s of a (rows, inner) x (inner, cols) product in ``precision`` (int8: a dynamically quantised
    ``nn.Linear``, as the model's layers), median of ``rounds`` timings."""
    import torch

    from gemel.models.precision import quantize_int8

    if precision == "int8":
        layer = quantize_int8(torch.nn.Sequential(torch.nn.Linear(inner, cols, bias=False)))
        a = torch.randn(rows, inner)

        def run() -> object:
            return layer(a)
    else:
        dtype = getattr(torch, precision)
        a, b = torch.randn(rows, inner, dtype=dtype), torch.randn(inner, cols, dtype=dtype)

        def run() -> object:
            return a @ b
    with torch.inference_mode():
        for _ in range(2):
            run()
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(repeats):
                run()
            times.append((time.perf_counter() - t) / repeats)
    return 2 * rows * inner * cols / statistics.median(times)


def prefill_floor_s(model, precision: str, tokens: int) -> tuple[float, float, float]:
    """(floor seconds, linear GFLOP, attention GFLOP) of one prefill of ``tokens`` prompt tokens."""
    cfg = model.config
    hidden, inter = cfg.hidden_size, getattr(cfg, "intermediate_size", 4 * cfg.hidden_size)
    head_dim = getattr(cfg, "head_dim", None) or hidden // cfg.num_attention_heads
    emb = model.get_input_embeddings().weight.numel()
    non_emb = sum(p.numel() for p in model.parameters()) - emb
    if precision == "int8":  # quantised Linears are no parameters any more: count them from the config
        non_emb = _linear_params(cfg, hidden, inter, head_dim)
    linear = 2 * non_emb * tokens
    attention = attention_flops(cfg, tokens)
    linear_rate = matmul_rate(precision, tokens, hidden, inter)
    attention_rate = linear_rate if precision != "int8" else matmul_rate("float32", tokens, hidden, inter)
    return linear / linear_rate + attention / attention_rate, linear / 1e9, attention / 1e9


def attention_flops(cfg, tokens: int) -> int:
    """FLOPs of causal self-attention over a prompt of ``tokens`` tokens, in all layers (the one place this
    count lives; ``bench/link_latency.py`` uses it too). Per layer and head, QK^T and AV each cost
    2 x T^2 x head_dim over the full square; causal attention needs only the lower triangle (~T^2 / 2), so
    together 2 x T^2 x head_dim; times heads and layers. Grouped KV heads share keys and values but every query
    head still does its own products, so ``num_attention_heads`` (not KV heads) counts."""
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * tokens * tokens * cfg.num_attention_heads * head_dim


def _linear_params(cfg, hidden: int, inter: int, head_dim: int) -> int:
    """Weights of the Llama-style decoder's Linear layers (q, k, v, o, gate, up, down) in all layers."""
    kv = cfg.num_key_value_heads * head_dim
    q = cfg.num_attention_heads * head_dim
    per_layer = hidden * q + 2 * hidden * kv + q * hidden + 3 * hidden * inter
    return cfg.num_hidden_layers * per_layer


def kv_cache_mb(model, tokens: int) -> float:
    """Keys and values of ``tokens`` prompt tokens in every layer, in the dtype attention runs in."""
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    itemsize = model.get_input_embeddings().weight.element_size()  # int8 keeps float32 activations
    return 2 * cfg.num_hidden_layers * tokens * cfg.num_key_value_heads * head_dim * itemsize / 2**20


def worker(args: argparse.Namespace) -> dict:
    import torch

    from gemel.data.evaluate import load_examples, predict
    from gemel.linker import Linker

    torch_rss = current_rss_mb()
    t0 = time.perf_counter()
    linker = Linker.load(args.profile, llm={"dtype": args.worker})
    load_s = time.perf_counter() - t0
    dev = load_examples(ROOT / "assets/eval/dev.jsonl", limit=args.limit)
    test = load_examples(ROOT / "assets/eval/test.jsonl")
    timed = [e for e in test if e.entity][: args.cases]
    test = test[: args.limit]
    linker.link(timed[0].image, timed[0].text, timed[0].mention)  # warm-up: demonstration image features
    link_s, cpu_s, tokens = [], [], []
    for ex in timed:
        linker.features.forget(ex.image)
        t, c = time.perf_counter(), time.process_time()
        pred = linker.link(ex.image, ex.text, ex.mention)
        link_s.append(time.perf_counter() - t)
        cpu_s.append(time.process_time() - c)  # all threads: ~ threads x wall time on an idle machine
        tokens.append(pred.prompt_tokens)
    n_tok = int(statistics.median(tokens))
    floor, linear_gflop, attention_gflop = prefill_floor_s(linker.lm.model, linker.lm.dtype_name, n_tok)
    cache_mb = kv_cache_mb(linker.lm.model, n_tok)
    answers = {}
    for split, examples in (("dev", dev), ("test", test)) if args.accuracy else ():
        preds = predict(linker, examples, progress=False)
        answers[split] = {"gold": [e.entity for e in examples], "pred": [p.entity for p in preds],
                          "link_p50_s": statistics.median(p.timings["total"] for p in preds)}
    return {"dtype": linker.lm.dtype_name, "requested": args.worker, "threads": torch.get_num_threads(),
            "load_s": load_s, "link_s": link_s, "link_p50_s": statistics.median(link_s), "prompt_tokens": n_tok,
            "link_cpu_p50_s": statistics.median(cpu_s), "load_avg": os.getloadavg()[0],
            "floor_s": floor, "linear_gflop": linear_gflop, "attention_gflop": attention_gflop,
            "kv_cache_mb": cache_mb, "rss_after_import_torch_mb": torch_rss, "rss_now_mb": current_rss_mb(),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "answers": answers}


def start_worker(dtype: str, args: argparse.Namespace, out_dir: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", dtype, "--profile", args.profile,
           "--cases", str(args.cases), "--accuracy" if args.accuracy else "--no-accuracy"]
    cmd += ["--limit", str(args.limit)] if args.limit else []
    with (out_dir / f"precision-{dtype}.log").open("w") as log:  # progress bars must not fill a pipe
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)


def finish_worker(dtype: str, proc: subprocess.Popen, out_dir: Path) -> dict:
    stdout, _ = proc.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        log = (out_dir / f"precision-{dtype}.log").read_text()
        raise SystemExit(f"worker {dtype} failed ({proc.returncode}):\n{log[-3000:]}")
    result = json.loads(lines[-1][len(RESULT):])
    saved = out_dir / f"precision-{dtype}.json"
    if not result["answers"]:  # timing only: the answers of the last accuracy run
        if not saved.exists():
            raise SystemExit(f"--no-accuracy needs an earlier accuracy run of {dtype} ({saved} is missing)")
        result["answers"] = json.loads(saved.read_text())["answers"]
        result["answers_from"] = str(saved)
    saved.write_text(json.dumps(result, indent=1))
    return result


def summarise(r: dict, reference: dict | None) -> dict:
    row = dict(r)
    for split in ("dev", "test"):
        a = r["answers"][split]
        row[f"{split}_correct"] = sum(p == g for p, g in zip(a["pred"], a["gold"]))
        row[f"{split}_n"] = len(a["gold"])
        row[f"{split}_accuracy"] = row[f"{split}_correct"] / row[f"{split}_n"]
        ref = reference["answers"][split]["pred"] if reference else a["pred"]
        row[f"{split}_changed"] = sum(p != q for p, q in zip(a["pred"], ref))
    row["floor_ratio"] = r["link_p50_s"] / r["floor_s"]
    return row


def whole_split(r: dict) -> str:
    """The test split's link p50 (image features cached), or where the reused answers came from."""
    if "answers_from" in r:
        return f"answers from {r['answers_from']}"
    return f"link p50 over the test split {r['answers']['test']['link_p50_s']:.2f} s"


def smoke(args: argparse.Namespace) -> None:
    """``--smoke``: the tiny inputs (float32, and int8 for its own floor and quantised layers; one case timed,
    one of each split linked), outputs under ``bench/out/smoke/precision/``."""
    from bench._smoke import smoke_out

    args.dtypes, args.cases, args.limit, args.jobs, args.accuracy = "float32,int8", 1, 1, 1, True
    args.out = str(smoke_out("precision") / "precision.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="offline")
    ap.add_argument("--dtypes", default="float32,bfloat16,int8", help="comma-separated precisions to compare")
    ap.add_argument("--cases", type=int, default=10, help="test cases timed for the link p50")
    ap.add_argument("--out", default=str(ROOT / "bench/out/precision.png"), help="plot file (JSONs beside it)")
    ap.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=True,
                    help="also link dev and test (default); --no-accuracy reuses the answers of an earlier run")
    ap.add_argument("--limit", type=int, help="accuracy on the first N cases of each split only (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="precisions measured at once (> 1: timings not valid)")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: measure one precision, print its JSON
    args = ap.parse_args()
    if args.smoke:
        smoke(args)
    if args.worker:
        print(RESULT + json.dumps(worker(args)), flush=True)
        return
    from gemel.data.plots import plot_precision
    from gemel.models.precision import describe

    print(f"auto here: {describe('auto')}", flush=True)
    dtypes, out_dir = args.dtypes.split(","), Path(args.out).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for start in range(0, len(dtypes), args.jobs):
        t = time.perf_counter()
        batch = [(d, start_worker(d, args, out_dir)) for d in dtypes[start: start + args.jobs]]
        results.extend(finish_worker(d, proc, out_dir) for d, proc in batch)
        print(f"{', '.join(d for d, _ in batch)}: measured in {time.perf_counter() - t:.0f} s", flush=True)
    reference = next((r for r in results if r["dtype"] == "float32"), None)
    rows = [summarise(r, reference) for r in results]
    for r in rows:
        print(f"{r['dtype']}: threads {r['threads']}, load average {r['load_avg']:.1f}, link CPU time p50 "
              f"{r['link_cpu_p50_s']:.2f} s, load {r['load_s']:.1f} s, prompt {r['prompt_tokens']} tokens "
              f"(linear {r['linear_gflop']:.0f} + attention {r['attention_gflop']:.0f} GFLOP), floor "
              f"{r['floor_s']:.2f} s, link {' '.join(f'{s:.2f}' for s in r['link_s'])} s, {whole_split(r)}, "
              f"KV cache {r['kv_cache_mb']:.0f} MB, RSS "
              f"after import torch {r['rss_after_import_torch_mb']:.0f} MB, after linking {r['rss_now_mb']:.0f} MB; "
              f"answers changed vs float32: dev {r['dev_changed']}, test {r['test_changed']}")
    path = plot_precision(rows, args.out)
    print(f"plot: {path}")
    for r in rows:
        print(f"dtype={r['dtype']} link_p50_s={r['link_p50_s']:.2f} floor_ratio={r['floor_ratio']:.2f} "
              f"rss_mb={r['rss_mb']:.0f} dev={r['dev_correct']}/{r['dev_n']} test={r['test_correct']}/{r['test_n']} "
              f"changed_vs_fp32={r['dev_changed'] + r['test_changed']}")


if __name__ == "__main__":
    main()
