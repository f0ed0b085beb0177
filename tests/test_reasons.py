"""Why an answer won, in words: the parts add up to the lead, the phrases read the right way round, no profile
key reaches a reader, and every answer (fused score or ranker, Link, Review, API, CLI) carries it."""

from __future__ import annotations

import dataclasses
import re

import pytest

from gemel.config import load_profile
from gemel.rank.features import NAMES
from gemel.rank.reasons import LABELS, PHRASES, explain

RANKED = [
    {"name": "Japan", "score": 1.7, "features": {"name_exact": 1.0, "image_known": 1.0, "image_top": 1.0,
                                                 "llm_sum": -3.0},
     "contributions": {"name_exact": 1.5, "llm_sum": 0.4, "image_known": -0.2, "memory_sim": 0.0}},
    {"name": "Tokyo", "score": 0.6, "features": {"name_exact": 0.0, "image_known": 0.0, "image_top": 0.5,
                                                 "llm_sum": -2.0},
     "contributions": {"name_exact": -0.5, "llm_sum": 0.9, "image_known": 0.2}},
]


def profile_keys() -> set[str]:
    """Every profile key a reader must never see: "section.key", and bare keys that are not plain words."""
    profile, keys = load_profile("offline"), set()
    for f in dataclasses.fields(profile):
        section = getattr(profile, f.name)
        if not dataclasses.is_dataclass(section):
            continue
        for g in dataclasses.fields(section):
            keys.add(f"{f.name}.{g.name}")
            if "_" in g.name:
                keys.add(g.name)
    return keys | {"flatness"}


def test_the_parts_add_up_to_the_lead_and_the_reasons_are_the_largest():
    why = explain(RANKED, "Japan")
    assert (why.answer, why.runner_up, why.gap) == ("Japan", "Tokyo", pytest.approx(1.1))
    assert sum(why.parts.values()) == pytest.approx(why.gap)
    assert [r.part for r in why.reasons] == ["name_exact"] and why.reasons[0].text == "the caption names it exactly"
    assert [r.part for r in why.against] == ["llm_sum", "image_known"]


def test_a_feature_the_answer_lacks_reads_the_right_way_round():
    why = explain(RANKED, "Japan")
    known = next(r for r in why.against if r.part == "image_known")  # for Tokyo: the scorer never saw Tokyo
    assert known.text == "the picture scorer has never seen a picture of it" and known.value == pytest.approx(-0.4)
    assert "Japan over Tokyo: the caption names it exactly (+2.00)." in why.sentence()
    assert "For Tokyo: the language model finds its name likelier" in why.sentence()


def test_the_picture_scorer_says_which_candidates_it_never_saw():
    why = explain(RANKED, "Japan")
    assert why.picture_unknown == ["Tokyo"] and "it has never seen Tokyo" in why.sentence()
    gated_off = [{**c, "contributions": {k: v for k, v in c["contributions"].items() if k != "image_known"}}
                 for c in RANKED]  # the fused score with a photo: the picture added nothing to any score
    assert explain(gated_off, "Japan").picture_unknown == []


def test_nil_and_a_single_candidate():
    assert explain(RANKED, None).sentence() == "Not in the knowledge base: the best candidate, Japan, is too unlikely."
    assert explain([], None).sentence().startswith("No candidate")
    assert explain(RANKED[:1], "Japan").sentence() == "Japan is the only candidate."


def test_every_part_has_phrases_and_a_label_and_no_phrase_names_a_profile_key():
    assert set(NAMES) <= set(PHRASES) and set(PHRASES) == set(LABELS)
    keys = profile_keys()
    assert {"image.scorer", "image.candidates", "length_penalty", "flatness"} <= keys
    for text in [p for pair in PHRASES.values() for p in pair] + list(LABELS.values()):
        assert not [k for k in keys if re.search(rf"\b{re.escape(k)}\b", text)], text


def shown_strings(pred: dict) -> list[str]:
    """What a reader sees of one answer: the why, the picture's line, the rendered Link/Review HTML and the CLI."""
    from demo import render
    from gemel.cli.main import format_prediction
    from gemel.types import Candidate, Prediction

    cli = format_prediction(Prediction(pred["entity"], [Candidate.from_dict(c) for c in pred["candidates"]], [],
                                       why=pred["why"], image=pred["image"]))
    html = render.meta_html(pred) + render.candidate_bars(pred["candidates"], pred["entity"], 9,
                                                          pred["why"].get("picture_unknown", ()))
    return [pred["why"]["sentence"], pred["image"], re.sub(r"<[^>]+>", " ", html), cli]


@pytest.mark.parametrize("ranked", [False, True])
def test_no_explanation_shown_names_a_profile_key(tiny_linker, tiny_dir, ranked):
    import numpy as np

    from gemel.rank.model import Ranker

    linker = tiny_linker
    if ranked:
        w = np.zeros(len(NAMES))
        w[NAMES.index("retrieval_sim")], w[NAMES.index("name_exact")] = 2.0, 1.0
        linker = linker.replace(ranker=Ranker(w, np.zeros(len(NAMES)), np.ones(len(NAMES))))
    pred = linker.link(str(tiny_dir / "img.png"), "Mercury is the planet closest to the Sun.", "Mercury").to_dict()
    assert pred["why"]["sentence"] and pred["why"]["answer"] == pred["entity"] and "image_scorer" in pred
    assert sum(pred["why"]["parts"].values()) == pytest.approx(pred["why"]["gap"], abs=1e-6)
    keys = profile_keys()
    for text in shown_strings(pred):
        assert not [k for k in keys if re.search(rf"\b{re.escape(k)}\b", text)], text
