"""The senses' prior under a content-free query, removed before the picture picks the sense (gemel/image/sense_prior.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from test_image_linking import TEXT, _with_image, scorer_file  # noqa: F401  (fixture)

from gemel.image.sense_prior import SensePriorCache, calibrated, centred, neutral_segment


def test_the_prior_is_centred_over_the_senses_and_leaves_the_other_candidates_alone():
    assert centred({}) == {}
    assert centred({1: -4.0, 2: -10.0}) == {1: 3.0, 2: -3.0}
    assert calibrated([-4.0, -10.0, -7.0], [-4.0, -14.0, None]) == [-9.0, -5.0, -7.0]
    assert calibrated([-4.0, -10.0], [-4.0, None]) == [-4.0, -10.0]  # one sense: nothing to calibrate
    assert calibrated([-4.0, -10.0, -7.0], [-4.0, -14.0, None], share=0.5) == [-6.5, -7.5, -7.0]


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


def test_choose_removes_the_recorded_prior_of_the_kept_senses():
    from gemel.training.image_fit import ImageScored, choose

    # the text prefers the fruit by 10 nats, all of it the name's prior; the picture prefers the hardware by 2
    r = ImageScored("x", "Nut (hardware)", ("Nut (fruit)", "Nut (hardware)", "Apple"), (-7.0, -17.0, -9.0),
                    (0.0, 0.0, 0.0), (3.0, 5.0, 0.0), (True, True, True), (-1, 0, -1), "groups", None, 0.9,
                    (True, True, False), (True, True, False), (-7.5, -17.5, None))
    gates = {"max_text_margin": 1.5, "trust_exact_name": True, "choose_sense": True}
    assert choose(r, 4.0, 1, **gates) == "Nut (fruit)"  # -7 + 12 > -17 + 20
    assert choose(r, 4.0, 1, remove_sense_prior=1.0, **gates) == "Nut (hardware)"  # -12 + 12 < -12 + 20
    assert choose(r, 4.0, 1, remove_sense_prior=0.5, **gates) == "Nut (hardware)"  # -9.5 + 12 < -14.5 + 20
    assert choose(r, 4.0, 1, remove_sense_prior=0.1, **gates) == "Nut (fruit)"  # -7.5 + 12 > -16.5 + 20
    # without choose_sense the prior stays: the text's 2-nat lead over Apple decides
    assert choose(r, 4.0, 1, remove_sense_prior=1.0, **{**gates, "choose_sense": False}) == "Nut (fruit)"
    no_prior = ImageScored(*[getattr(r, f) for f in ("id", "gold", "names", "llm", "sim", "image", "text",
                                                      "image_rank", "stratum", "confidence", "flatness", "named",
                                                      "senses")])
    assert choose(no_prior, 4.0, 1, remove_sense_prior=1.0, **gates) == "Nut (fruit)"  # records without priors


def _mercury(linker):
    from gemel.generation.decoding import Hypothesis

    planet, element, apple = (linker.kb.index(t) for t in ("Mercury (planet)", "Mercury (element)", "Apple"))
    scores = np.zeros(len(linker.kb), np.float32)
    scores[element] = 1.0
    lp = linker.config.decode.length_penalty  # the tiny profile ranks by the mean over tokens
    hyps = [Hypothesis(linker.name_tokens(i), llm * len(linker.name_tokens(i)) ** lp)
            for i, llm in ((planet, -1.0), (element, -20.0), (apple, -30.0))]
    return (planet, element, apple), scores, hyps


def test_rank_subtracts_the_prior_and_shows_it(tiny_linker, scorer_file):  # noqa: F811
    from gemel.linker import image_use

    (planet, element, apple), scores, hyps = _mercury(tiny_linker)
    query = tiny_linker.embedder.encode([TEXT])
    linker = _with_image(tiny_linker, scorer_file, weight=4.0)
    on = linker.replace(config=linker.config.replace(image={"choose_sense": True, "remove_sense_prior": 1.0}))
    plain = on.rank(hyps, query, scores, mention="Mercury")
    assert plain[0].name == "Mercury (planet)"  # -1 beats -20 + 4 x 1
    ranked = on.rank(hyps, query, scores, mention="Mercury", prior={planet: 10.0, element: -10.0})
    assert ranked[0].name == "Mercury (element)"  # -1 - 10 < -20 + 10 + 4
    by = {c.name: c for c in ranked}
    assert by["Mercury (planet)"].sense_prior == 10.0 and by["Apple"].sense_prior is None
    assert by["Mercury (planet)"].llm_logprob == pytest.approx(-1.0)  # the LLM's own score is shown as it was
    assert by["Mercury (planet)"].score == pytest.approx(plain[[c.name for c in plain].index("Mercury (planet)")]
                                                         .score - 10.0)
    qp = SimpleNamespace(image_scores=scores, image_note="")
    assert image_use(qp, ranked, 4.0).endswith("among the senses the mention names (the word's usual sense set aside)")


def test_the_prior_is_measured_once_and_only_where_it_applies(tiny_linker, scorer_file, monkeypatch):  # noqa: F811
    import gemel.linker as linker_module

    (planet, element, apple), scores, hyps = _mercury(tiny_linker)
    linker = _with_image(tiny_linker, scorer_file, weight=4.0)
    on = linker.replace(config=linker.config.replace(image={"choose_sense": True, "remove_sense_prior": 1.0}))
    qp = on.build_prompt(None, TEXT, "Mercury", verbatim=False)
    qp.image_scores = scores
    calls = []
    real = linker_module.score_sequences
    monkeypatch.setattr(linker_module, "score_sequences", lambda *a: calls.append(a[2]) or real(*a))
    prior = on.sense_calibration(qp, hyps, "Mercury")
    assert set(prior) == {planet, element} and sum(prior.values()) == pytest.approx(0.0)
    assert calls == [[on.name_tokens(planet), on.name_tokens(element)]]
    assert on.sense_calibration(qp, hyps, "Mercury") == prior and len(calls) == 1  # kept
    half = on.replace(config=on.config.replace(image={"remove_sense_prior": 0.5}))
    assert half.sense_calibration(qp, hyps, "Mercury") == pytest.approx({r: v / 2 for r, v in prior.items()})
    calls.clear()  # (the variant measured its own prior: its cache is its own)
    assert on.sense_calibration(qp, hyps, "the planet") is None  # names no sense
    assert on.sense_calibration(qp, hyps[:1], "Mercury") is None  # one sense
    off = linker.replace(config=linker.config.replace(image={"choose_sense": True}))
    assert off.sense_calibration(qp, hyps, "Mercury") is None
    qp.image_scores = None  # the picture did not pass the gates
    assert on.sense_calibration(qp, hyps, "Mercury") is None
    assert calls == []  # none of these ran the LLM


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
