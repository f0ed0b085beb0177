"""Latency of `Linker.link` against the bare model calls, the naive decoding path and the prefill floor.

For real cases of ``assets/eval/test.jsonl`` with the offline default (16 demonstrations, K candidates), in one
run:
- link: ``linker.link(...)`` end to end (query image features not cached; demonstration features cached, as
  in steady use);
- bare: the model calls that link makes, on the same inputs: vision encode of the query image, the prompt
  prefill, and the one tree-attention pass that scores every candidate;
- naive: what the original code does: ``generate(num_beams=5, prefix_allowed_tokens_fn=trie)`` on the same
  ``inputs_embeds`` (it prefills the prompt once per beam); timed after every link, so that its memory (five
  copies of the prompt's activations) is not counted as the linker's;
- floor: the FLOPs of one prefill of the T prompt tokens over the matmul rate of the LLM's own precision,
  measured now on this machine on the prefill's MLP shape (``bench/precision.py: prefill_floor_s``):
  ``2 x non-embedding parameters x T`` for the linear layers plus ``2 x layers x T^2 x heads x head_dim`` for
  causal attention (QK^T and AV over the lower triangle; ``attention_flops``, ~12% of the total at 830
  tokens for SmolLM2-135M). The candidates' scoring pass (~60 tree tokens) is left out, so the floor is a
  lower bound on what link must compute.

Last line: ``overhead_ratio=<link/bare> naive_ratio=<naive/link> floor_ratio=<link/floor> link_p50_s=<s>
rss_mb=<peak RSS of loading and linking, before the naive path>``. Goals: overhead <= 1.15, naive >= 3,
floor <= 1.5, RSS <= 1.5 GB. ``bench/memory.py`` says where the RSS goes.

``--smoke`` (half a minute): one case, also on the naive path; the same last line, figures meaningless.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


import torch  # noqa: E402

TORCH_RSS_MB = current_rss_mb()  # what importing torch alone costs (the CUDA build's libraries)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._smoke import SMOKE_HELP  # noqa: E402
from bench.precision import prefill_floor_s  # noqa: E402
from gemel.generation.decoding import hf_beam_search, prefill, score_sequences  # noqa: E402
from gemel.generation.trie import DictTrie  # noqa: E402
from gemel.images import load_image  # noqa: E402
from gemel.kb.demonstrations import load_jsonl_examples  # noqa: E402
from gemel.linker import Linker  # noqa: E402


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


@torch.no_grad()
def bare_calls(linker: Linker, image, embeds: torch.Tensor, seqs: list) -> float:
    """Vision encode + prefill + one candidate-scoring pass, timed without any of link's bookkeeping."""
    t = time.perf_counter()
    if image is not None:
        feature = linker.vision.encode([image])
        linker.mapper(feature)
    pre = prefill(linker.lm.model, embeds)
    score_sequences(linker.lm.model, pre, seqs)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="offline")
    ap.add_argument("--cases", type=int, default=6, help="real test cases to time")
    ap.add_argument("--naive-cases", type=int, default=2, help="cases also timed on the naive path (slow)")
    ap.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = ap.parse_args()
    if args.smoke:  # one case, timed on every path
        args.cases, args.naive_cases = 1, 1
    torch.set_num_threads(torch.get_num_threads())
    linker = Linker.load(args.profile)
    cases = [e for e in load_jsonl_examples(ROOT / "assets/eval/test.jsonl", "test") if e.entity][: args.cases]
    model = linker.lm.model
    link_t, bare_t, naive_t, floor_t, tokens, prompts = [], [], [], [], [], []
    linker.link(cases[0].image, cases[0].text, cases[0].mention)  # warm-up: caches demo image features
    for ex in cases:
        image = load_image(ex.image)
        linker.features.forget(ex.image)
        dt, pred = timed(lambda: linker.link(ex.image, ex.text, ex.mention))
        link_t.append(dt)
        # the prompt link built, through the same public call, for the bare and naive paths
        with torch.no_grad():
            qp = linker.build_prompt(ex.image, ex.text, ex.mention)
        embeds = qp.embeds
        seqs = [linker.name_tokens(j) for j in qp.candidate_ids]
        prompts.append((embeds, seqs))
        bare_t.append(bare_calls(linker, image, embeds, seqs))
        n_tok = embeds.shape[1]
        tokens.append(n_tok)
        floor_t.append(prefill_floor_s(model, linker.lm.dtype_name, n_tok)[0])
        print(f"{ex.id}: prompt {n_tok} tokens, link {dt:.2f} s, bare {bare_t[-1]:.2f} s, floor {floor_t[-1]:.2f} s",
              flush=True)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # serving: loading and linking
    d = linker.config.decode
    for ex, (embeds, seqs) in list(zip(cases, prompts))[: args.naive_cases]:
        trie = DictTrie(seqs)
        naive_t.append(timed(lambda: hf_beam_search(model, embeds, trie, linker.lm.eos_id,
                                                    d.num_beams, d.max_new_tokens))[0])
        print(f"{ex.id}: naive {naive_t[-1]:.2f} s", flush=True)
    p50 = statistics.median
    link_naive = p50(link_t[: len(naive_t)])
    naive_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"demonstrations={linker.config.demos.n} candidates={linker.config.decode.candidates} "
          f"prompt_tokens_p50={p50(tokens):.0f} threads={torch.get_num_threads()} precision={linker.lm.dtype_name} "
          f"rss_after_import_torch_mb={TORCH_RSS_MB:.0f} rss_with_naive_mb={naive_rss_mb:.0f}")
    print(f"overhead_ratio={p50(link_t) / p50(bare_t):.2f} naive_ratio={p50(naive_t) / link_naive:.2f} "
          f"floor_ratio={p50(link_t) / p50(floor_t):.2f} link_p50_s={p50(link_t):.2f} rss_mb={rss_mb:.0f}")


if __name__ == "__main__":
    main()
