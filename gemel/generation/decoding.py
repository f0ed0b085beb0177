"""Constrained decoding over KB entity names, paying for the prompt once.

GEMEL decodes with beam search (5 beams, 32 new tokens) through a prefix tree of entity names (GENRE's
``prefix_allowed_tokens_fn``), so every output is a KB entity and the beams are the ranked candidates. Calling
``generate(num_beams=5)`` on ``inputs_embeds`` prefills the long in-context prompt once *per beam*; here the
prompt is prefilled once and its KV cache is shared:

- :func:`beam_search`: the same constrained beam search, the cache re-indexed per step (``reorder_cache``);
- :func:`score_sequences`: with a short candidate list, every candidate is scored exactly by teacher forcing,
  all of them in one pass of their prefix tree over the cached prompt (tree attention);
- :func:`hf_beam_search`: the reference path through ``model.generate`` (benchmarks and tests).

Scores are sums of token log-probabilities over the name's tokens and the final EOS; ranking divides them by
``tokens ** length_penalty`` as ``generate`` does (1 = mean per token, 0 = the plain sum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from gemel.generation.trie import Trie, prefix_allowed_tokens_fn

AllowedFn = Callable[[list[int]], list[int]]  # generated tokens so far -> allowed next tokens ([] = dead end)


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]  # generated tokens, ending with EOS
    logprob: float  # sum of token log-probabilities

    @property
    def mean(self) -> float:
        return self.normalised(1.0)

    def normalised(self, length_penalty: float) -> float:
        """``logprob / len(tokens) ** length_penalty`` (generate's convention: 1 = mean, 0 = plain sum)."""
        return self.logprob / max(1, len(self.tokens)) ** length_penalty


@dataclass
class Prefilled:
    """The prompt after one forward pass: its KV cache and the log-probabilities of the first new token."""

    cache: object  # transformers Cache for batch 1
    first_logprobs: torch.Tensor  # (V,)
    length: int  # prompt tokens


@torch.inference_mode()
def prefill(model: torch.nn.Module, embeds: torch.Tensor) -> Prefilled:
    """One forward pass over the (1, T, H) prompt embeddings."""
    out = model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)
    return Prefilled(out.past_key_values, out.logits[0, -1].float().log_softmax(-1), embeds.shape[1])


@torch.inference_mode()
def refill(model: torch.nn.Module, pre: Prefilled, keep: int, embeds: torch.Tensor) -> Prefilled:
    """The prompt's first ``keep`` tokens followed by other (1, T, H) embeddings, without running the kept ones
    again: ``pre``'s cache is cropped to ``keep`` and extended in place, so ``pre`` is used up."""
    if not 0 < keep <= pre.length:
        raise ValueError(f"keep={keep} must be in 1..{pre.length} (the prefilled prompt's tokens)")
    extra = pre.cache.get_seq_length() - keep
    if extra > 0:
        pre.cache.crop(-extra)  # this transformers' crop takes the number of tokens to drop, negated
    out = model(inputs_embeds=embeds, past_key_values=pre.cache, use_cache=True, logits_to_keep=1)
    return Prefilled(out.past_key_values, out.logits[0, -1].float().log_softmax(-1), keep + embeds.shape[1])


def _copy_cache(model: torch.nn.Module, cache: object, batch: int) -> object:
    """A fresh cache holding ``batch`` copies of a batch-1 cache (the copy is written to by decoding)."""
    from transformers import DynamicCache

    data = [(layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1))
            for layer in cache.layers]
    return DynamicCache(data, config=model.config)


@torch.inference_mode()
def score_sequences(model: torch.nn.Module, pre: Prefilled, sequences: Sequence[Sequence[int]]) -> list[float]:
    """Exact sum of log-probabilities of each token sequence continuing the prefilled prompt.

    One forward pass of batch 1 over the candidates' *prefix tree* ("tree attention"): each distinct prefix
    is one token, positioned after the prompt at its depth, attending to the prompt and its own ancestors
    through a custom 4D mask. Shared prefixes are computed once and no copy of the prompt's cache is made:
    the appended tokens are cropped off afterwards.
    """
    if any(len(s) == 0 for s in sequences):
        raise ValueError("cannot score an empty token sequence: every name must end with EOS")
    nodes: dict[tuple[int, ...], int] = {}  # prefix (len >= 1, excluding each sequence's last token) -> node
    for seq in sequences:
        for j in range(1, len(seq)):
            nodes.setdefault(tuple(seq[:j]), len(nodes))
    totals = [float(pre.first_logprobs[s[0]]) for s in sequences]
    if not nodes:
        return totals
    logp = _tree_logprobs(model, pre, list(nodes))  # (N, V)
    for i, seq in enumerate(sequences):
        totals[i] += sum(float(logp[nodes[tuple(seq[:j])], seq[j]]) for j in range(1, len(seq)))
    return totals


def _tree_logprobs(model: torch.nn.Module, pre: Prefilled, prefixes: list[tuple[int, ...]]) -> torch.Tensor:
    """Next-token log-probabilities after each prefix, all prefixes in one pass over the cached prompt."""
    n, t = len(prefixes), pre.length
    index = {p: i for i, p in enumerate(prefixes)}
    dtype = next(model.parameters()).dtype
    mask = torch.full((n, t + n), torch.finfo(dtype).min, dtype=dtype)  # additive: 0 = may attend
    mask[:, :t] = 0.0
    for i, p in enumerate(prefixes):
        for j in range(1, len(p) + 1):  # itself and every ancestor prefix
            mask[i, t + index[p[:j]]] = 0.0
    ids = torch.tensor([[p[-1] for p in prefixes]])  # (1, N)
    positions = torch.tensor([[t + len(p) - 1 for p in prefixes]])  # (1, N)
    try:
        out = model(input_ids=ids, position_ids=positions, attention_mask=mask[None, None],
                    past_key_values=pre.cache, use_cache=True)
    finally:
        if pre.cache.get_seq_length() > t:
            pre.cache.crop(-n)  # leave the prompt cache as it was
    return out.logits[0].float().log_softmax(-1)  # (N, V)


@torch.inference_mode()
def beam_search(model: torch.nn.Module, pre: Prefilled, allowed: AllowedFn, eos_id: int, num_beams: int = 5,
                max_new_tokens: int = 32, length_penalty: float = 1.0) -> list[Hypothesis]:
    """Constrained beam search from a prefilled prompt; returns finished hypotheses, best first (scores
    normalised by ``length ** length_penalty``, as ``generate``).

    Only sequences that end in EOS along a trie path are returned (a name cut off by ``max_new_tokens`` is
    not a KB entity and is dropped).
    """
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    logp = pre.first_logprobs[None]  # (beams, V)
    cache = _copy_cache(model, pre.cache, 1)  # decoding writes to it; the prefilled prompt stays reusable
    finished: list[Hypothesis] = []
    for _ in range(max_new_tokens):
        options = _expand(beams, logp, allowed, num_beams)
        alive: list[tuple[list[int], float]] = []
        source: list[int] = []
        for score, b, tok in options:
            toks = beams[b][0] + [tok]
            if tok == eos_id:
                finished.append(Hypothesis(tuple(toks), score))
            else:
                alive.append((toks, score))
                source.append(b)
            if len(alive) == num_beams:
                break
        if not alive or _done(finished, alive, num_beams, length_penalty):
            break
        cache.reorder_cache(torch.tensor(source))  # (beams,) rows of the previous step; step 0: repeats row 0
        step = torch.tensor([[toks[-1]] for toks, _ in alive])  # (beams, 1)
        logp = model(input_ids=step, past_key_values=cache, use_cache=True).logits[:, -1].float().log_softmax(-1)
        beams = alive
    return sorted(finished, key=lambda h: h.normalised(length_penalty), reverse=True)[:num_beams]


def _expand(beams: list[tuple[list[int], float]], logp: torch.Tensor, allowed: AllowedFn,
            num_beams: int) -> list[tuple[float, int, int]]:
    """(score, beam, token) of the best allowed continuations of every beam, best first."""
    options = []
    for b, (toks, score) in enumerate(beams):
        ids = allowed(toks)
        if not ids:
            continue
        lp = logp[b, ids]  # a gathered copy: the logits themselves are never modified
        top = lp.topk(min(len(ids), 2 * num_beams))
        options.extend((score + float(v), b, ids[int(i)]) for v, i in zip(top.values, top.indices))
    options.sort(key=lambda o: o[0], reverse=True)
    return options


def _done(finished: list[Hypothesis], alive: list[tuple[list[int], float]], num_beams: int,
          length_penalty: float) -> bool:
    """Stop once num_beams names are finished and no live beam can beat the worst of them (HF's heuristic)."""
    if len(finished) < num_beams:
        return False
    worst = sorted(h.normalised(length_penalty) for h in finished)[-num_beams]
    best_alive = max(score / len(toks) ** length_penalty for toks, score in alive)
    return best_alive < worst


@torch.inference_mode()
def hf_beam_search(model: torch.nn.Module, embeds: torch.Tensor, trie: Trie, eos_id: int,
                   num_beams: int = 5, max_new_tokens: int = 32, length_penalty: float = 1.0) -> list[Hypothesis]:
    """The reference path of the original code: ``generate(num_beams)`` on ``inputs_embeds``, constrained by
    the trie's standard hook (`gemel.generation.trie.prefix_allowed_tokens_fn`)."""
    prefix_fn = prefix_allowed_tokens_fn(trie, eos_id)
    out = model.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                         num_beams=num_beams, num_return_sequences=num_beams, max_new_tokens=max_new_tokens,
                         do_sample=False, output_scores=True, output_logits=True, return_dict_in_generate=True,
                         length_penalty=length_penalty,
                         prefix_allowed_tokens_fn=prefix_fn, pad_token_id=eos_id, eos_token_id=eos_id)
    hyps = []
    for row, seq in enumerate(out.sequences.tolist()):
        toks = seq[: seq.index(eos_id) + 1] if eos_id in seq else seq
        if num_beams > 1:
            total = float(out.sequences_scores[row]) * len(toks) ** length_penalty
        else:  # greedy search reports no sequence score: sum the raw log-probabilities of its tokens
            total = sum(float(out.logits[j][row].float().log_softmax(-1)[t]) for j, t in enumerate(toks))
        hyps.append(Hypothesis(tuple(toks), total))
    return hyps
