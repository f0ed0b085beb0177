"""The Linker's public seams: `replace` variants share the loaded models and never change the original;
`build_prompt` is the prompt `link` prefills; `rank` maps hypotheses to KB names through one token map."""

from __future__ import annotations

import logging

import pytest
import torch

from gemel.config import ProfileError
from gemel.generation.decoding import Hypothesis, prefill
from gemel.image.sense_prior import centred
from gemel.linker import Linker
from gemel.types import Example

TEXT, MENTION = "Hopper painted Nighthawks in 1942.", "Hopper"


def test_replace_shares_the_loaded_models(tiny_linker):
    variant = tiny_linker.replace(config=tiny_linker.config.replace(decode={"candidates": 3}))
    assert variant.lm is tiny_linker.lm and variant.embedder is tiny_linker.embedder
    assert variant.kb is tiny_linker.kb and variant.kb_index is tiny_linker.kb_index
    assert variant.mapper is tiny_linker.mapper and variant.labelled_pool is tiny_linker.labelled_pool
    assert len(variant.link(None, TEXT, MENTION).candidates) == 3
    assert len(tiny_linker.link(None, TEXT, MENTION).candidates) == tiny_linker.config.decode.candidates


def test_a_variant_never_changes_the_original(tiny_linker):
    config, pool, mapper = tiny_linker.config, tiny_linker.labelled_pool, tiny_linker.mapper
    before = len(pool)
    variant = tiny_linker.replace(config=config.replace(demos={"n": 1}), pool=[], mapper=None)
    variant.add_demonstrations([Example(text="The Moon rose.", mention="Moon", entity="Moon", id="v-1")])
    assert len(variant.labelled_pool) == 1 and variant.mapper is None and variant.config.demos.n == 1
    assert tiny_linker.config is config and tiny_linker.labelled_pool is pool and tiny_linker.mapper is mapper
    assert len(pool) == before


def test_replace_without_a_mapper_links_text_only(tiny_linker, tiny_dir):
    text_only = tiny_linker.replace(mapper=None)
    with_image = tiny_linker.link(tiny_dir / "img.png", TEXT, MENTION)
    without = text_only.link(tiny_dir / "img.png", TEXT, MENTION)
    assert without.mapper == "none"
    assert with_image.prompt_tokens - without.prompt_tokens >= tiny_linker.config.mapper.prefix_length


@pytest.mark.parametrize("section, change", [
    ("llm", {"source": "elsewhere"}), ("kb", {"name": "other"}), ("embedder", {"batch_size": 3}),
    ("vision", {"image_size": 64}),
])
def test_replace_refuses_to_change_a_loaded_component(tiny_linker, section, change):
    with pytest.raises(ProfileError, match=rf"cannot change the loaded component\(s\) \['{section}'\]"):
        tiny_linker.replace(config=tiny_linker.config.replace(**{section: change}))


def test_replace_applies_the_prompt_budget(tiny_linker):
    short = tiny_linker.replace(config=tiny_linker.config.replace(llm={"max_prompt_tokens": 300}))
    assert short.link(None, TEXT, MENTION).prompt_tokens <= 300
    assert tiny_linker.link(None, TEXT, MENTION).prompt_tokens > 300


def test_kb_demonstrations_follow_the_config_of_the_variant(tiny_linker):
    assert tiny_linker.kb_pool is not None
    no_kb = tiny_linker.replace(config=tiny_linker.config.replace(demos={"kb_demos": False}), pool=[])
    assert no_kb.kb_pool is None and no_kb.link(None, TEXT, MENTION).demonstrations == []


def test_build_prompt_is_the_prompt_link_prefills(tiny_linker, tiny_dir):
    image = tiny_dir / "img.png"
    with torch.no_grad():
        qp = tiny_linker.build_prompt(image, TEXT, MENTION)
        pre = prefill(tiny_linker.lm.model, qp.embeds)
        hyps = tiny_linker.decode(pre, qp.candidate_ids)
        senses = tiny_linker.sense_rows(hyps, MENTION)
        prior = centred(tiny_linker.sense_prior(qp, MENTION, senses, pre)) if len(senses) >= 2 else {}
    rows, x = tiny_linker.candidate_features(qp, hyps, MENTION, image, prior)
    ranked, _ = tiny_linker.rank_learned(rows, x, hyps)
    pred = tiny_linker.link(image, TEXT, MENTION)
    assert pred.prompt_tokens == qp.length
    assert [d.text for d in pred.demonstrations] == [r.example.text for r in qp.demonstrations]
    assert [c.name for c in ranked] == [c.name for c in pred.candidates]
    assert [c.score for c in ranked] == pytest.approx([c.score for c in pred.candidates], abs=1e-5)


def test_build_prompt_lets_gradients_reach_a_given_mapper(tiny_linker, tiny_dir):
    import copy

    mapper = copy.deepcopy(tiny_linker.mapper).requires_grad_(True)
    qp = tiny_linker.build_prompt(tiny_dir / "img.png", TEXT, MENTION, mapper=mapper)
    qp.embeds.sum().backward()
    assert mapper.linear.weight.grad is not None and mapper.linear.weight.grad.abs().sum() > 0
    assert tiny_linker.mapper.linear.weight.grad is None  # the linker's own mapper was not used


def test_given_candidates_restrict_the_answer(tiny_linker):
    pred = tiny_linker.link(None, "Jordan flows into the Dead Sea.", "Jordan",
                            candidates=["Jordan River", "Michael Jordan", "Atlantis"])
    assert sorted(c.name for c in pred.candidates) == ["Jordan River", "Michael Jordan"]


def test_rank_maps_tokens_to_names_and_logs_strays(tiny_linker, caplog):
    row = tiny_linker.kb.index("Moon")
    good = Hypothesis(tiny_linker.name_tokens(row), -1.0)
    stray = Hypothesis((5, 6, tiny_linker.lm.eos_id), -0.5)
    qp = tiny_linker.build_prompt(None, "The Moon rose.", "Moon")
    with caplog.at_level(logging.WARNING, logger="gemel.linker"):
        rows, x = tiny_linker.candidate_features(qp, [good, stray], "Moon", None, {})
        ranked, _ = tiny_linker.rank_learned(rows, x, [good, stray])
    assert [c.name for c in ranked] == ["Moon"]
    assert "no KB name" in caplog.text


def test_name_tokens_are_the_llm_answer_tokens(tiny_linker):
    for row, title in enumerate(tiny_linker.kb.titles):
        assert tiny_linker.name_tokens(row) == tiny_linker.lm.answer_tokens(title)
        assert tiny_linker.name_tokens(row)[-1] == tiny_linker.lm.eos_id


def test_an_over_long_caption_is_refused_before_tokenising(tiny_linker):
    from gemel.errors import InputError

    text = "Hopper " + "word " * 10_000
    with pytest.raises(InputError, match=r"caption is 50,007 characters, over the limit of 20,000"):
        tiny_linker.link(None, text, MENTION)


def test_linker_load_gives_a_fresh_linker(tiny_config):
    a, b = Linker.load(tiny_config), Linker.load(tiny_config)
    a.add_demonstrations([Example(text="The Moon rose.", mention="Moon", entity="Moon", id="a-1")])
    assert len(a.labelled_pool) == len(b.labelled_pool) + 1


def test_a_data_sets_mention_not_in_its_caption_is_prompted_as_given(tiny_linker):
    from gemel.errors import InputError

    text, mention = "Grace B. Hopper wrote the first compiler.", "Grace Hopper"
    with pytest.raises(InputError, match="does not occur"):
        tiny_linker.link(None, text, mention)
    qp = tiny_linker.build_prompt(None, text, mention, verbatim=False)
    assert "What does Grace Hopper mentioned" in qp.segments[-1].text
    assert tiny_linker.link(None, text, mention, verbatim=False).candidates


# ---- demonstrations by text and picture (demos.w_image) ----------------------------------------------------
def test_demonstrations_can_be_ranked_by_text_and_picture(tiny_linker, tiny_dir):
    query = tiny_linker.embedder.encode(["Apple released a new phone."])
    image = tiny_dir / "img.png"
    plain = tiny_linker.retrieve_demonstrations(query, image=image)
    assert plain == tiny_linker.retrieve_demonstrations(query)  # w_image = 0: the picture changes nothing
    heavy = tiny_linker.replace(config=tiny_linker.config.replace(demos={"w_image": 100.0}))
    ranked = heavy.retrieve_demonstrations(query, image=image)
    with_picture = [r for r in ranked if r.example.image]
    without = [r for r in ranked if not r.example.image]
    assert with_picture and all(r.similarity > 50 for r in with_picture)  # the same picture: cosine 1
    assert all(w.similarity < r.similarity for w in without for r in with_picture)
    assert ranked[-1].example.image  # most similar last: a demonstration with the query's own picture
    assert heavy.retrieve_demonstrations(query) == plain  # no query picture: text only, as before


def test_w_image_must_be_a_finite_weight():
    from gemel.config import DemonstrationConfig, ProfileError

    with pytest.raises(ProfileError, match=r"demos.w_image=-1.0 must be a finite number >= 0"):
        DemonstrationConfig(w_image=-1.0)
