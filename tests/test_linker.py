"""The Linker facade on tiny random models: the whole pipeline, its contracts and its error messages."""

from __future__ import annotations

import numpy as np
import pytest

from gemel.linker import InputError, Linker


def test_link_returns_kb_entity_candidates_and_demonstrations(tiny_linker, tiny_dir):
    text, mention = "Hopper painted Nighthawks in 1942.", "Hopper"
    pred = tiny_linker.link(tiny_dir / "img.png", text, mention)
    qp = tiny_linker.build_prompt(tiny_dir / "img.png", text, mention)
    retrieved = {tiny_linker.kb.entities[i].title for i in qp.candidate_ids}
    assert len(retrieved) == tiny_linker.config.decode.candidates
    assert {c.name for c in pred.candidates} == retrieved  # every retrieved candidate scored, none lost
    scores = [c.score for c in pred.candidates]
    assert scores == sorted(scores, reverse=True)
    assert pred.entity == pred.candidates[0].name
    assert len(pred.demonstrations) == tiny_linker.config.demos.n
    sims = [d.similarity for d in pred.demonstrations]
    assert sims == sorted(sims), "most similar demonstration must come last"
    assert pred.mapper == "untrained" and pred.profile == "tiny"


def test_candidate_scores_are_the_sum_of_their_parts(tiny_linker):
    pred = tiny_linker.link(None, "Mercury is close to the Sun.", "Mercury")
    assert sum(c.probability for c in pred.candidates) == pytest.approx(1.0)
    for c in pred.candidates:
        assert c.score == pytest.approx(sum(c.contributions.values()))
        assert c.llm_logprob < 0 and c.features["retrieval_sim"] == c.retrieval_sim
        assert -1.0 <= c.retrieval_sim <= 1.0


def test_text_only_and_image_inputs_agree_on_shape(tiny_linker, tiny_dir):
    from PIL import Image

    a = tiny_linker.link(None, "Apple sells phones.", "Apple")
    b = tiny_linker.link(Image.open(tiny_dir / "img.png"), "Apple sells phones.", "Apple")
    c = tiny_linker.link((tiny_dir / "img.png").read_bytes(), "Apple sells phones.", "Apple")
    assert [x.name for x in b.candidates] == [x.name for x in c.candidates]
    k = tiny_linker.config.mapper.prefix_length
    assert b.prompt_tokens - a.prompt_tokens == k  # the query's visual prefix, nothing else


@pytest.mark.parametrize("text,mention,message", [
    ("", "Hopper", "caption is empty"),
    ("   ", "Hopper", "caption is empty"),
    ("Hopper wrote code.", "", "mention is empty"),
    ("Hopper wrote code.", "hopper", "does not occur"),
    ("Hopper wrote code.", "Turing", "does not occur"),
])
def test_bad_queries_are_refused_with_a_clear_message(tiny_linker, text, mention, message):
    with pytest.raises(InputError, match=message):
        tiny_linker.link(None, text, mention)


def test_below_the_rankers_nil_threshold_the_answer_is_none_but_the_candidates_stay(tiny_linker):
    import copy

    ranker = copy.deepcopy(tiny_linker.ranker)
    ranker.nil_below = 1.01  # no probability reaches it
    pred = tiny_linker.replace(ranker=ranker).link(None, "Mercury is close to the Sun.", "Mercury")
    assert pred.entity is None
    assert pred.candidates


def test_exclude_keeps_an_example_out_of_its_own_prompt(tiny_linker):
    tiny_linker = tiny_linker.replace(config=tiny_linker.config.replace(demos={"same_caption": "keep"}))
    text, mention = "Hopper wrote the first compiler for a programming language.", "Hopper"
    pred = tiny_linker.link(None, text, mention, exclude=["seed-0"])
    assert all(d.text != text for d in pred.demonstrations)
    pred = tiny_linker.link(None, text, mention)
    assert any(d.text == text for d in pred.demonstrations)


def test_added_demonstration_is_retrieved_at_once(tiny_config):
    from gemel.types import Example

    linker = Linker.load(tiny_config.replace(demos={"same_caption": "keep"}))  # else dropped by caption
    text = "The Moon rose over the quiet harbour tonight."
    before = linker.link(None, text, "Moon")
    assert all(d.text != text for d in before.demonstrations)
    assert linker.add_demonstrations([Example(text=text, mention="Moon", entity="Moon", id="ann-1")]) == 1
    after = linker.link(None, text, "Moon")
    assert after.demonstrations[-1].text == text  # the most similar, next to the query
    with pytest.raises(InputError, match="not in the knowledge base"):
        linker.add_demonstrations([Example(text=text, mention="Moon", entity="Luna")])


@pytest.mark.parametrize("candidates", [0, 4])
def test_beam_mode_outputs_are_kb_entities(tiny_config, candidates):
    linker = Linker.load(tiny_config.replace(decode={"mode": "beam", "candidates": candidates}))
    text, mention = "Jordan flows into the Dead Sea.", "Jordan"
    pred = linker.link(None, text, mention)
    assert len(pred.candidates) == linker.config.decode.num_beams  # a broken trie loses beams
    if candidates:
        allowed = {linker.kb.entities[i].title for i in linker.build_prompt(None, text, mention).candidate_ids}
        assert {c.name for c in pred.candidates} <= allowed and len(allowed) >= candidates  # + the entries named "Jordan"


def test_prompt_is_cut_to_the_token_budget(tiny_config):
    linker = Linker.load(tiny_config.replace(llm={"max_prompt_tokens": 300}, demos={"n": 8}))
    pred = linker.link(None, "Mercury is close to the Sun.", "Mercury")
    assert pred.prompt_tokens <= 300
    assert len(pred.demonstrations) < 8


def test_removed_demonstration_is_no_longer_retrieved(tiny_config):
    from gemel.types import Example

    linker = Linker.load(tiny_config.replace(demos={"same_caption": "keep"}))  # else dropped by caption
    text = "The Moon rose over the quiet harbour tonight."
    linker.add_demonstrations([Example(text=text, mention="Moon", entity="Moon", id="ann-1")])
    assert linker.remove_demonstrations(["ann-1"]) == 1
    assert all(d.text != text for d in linker.link(None, text, "Moon").demonstrations)
    assert linker.add_demonstrations([Example(text=text, mention="Moon", entity="Moon", id="ann-1")]) == 1
    assert linker.link(None, text, "Moon").demonstrations[-1].text == text


def test_a_copied_pool_holds_the_same_vectors_and_retrieves_the_same(tiny_linker):
    pool = tiny_linker.labelled_pool
    copy = pool.with_examples()
    assert not hasattr(pool, "_vectors")  # the index is the pool's only copy of its vectors
    rows = range(len(pool.index))
    np.testing.assert_array_equal(copy.index.stored(rows), pool.index.stored(rows))
    query = tiny_linker.embedder.encode(["Mercury is close to the Sun."])
    assert [(r.example.id, r.similarity) for r in copy.retrieve(query, 4)] == \
        [(r.example.id, r.similarity) for r in pool.retrieve(query, 4)]


def test_kb_vectors_are_the_kb_index_s_own(tiny_linker):
    vectors = tiny_linker.kb_vectors
    rows = range(len(tiny_linker.kb))
    np.testing.assert_array_equal(vectors, tiny_linker.kb_index.stored(rows))  # unit vectors, held once
    assert not vectors.flags.writeable and not vectors.flags.owndata


def test_the_before_a_capitalised_name_brings_the_named_entry_among_the_candidates(tiny_config):
    linker = Linker.load(tiny_config.replace(decode={"candidates": 1}))
    text = "Apple sells phones in many countries; the Moon is not one of them."
    moon = linker.kb.index("Moon")
    described = linker.build_prompt(None, text.replace("Moon", "moon"), "the moon").candidate_ids
    assert moon not in described  # retrieval alone finds another entry; a description names none
    assert moon in linker.build_prompt(None, text, "the Moon").candidate_ids  # named: it joins
    pred = linker.link(None, text, "the Moon")
    assert next(c for c in pred.candidates if c.name == "Moon").features["name_exact"] == 1
