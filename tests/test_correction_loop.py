"""The correction loop (`annotations.loop`): one live demonstration per (input, annotator), the same rule
at start-up and live; re-decisions replace, undo withdraws only the undoer's label."""

from __future__ import annotations

import pytest

from annotations import Store
from annotations.loop import CorrectionLoop, demonstration_id

TEXT, MENTION = "Hopper was honoured by the Navy for her work on compilers.", "Hopper"
OTHER = "Hopper was honoured by the Navy for her work on code."  # another caption: the labels are retrieved


@pytest.fixture
def linker(tiny_linker):
    return tiny_linker.replace(pool=[])  # no seed examples: every live demonstration comes from the store


@pytest.fixture
def store(linker, tmp_path):
    with Store.open(tmp_path / "gemel.db", entity_exists=linker.kb.__contains__) as s:
        yield s


@pytest.fixture
def loop(store, linker):
    return CorrectionLoop(store, linker)


def labels(linker) -> list[tuple[str, str]]:
    return sorted((e.meta["annotator"], e.entity) for e in linker.labelled_pool.live() if e.text == TEXT)


def test_a_decision_becomes_a_demonstration_keyed_by_input_and_annotator(loop, linker):
    cid = loop.record("alice", "search", "Grace Hopper", text=TEXT, mention=MENTION)
    [ex] = linker.labelled_pool.live()
    assert ex.id == demonstration_id(loop.store.get(cid)["input_key"], "alice") and ex.source == "annotations"
    assert any(d.entity == "Grace Hopper" for d in linker.link(None, OTHER, MENTION).demonstrations)


def test_re_deciding_leaves_one_live_label(loop, linker):
    loop.record("alice", "search", "Edward Hopper", text=TEXT, mention=MENTION)
    loop.record("alice", "search", "Grace Hopper", text=TEXT, mention=MENTION)
    assert labels(linker) == [("alice", "Grace Hopper")]
    demos = linker.link(None, OTHER, MENTION).demonstrations
    assert [d.entity for d in demos if d.text == TEXT] == ["Grace Hopper"]


def test_undo_by_one_annotator_leaves_the_others_label(loop, linker):
    loop.record("alice", "search", "Grace Hopper", text=TEXT, mention=MENTION)
    loop.record("bob", "search", "Edward Hopper", text=TEXT, mention=MENTION)
    assert labels(linker) == [("alice", "Grace Hopper"), ("bob", "Edward Hopper")]
    undone, now = loop.undo_last("bob")
    assert undone["annotator"] == "bob" and undone["entity"] == "Edward Hopper" and now is None
    assert labels(linker) == [("alice", "Grace Hopper")]


def test_undo_restores_the_earlier_label(loop, linker):
    loop.record("alice", "search", "Edward Hopper", text=TEXT, mention=MENTION)
    loop.record("alice", "search", "Grace Hopper", text=TEXT, mention=MENTION)
    _, now = loop.undo_last("alice")
    assert now["entity"] == "Edward Hopper" and labels(linker) == [("alice", "Edward Hopper")]


@pytest.mark.parametrize("decision", ["nil", "more_context"])
def test_a_decision_without_entity_withdraws_the_label(loop, linker, decision):
    loop.record("alice", "search", "Grace Hopper", text=TEXT, mention=MENTION)
    loop.record("alice", decision, None, text=TEXT, mention=MENTION)
    assert labels(linker) == []


def test_agreeing_annotators_give_one_demonstration_that_survives_one_undo(loop, linker):
    loop.record("alice", "search", "Grace Hopper", text=TEXT, mention=MENTION)
    loop.record("bob", "search", "Grace Hopper", text=TEXT, mention=MENTION)
    demos = linker.link(None, OTHER, MENTION).demonstrations
    assert [d.entity for d in demos if d.text == TEXT] == ["Grace Hopper"]  # not twice
    loop.undo_last("alice")
    demos = linker.link(None, OTHER, MENTION).demonstrations
    assert [d.entity for d in demos if d.text == TEXT] == ["Grace Hopper"]  # bob's label is still there


def test_start_up_loads_what_live_use_built(loop, store, linker, tiny_linker):
    loop.record("alice", "search", "Edward Hopper", text=TEXT, mention=MENTION)
    loop.record("alice", "search", "Grace Hopper", text=TEXT, mention=MENTION)
    loop.record("bob", "search", "Edward Hopper", text=TEXT, mention=MENTION)
    loop.record("carol", "nil", None, text=TEXT, mention=MENTION)
    restarted = tiny_linker.replace(pool=[])
    assert CorrectionLoop(store, restarted).load() == 2
    assert labels(restarted) == labels(linker) == [("alice", "Grace Hopper"), ("bob", "Edward Hopper")]


def test_queue_decisions_go_through_the_same_rule(loop, store, linker):
    [item_id] = store.enqueue([{"text": TEXT, "mention": MENTION, "image": None, "prediction": None}])
    loop.record_item(item_id, "alice", "search", "Edward Hopper")
    loop.record_item(item_id, "alice", "search", "Grace Hopper")
    assert labels(linker) == [("alice", "Grace Hopper")]


def test_entities_the_kb_lacks_are_skipped_at_start_up(tmp_path, linker):
    with Store.open(tmp_path / "other.db") as store:  # no entity check: another KB's store
        store.record("alice", "search", "Atlantis", text=TEXT, mention=MENTION)
        store.record("alice", "search", "Moon", text="The Moon rose.", mention="Moon")
        assert CorrectionLoop(store, linker).load() == 1


# ---- exact memory ----------------------------------------------------------------------------------------
def test_a_decided_item_is_answered_with_the_decision(loop, linker, tiny_dir):
    image = tiny_dir / "img.png"
    model = linker.link(image, TEXT, MENTION)
    other = next(c.name for c in model.candidates if c.name != model.entity)
    loop.record("alice", "search", other, text=TEXT, mention=MENTION, image=str(image))
    again = linker.link(image.read_bytes(), TEXT, MENTION)  # the same picture, given as bytes: same content
    assert (again.entity, again.source, again.corrected_by) == (other, "correction", "alice")
    assert [c.name for c in again.candidates] == [c.name for c in model.candidates]  # the model's own ranking
    assert linker.link(None, TEXT, MENTION).source == "model"  # another item (no picture): not remembered
    loop.undo_last("alice")
    assert linker.link(image, TEXT, MENTION).source == "model"


def test_a_relinked_decided_item_shows_the_models_own_ranking_untouched_by_the_decision(loop, linker, tiny_dir):
    """The decision answers from memory; the candidates, their scores and features (a stored decision of this very
    caption and picture, its picture remembered) and the why are the model's, as if nothing had been saved."""
    import numpy as np

    from gemel.rank.features import NAMES
    from gemel.rank.model import Ranker

    w = np.zeros(len(NAMES))
    w[NAMES.index("llm_sum")] = w[NAMES.index("retrieval_sim")] = 1.0
    ranked = linker.replace(ranker=Ranker(w, np.zeros(len(NAMES)), np.ones(len(NAMES))))
    loop.linker = ranked
    image = tiny_dir / "img.png"
    model = ranked.link(image, TEXT, MENTION)
    other = model.candidates[-1].name
    loop.record("alice", "search", other, text=TEXT, mention=MENTION, image=str(image))
    again = ranked.link(image, TEXT, MENTION)
    assert (again.entity, again.source) == (other, "correction")
    assert [(c.name, c.features) for c in again.candidates] == [(c.name, c.features) for c in model.candidates]
    assert again.why == model.why and model.why["answer"] == model.candidates[0].name


def test_memory_answers_the_latest_decision_nil_included(loop, linker):
    loop.record("alice", "search", "Grace Hopper", text=TEXT, mention=MENTION)
    loop.record("bob", "nil", None, text=TEXT, mention=MENTION)
    pred = linker.link(None, TEXT, MENTION)
    assert (pred.entity, pred.source, pred.corrected_by) == (None, "correction", "bob")
    loop.undo_last("bob")
    assert linker.link(None, TEXT, MENTION).entity == "Grace Hopper"


def test_a_correction_is_not_copied_to_the_same_caption_with_another_picture(loop, linker, tiny_dir, tmp_path):
    from PIL import Image

    blue = tmp_path / "blue.png"
    Image.new("RGB", (40, 30), (20, 30, 200)).save(blue)
    before = linker.link(blue, TEXT, MENTION)
    loop.record("alice", "search", "Edward Hopper", text=TEXT, mention=MENTION, image=str(tiny_dir / "img.png"))
    after = linker.link(blue, TEXT, MENTION)
    assert after.source == "model" and all(d.text != TEXT for d in after.demonstrations)
    assert [c.name for c in after.candidates] == [c.name for c in before.candidates]
    kept = linker.replace(config=linker.config.replace(demos={"same_caption": "keep"}))
    assert any(d.text == TEXT for d in kept.link(blue, TEXT, MENTION).demonstrations)


def test_a_link_measures_the_stored_decisions_pictures_once(loop, linker, tiny_dir, monkeypatch):
    """The stored decisions' picture similarities serve the candidates and the features alike: one pass a link."""
    import gemel.linker

    image = str(tiny_dir / "img.png")
    loop.record("alice", "search", "Edward Hopper", text=OTHER, mention=MENTION, image=image)
    calls = []
    measure = gemel.linker.picture_similarities
    monkeypatch.setattr(gemel.linker, "picture_similarities", lambda *a, **k: calls.append(1) or measure(*a, **k))
    pred = linker.link(image, TEXT, MENTION)
    assert len(calls) == 1 and "Edward Hopper" in [c.name for c in pred.candidates]


def test_a_remembered_correction_survives_a_restart(loop, store, tiny_linker, tiny_dir):
    image = str(tiny_dir / "img.png")
    loop.record("alice", "search", "Edward Hopper", text=TEXT, mention=MENTION, image=image)
    restarted = tiny_linker.replace(pool=[])
    CorrectionLoop(store, restarted).load()
    pred = restarted.link(image, TEXT, MENTION)
    assert (pred.entity, pred.source) == ("Edward Hopper", "correction")


def _ranker():
    """A learned rule that decides on the LLM and retrieval alone (its decision weights are 0, as a ranker
    fitted on data without corrections has them)."""
    import numpy as np

    from gemel.rank.features import NAMES
    from gemel.rank.model import Ranker

    w = np.zeros(len(NAMES))
    w[NAMES.index("llm_sum")], w[NAMES.index("retrieval_sim")] = 1.0, 4.0
    return Ranker(w, np.zeros(len(NAMES)), np.ones(len(NAMES)))


@pytest.mark.parametrize("rule", ["the shipped ranker without the picture", "ranker"])
def test_a_same_caption_correction_of_another_picture_leaves_this_answer(tiny_linker, tmp_path, tiny_dir, rule):
    """A stored decision with this caption and another picture says nothing about this picture: it changes
    neither the answer nor the prompt (it is no demonstration), under either rule; one of this very picture
    answers it."""
    from PIL import Image

    linker = tiny_linker.replace(pool=[], ranker=_ranker() if rule == "ranker" else tiny_linker.ranker)
    mine, other = tiny_dir / "img.png", tmp_path / "other.png"
    Image.new("RGB", (40, 30), (20, 90, 200)).save(other)
    with Store.open(tmp_path / "g.db", entity_exists=linker.kb.__contains__) as store:
        loop = CorrectionLoop(store, linker)
        before = linker.link(mine, TEXT, MENTION)
        wrong = next(c.name for c in before.candidates if c.name != before.entity)
        loop.record("alice", "search", wrong, text=TEXT, mention=MENTION, image=str(other))
        after = linker.link(mine, TEXT, MENTION)
        assert (after.entity, after.source) == (before.entity, "model")
        assert not any(d.text == TEXT for d in after.demonstrations)
        if rule == "ranker":
            got = next(c for c in after.candidates if c.name == wrong).features
            assert "decision_caption" not in got  # a stored caption is no evidence about this picture
        loop.record("bob", "search", wrong, text=TEXT, mention=MENTION, image=str(mine))
        assert linker.link(mine, TEXT, MENTION).entity == wrong
