"""The senses' prior under a content-free query: the ranker's sense_prior feature (gemel/image/sense_prior.py)."""

from __future__ import annotations

import pytest

from gemel.image.sense_prior import SensePriorCache, centred, neutral_segment

TEXT = "Look at this Apple."


def test_the_prior_is_centred_over_the_senses_and_leaves_the_other_candidates_alone():
    assert centred({}) == {}
    assert centred({1: -4.0, 2: -10.0}) == {1: 3.0, 2: -3.0}


def test_the_content_free_query_is_the_bare_mention_without_a_picture():
    seg = neutral_segment("Nut")
    assert seg.prefix is None
    assert seg.text.startswith("[Text]Nut\n") and seg.text.endswith("refer to?\n[Answer]")


def test_the_cache_keeps_the_last_priors():
    cache = SensePriorCache(size=2)
    cache.put("a", {1: 0.0})
    cache.put("b", {2: 0.0})
    assert cache.get("a") == {1: 0.0}  # "a" is now the newest
    cache.put("c", {3: 0.0})
    assert cache.get("b") is None and cache.get("a") == {1: 0.0} and cache.get("c") == {3: 0.0}


def _mercury(linker):
    from gemel.generation.decoding import Hypothesis

    planet, element, apple = (linker.kb.index(t) for t in ("Mercury (planet)", "Mercury (element)", "Apple"))
    lp = linker.config.decode.length_penalty
    hyps = [Hypothesis(linker.name_tokens(i), llm * len(linker.name_tokens(i)) ** lp)
            for i, llm in ((planet, -1.0), (element, -20.0), (apple, -30.0))]
    return (planet, element, apple), hyps


def test_the_prior_is_measured_once_and_only_for_the_senses_a_mention_names(tiny_linker, monkeypatch):
    import gemel.linker as linker_module

    (planet, element, apple), hyps = _mercury(tiny_linker)
    assert tiny_linker.sense_rows(hyps, "Mercury") == [planet, element]
    assert tiny_linker.sense_rows(hyps, "the planet") == [] and tiny_linker.sense_rows(hyps, None) == []
    linker = tiny_linker.replace()  # a variant: its prior cache is its own
    qp = linker.build_prompt(None, TEXT, "Mercury", verbatim=False)
    calls = []
    real = linker_module.score_sequences
    monkeypatch.setattr(linker_module, "score_sequences", lambda *a: calls.append(a[2]) or real(*a))
    prior = linker.sense_prior(qp, "Mercury", [planet, element])
    assert set(prior) == {planet, element} and sum(centred(prior).values()) == pytest.approx(0.0)
    assert calls == [[linker.name_tokens(planet), linker.name_tokens(element)]]
    assert linker.sense_prior(qp, "Mercury", [planet, element]) == prior and len(calls) == 1  # kept


def test_the_senses_carry_their_centred_prior_as_a_feature(tiny_linker):
    from gemel.text import names_sense

    pred = tiny_linker.link(None, "We saw Mercury last night.", "Mercury")
    senses = [c for c in pred.candidates if names_sense("Mercury", c.name)]
    others = [c for c in pred.candidates if not names_sense("Mercury", c.name)]
    assert len(senses) >= 2, [c.name for c in pred.candidates]
    assert sum(c.features["sense_prior"] for c in senses) == pytest.approx(0.0, abs=1e-6)
    assert all(c.features["sense_prior"] == 0.0 and c.sense_prior is None for c in others)
    assert any(c.sense_prior is not None for c in senses)


def test_refill_reuses_the_cached_demonstrations_and_matches_a_fresh_prefill(tiny_linker):
    import torch

    from gemel.generation.decoding import prefill, refill, score_sequences

    model, prompt = tiny_linker.lm.model, tiny_linker.prompt
    qp = tiny_linker.build_prompt(None, TEXT, "Mercury", verbatim=False)
    neutral = neutral_segment("Mercury")
    fresh = prefill(model, prompt.embed(qp.segments[:-1] + [neutral]))
    pre = prefill(model, qp.embeds)
    keep = pre.length - prompt.length(qp.segments[-1])
    reused = refill(model, pre, keep, prompt.embed([neutral])[:, len(prompt.bos_ids):])
    assert reused.length == fresh.length
    torch.testing.assert_close(reused.first_logprobs, fresh.first_logprobs, atol=1e-4, rtol=1e-4)
    names = [tiny_linker.name_tokens(tiny_linker.kb.index(t)) for t in ("Mercury (planet)", "Apple")]
    assert score_sequences(model, reused, names) == pytest.approx(score_sequences(model, fresh, names), abs=1e-3)
    with pytest.raises(ValueError, match="keep=0"):
        refill(model, prefill(model, qp.embeds), 0, prompt.embed([neutral]))


def test_the_cli_and_the_candidate_round_trip_show_the_prior():
    from gemel.cli.main import format_prediction
    from gemel.types import Candidate, Prediction

    cands = [Candidate("Nut (hardware)", 9.0, -17.0, 0.5, image_score=5.8, sense_prior=-5.35),
             Candidate("Apple", -9.0, -9.0, 0.4)]
    text = format_prediction(Prediction("Nut (hardware)", cands, []))
    assert "image +5.800, sense prior -5.350)" in text and "sim 0.400)" in text
    assert Candidate.from_dict(cands[0].to_dict()) == cands[0]
    old = {k: v for k, v in cands[0].to_dict().items() if k != "sense_prior"}  # written before the field existed
    assert Candidate.from_dict(old).sense_prior is None
