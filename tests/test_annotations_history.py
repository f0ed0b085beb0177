"""History, not overwrite: superseding decisions, `history`, `undo` and `undo_last`."""

from __future__ import annotations

import pytest
import sqlite_utils
from hypothesis import given, settings
from hypothesis import strategies as st

from annotations import NothingToUndoError, Store

TEXT = "Obama visits Paris."
CANDS = [{"name": "Paris", "score": -0.1}, {"name": "Paris, Texas", "score": -0.4}]


@pytest.fixture
def store():
    return Store(sqlite_utils.Database(memory=True))


def decide(store, annotator, decision, entity=None, text=TEXT, **kw):
    return store.record(annotator, decision, entity, text=text, mention="Paris", model_entity="Paris",
                        candidates=CANDS, **kw)


def test_a_new_decision_supersedes_the_old_one_which_stays(store):
    first = decide(store, "alice", "accept")
    second = decide(store, "alice", "candidate", "Paris, Texas")
    input_id = store.get(first)["input_id"]
    assert [(h["id"], h["status"]) for h in store.history(input_id)] == [(second, "current"), (first, "superseded")]
    assert store.current("alice", input_id)["entity"] == "Paris, Texas"
    assert [d["id"] for d in store.decisions()] == [second]


def test_annotators_do_not_supersede_each_other(store):
    a = decide(store, "alice", "accept")
    b = decide(store, "bob", "nil")
    input_id = store.get(a)["input_id"]
    assert store.current("alice", input_id)["id"] == a and store.current("bob", input_id)["id"] == b


def test_a_different_offset_or_text_is_a_different_input(store):
    a = store.record("alice", "nil", text="Paris or Paris", mention="Paris")
    b = store.record("alice", "nil", text="Paris or Paris", mention="Paris", start=9)
    c = store.record("alice", "nil", text="Paris or Paris!", mention="Paris")
    assert len({store.get(i)["input_id"] for i in (a, b, c)}) == 3


def test_undo_restores_the_previous_decision(store):
    first = decide(store, "alice", "accept")
    decide(store, "alice", "candidate", "Paris, Texas")
    input_id = store.get(first)["input_id"]
    restored = store.undo("alice", input_id)
    assert restored["id"] == first and restored["status"] == "current"
    assert [h["status"] for h in store.history(input_id)] == ["undone", "current"]


def test_undo_of_the_only_decision_leaves_nothing_then_refuses(store):
    first = decide(store, "alice", "accept")
    input_id = store.get(first)["input_id"]
    assert store.undo("alice", input_id) is None
    assert store.current("alice", input_id) is None
    with pytest.raises(NothingToUndoError, match="alice"):
        store.undo("alice", input_id)


def test_undo_only_touches_the_given_annotator(store):
    a = decide(store, "alice", "accept")
    b = decide(store, "bob", "nil")
    store.undo("alice", store.get(a)["input_id"])
    assert store.get(b)["status"] == "current"


def test_undo_last_takes_the_annotators_latest_decision(store):
    decide(store, "alice", "accept", text="Paris one.")
    second = decide(store, "alice", "nil", text="Paris two.")
    decide(store, "bob", "nil", text="Paris three.")
    undone = store.undo_last("alice")
    assert undone["id"] == second and undone["status"] == "undone" and undone["annotator"] == "alice"
    assert store.current("alice", undone["input_id"]) is None  # nothing earlier on that input
    assert store.undo_last("alice")["text"] == "Paris one."
    with pytest.raises(NothingToUndoError):
        store.undo_last("alice")
    assert [d["annotator"] for d in store.decisions()] == ["bob"]


def test_latest_is_by_time_so_an_older_import_does_not_win(store):
    new = decide(store, "alice", "nil", at="2024-05-02T00:00:00+00:00")
    old = decide(store, "alice", "accept", at="2024-05-01T00:00:00+00:00")
    assert store.get(new)["status"] == "current" and store.get(old)["status"] == "superseded"


def test_history_filters_and_limits(store):
    for i in range(3):
        decide(store, "alice", "nil", text=f"Paris {i}")
    decide(store, "bob", "nil")
    assert len(store.history(annotator="alice")) == 3
    assert len(store.history(annotator="alice", limit=2)) == 2
    assert len(store.history()) == 4


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["record", "undo"]), max_size=12))
def test_undo_is_a_stack_of_live_decisions(ops):
    """Property: after any sequence of records and undos, the current decision is the newest
    decision not undone, and undoing fails exactly when none is left."""
    store = Store(sqlite_utils.Database(memory=True))
    live: list[int] = []
    for n, op in enumerate(ops):
        if op == "record":
            live.append(store.record("alice", "search", f"E{n}", text=TEXT, mention="Paris"))
        elif live:
            store.undo_last("alice")
            live.pop()
        else:
            with pytest.raises(NothingToUndoError):
                store.undo_last("alice")
    current = [d["id"] for d in store.decisions()]
    assert current == live[-1:]
