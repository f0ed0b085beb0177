"""The review queue: margin order, cursor per annotator, skip, progress, leaving the queue."""

from __future__ import annotations

import pytest
import sqlite_utils
from hypothesis import given, settings
from hypothesis import strategies as st

from annotations import InvalidDecisionError, NotFoundError, Store


def pred(*scores, entity="E0"):
    return {"entity": entity, "candidates": [{"name": f"E{i}", "score": s} for i, s in enumerate(scores)],
            "profile": "tiny", "mapper": "v1"}


def item(text, prediction=None, **kw):
    return {"text": f"{text} here", "mention": text, "prediction": prediction, **kw}


@pytest.fixture
def store():
    return Store(sqlite_utils.Database(memory=True))


@pytest.fixture
def queued(store):
    store.enqueue([
        item("confident", pred(0.0, -5.0)),
        item("unscored"),  # no prediction at all
        item("unsure", pred(-1.0, -1.1)),
        item("single", pred(-0.5)),  # one candidate: no margin
        item("middle", pred(-1.0, -2.0)),
    ])
    return store


def drain(store, annotator):
    seen = []
    while (it := store.next_item(annotator)) is not None:
        seen.append(it["mention"])
        store.record_item(it["item_id"], annotator, "nil")
    return seen


def test_order_is_smallest_margin_first_then_no_margin_then_no_prediction(queued):
    assert drain(queued, "alice") == ["unsure", "middle", "confident", "single", "unscored"]


def test_item_carries_its_prediction_and_margin(queued):
    it = queued.next_item("alice")
    assert it["mention"] == "unsure" and it["margin"] == pytest.approx(0.1)
    assert it["prediction"]["entity"] == "E0" and it["prediction"]["mapper"] == "v1"
    assert it["text"][it["mention_start"]:it["mention_end"]] == "unsure"


def test_under_the_learned_ranker_the_probability_margin_orders_the_queue(store):
    def ranked(probs, scores):
        return {"entity": "E0", "candidates": [{"name": f"E{i}", "score": s, "probability": p}
                                               for i, (p, s) in enumerate(zip(probs, scores))]}

    # the scores' margins order the other way round (0.01 against 5): the probabilities decide
    store.enqueue([item("sure", ranked((0.9, 0.05), (1.0, 0.99))), item("torn", ranked((0.5, 0.45), (5.0, 0.0)))])
    it = store.next_item("alice")
    assert it["mention"] == "torn" and it["margin"] == pytest.approx(0.05)


def test_an_item_keeps_what_review_shows_of_its_prediction(store):
    extra = {"why": {"sentence": "E0 over E1: the caption names it exactly (+1.00)."}, "image": "off: a photo",
             "demonstrations": [{"text": "t", "mention": "m", "entity": "E0", "image": None, "similarity": 0.5}]}
    store.enqueue([item("explained", {**pred(0.0, -1.0), **extra, "elsewhere": "not kept"}), item("bare", pred(0.0))])
    first = store.next_item("alice")
    assert {k: first["prediction"][k] for k in extra} == extra and "elsewhere" not in first["prediction"]
    store.skip("alice")
    assert set(store.next_item("alice")["prediction"]) == {"entity", "candidates", "profile", "mapper"}


def test_cursor_is_stable_until_the_annotator_acts(queued):
    first = queued.next_item("alice")
    queued.enqueue([item("urgent", pred(0.0, -0.001))])  # more uncertain than the current item
    assert queued.next_item("alice")["item_id"] == first["item_id"]
    assert queued.next_item("bob")["mention"] == "urgent"  # a fresh annotator gets the new order


def test_skip_moves_an_item_to_the_end_without_losing_it(queued):
    assert queued.skip("alice")["mention"] == "middle"  # skipped "unsure"
    assert queued.progress("alice") == {"total": 5, "done": 0, "skipped": 1, "left": 5}
    assert drain(queued, "alice") == ["middle", "confident", "single", "unscored", "unsure"]
    assert queued.progress("alice") == {"total": 5, "done": 5, "skipped": 0, "left": 0}


def test_skip_errors(store):
    with pytest.raises(NotFoundError, match="is empty"):
        store.skip("alice")
    with pytest.raises(NotFoundError):
        store.skip("alice", 999)


def test_an_item_leaves_a_queue_once_that_annotator_decided(queued):
    it = queued.next_item("alice")
    queued.record("alice", "search", "X", text=it["text"], mention=it["mention"])  # plain record works too
    assert queued.next_item("alice")["mention"] == "middle"
    assert queued.next_item("bob")["mention"] == "unsure"  # bob still has it
    assert queued.progress("alice")["done"] == 1 and queued.progress("bob")["done"] == 0


def test_undo_puts_the_item_back(queued):
    it = queued.next_item("alice")
    queued.record_item(it["item_id"], "alice", "accept")
    queued.undo_last("alice")
    assert queued.progress("alice")["done"] == 0
    assert queued.next_item("alice")["item_id"] == it["item_id"]


def test_record_item_uses_the_prediction(queued):
    it = queued.next_item("alice")
    row = queued.get(queued.record_item(it["item_id"], "alice", "candidate", "E1", comment="close call"))
    assert (row["entity"], row["model_entity"], row["mapper_version"], row["profile"]) == ("E1", "E0", "v1", "tiny")
    assert row["candidates"] == it["prediction"]["candidates"] and row["comment"] == "close call"
    with pytest.raises(InvalidDecisionError):
        queued.record_item(it["item_id"], "alice", "candidate", "not a candidate")
    with pytest.raises(NotFoundError):
        queued.record_item(999, "alice", "nil")


def test_enqueue_twice_keeps_one_item_and_a_new_prediction(store):
    [a] = store.enqueue([item("x")])
    [b] = store.enqueue([item("x", pred(0.0, -0.3))])
    [c] = store.enqueue([item("x")])  # no prediction: keeps the previous one
    assert a == b == c and store.progress("alice")["total"] == 1
    assert store.next_item("alice")["prediction"]["candidates"][1]["score"] == -0.3


def test_ids_above_the_watermark_are_the_new_items(store):
    assert store.last_queue_item_id() == 0
    first = store.enqueue([item("a"), item("b")])
    mark = store.last_queue_item_id()
    assert mark == max(first)
    again = store.enqueue([item("b"), item("c")])
    assert [i > mark for i in again] == [False, True]


def test_enqueue_validates_mentions(store):
    from annotations import MentionNotInTextError

    with pytest.raises(MentionNotInTextError):
        store.enqueue([{"text": "abc", "mention": "x"}])
    assert store.progress("alice")["total"] == 0


def test_enqueue_accepts_prediction_objects(store):
    class Pred:
        def to_dict(self):
            return pred(0.2, 0.1)

    store.enqueue([{"text": "a b", "mention": "b", "prediction": Pred()}])
    assert store.next_item("alice")["margin"] == pytest.approx(0.1)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.none(), st.lists(st.floats(-10, 10), min_size=0, max_size=4)), min_size=1, max_size=10))
def test_every_item_is_served_once_in_margin_order(score_lists):
    """Property: draining serves each item exactly once; margins never decrease along the way."""
    store = Store(sqlite_utils.Database(memory=True))
    store.enqueue([item(f"m{i}", None if s is None else pred(*s)) for i, s in enumerate(score_lists)])
    served = []
    while (it := store.next_item("alice")) is not None:
        served.append(it)
        store.record_item(it["item_id"], "alice", "more_context")
    assert sorted(x["mention"] for x in served) == sorted(f"m{i}" for i in range(len(score_lists)))
    margins = [x["margin"] for x in served if x["margin"] is not None]
    assert margins == sorted(margins)
    no_pred = [x["prediction"] is None for x in served]
    assert no_pred == sorted(no_pred)  # items without a prediction come last
