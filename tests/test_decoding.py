"""Constrained decoding on a tiny random LLM: exactness against plain forward passes and against `generate`."""

from __future__ import annotations

import random

import pytest
import torch

from gemel.generation.decoding import Hypothesis, beam_search, hf_beam_search, prefill, score_sequences
from gemel.generation.trie import DictTrie
from gemel.models.llm import LanguageModel

NAMES = ["Grace Hopper", "Edward Hopper", "Grace Kelly", "Compiler", "Hopper", "Moon", "Mo", "Apple Inc."]


@pytest.fixture(scope="module")
def lm(tiny_config) -> LanguageModel:
    return LanguageModel.load(tiny_config.llm)


@pytest.fixture(scope="module")
def prompt(lm):
    ids = lm.encode("[Text]Hopper wrote compilers.\n[Question]What does Hopper mentioned in the text refer to?\n"
                    "[Answer]")
    return ids, lm.embed(ids)[None]  # (1, T, H)


def seqs_of(lm, names):
    return [lm.encode(n) + [lm.eos_id] for n in names]


def reference_logprob(lm, prompt_ids, seq) -> float:
    """Sum of log-probabilities by one plain forward pass over prompt + sequence."""
    full = torch.tensor([prompt_ids + seq[:-1]])
    with torch.no_grad():
        logp = lm.model(input_ids=full).logits[0].float().log_softmax(-1)
    start = len(prompt_ids) - 1
    return sum(float(logp[start + j, tok]) for j, tok in enumerate(seq))


def test_tree_scoring_equals_plain_forward_passes(lm, prompt):
    ids, embeds = prompt
    seqs = seqs_of(lm, NAMES)
    got = score_sequences(lm.model, prefill(lm.model, embeds), seqs)
    for seq, value in zip(seqs, got):
        assert value == pytest.approx(reference_logprob(lm, ids, seq), abs=1e-4)


def test_tree_scoring_leaves_the_prompt_cache_reusable(lm, prompt):
    _, embeds = prompt
    pre = prefill(lm.model, embeds)
    first = score_sequences(lm.model, pre, seqs_of(lm, NAMES))
    assert pre.cache.get_seq_length() == embeds.shape[1]
    assert score_sequences(lm.model, pre, seqs_of(lm, NAMES)) == pytest.approx(first, abs=1e-6)


def test_scoring_refuses_an_empty_sequence(lm, prompt):
    with pytest.raises(ValueError, match="empty token sequence"):
        score_sequences(lm.model, prefill(lm.model, prompt[1]), [[]])


@pytest.mark.parametrize("num_beams", [1, 3])
def test_beam_search_matches_generate(lm, prompt, num_beams):
    _, embeds = prompt
    trie = DictTrie(seqs_of(lm, NAMES))
    ours = beam_search(lm.model, prefill(lm.model, embeds), trie.allowed, lm.eos_id, num_beams, 24)
    ref = hf_beam_search(lm.model, embeds, trie, lm.eos_id, num_beams, 24)
    assert ours[0].tokens == ref[0].tokens
    assert ours[0].mean == pytest.approx(ref[0].mean, abs=1e-3)


def test_every_beam_is_a_kb_name_and_scores_are_exact(lm, prompt):
    ids, embeds = prompt
    seqs = seqs_of(lm, NAMES)
    trie = DictTrie(seqs)
    hyps = beam_search(lm.model, prefill(lm.model, embeds), trie.allowed, lm.eos_id, 5, 24)
    assert 1 <= len(hyps) <= 5
    assert all(list(h.tokens) in seqs for h in hyps)
    means = [h.mean for h in hyps]
    assert means == sorted(means, reverse=True)
    for h in hyps:
        assert h.logprob == pytest.approx(reference_logprob(lm, ids, list(h.tokens)), abs=1e-3)


def test_names_cut_by_max_new_tokens_are_dropped(lm, prompt):
    trie = DictTrie(seqs_of(lm, ["A very long entity name indeed"]))
    assert beam_search(lm.model, prefill(lm.model, prompt[1]), trie.allowed, lm.eos_id, 3, 4) == []


def test_random_tries_only_yield_stored_sequences(lm, prompt):
    rng = random.Random(0)
    pre = prefill(lm.model, prompt[1])
    for _ in range(5):
        names = ["".join(rng.choice("abc ") for _ in range(rng.randint(1, 6))).strip() or "a" for _ in range(6)]
        seqs = seqs_of(lm, names)
        trie = DictTrie(seqs)
        for h in beam_search(lm.model, pre, trie.allowed, lm.eos_id, 4, 12):
            assert list(h.tokens) in seqs


def test_logits_are_not_modified_by_constraining(lm, prompt):
    pre = prefill(lm.model, prompt[1])
    before = pre.first_logprobs.clone()
    trie = DictTrie(seqs_of(lm, NAMES))
    beam_search(lm.model, pre, trie.allowed, lm.eos_id, 3, 24)
    assert torch.equal(pre.first_logprobs, before)


def test_hypothesis_mean_is_length_normalised():
    assert Hypothesis((5, 6, 2), -3.0).mean == pytest.approx(-1.0)
