"""Corrections as training data: majority label per input, incremental `examples_since`."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils

from annotations import InvalidDecisionError, Store

EXAMPLE_KEYS = {"text", "mention", "entity", "image", "id", "source", "meta"}


@pytest.fixture
def store(tmp_path):
    return Store(sqlite_utils.Database(memory=True), config={"images_dir": str(tmp_path / "images")})


def vote(store, who, entity, text="Obama in Paris", at=None, **kw):
    decision = "nil" if entity is None else "search"
    return store.record(who, decision, entity, text=text, mention="Paris", at=at, **kw)


def test_examples_are_example_shaped_and_point_to_images(store):
    from PIL import Image

    vote(store, "alice", "Paris", image=Image.new("RGB", (2, 2)))
    [ex] = list(store.training_examples())
    assert set(ex) == EXAMPLE_KEYS and ex["source"] == "annotations"
    assert (ex["text"], ex["mention"], ex["entity"]) == ("Obama in Paris", "Paris", "Paris")
    assert ex["image"].startswith("/") and Path(ex["image"]).read_bytes()[:4] == b"\x89PNG"
    assert len(ex["id"]) == 64 and ex["meta"]["decision"] == "search"


def test_example_dicts_build_gemel_examples():
    pytest.importorskip("gemel.types")
    from gemel.types import Example

    store = Store(sqlite_utils.Database(memory=True))
    vote(store, "alice", "Paris")
    ex = Example.from_dict(next(store.training_examples()))
    assert ex.entity == "Paris" and ex.source == "annotations" and ex.meta["votes"] == 1


def test_majority_wins(store):
    vote(store, "alice", "Paris", at="2024-01-03T00:00:00")
    vote(store, "bob", "Paris, Texas", at="2024-01-01T00:00:00")
    vote(store, "carol", "Paris, Texas", at="2024-01-02T00:00:00")
    [ex] = list(store.training_examples())
    assert ex["entity"] == "Paris, Texas" and ex["meta"]["votes"] == 2 and ex["meta"]["annotators"] == 3


def test_ties_go_to_the_most_recent_decision(store):
    vote(store, "alice", "Paris", at="2024-01-02T00:00:00")
    vote(store, "bob", "Paris, Texas", at="2024-01-01T00:00:00")
    assert next(store.training_examples())["entity"] == "Paris"


def test_only_current_decisions_count(store):
    vote(store, "alice", "Paris")
    vote(store, "alice", "Paris, Texas")  # supersedes
    assert [e["entity"] for e in store.training_examples()] == ["Paris, Texas"]
    store.undo_last("alice")
    assert [e["entity"] for e in store.training_examples()] == ["Paris"]


def test_include_filters_by_the_winning_decision(store):
    vote(store, "alice", None, text="Paris nil")
    store.record("alice", "more_context", text="Paris unclear", mention="Paris")
    store.record("alice", "accept", text="Paris accepted", mention="Paris", model_entity="Paris")
    assert [e["text"] for e in store.training_examples()] == ["Paris accepted"]
    everything = list(store.training_examples(include=("accept", "nil", "more_context")))
    assert [(e["text"], e["entity"]) for e in everything] == [
        ("Paris nil", None), ("Paris unclear", None), ("Paris accepted", "Paris")]


@pytest.mark.parametrize("include", ["accept", ("accept", "maybe")])
def test_bad_include_is_refused(store, include):
    with pytest.raises(InvalidDecisionError):
        list(store.training_examples(include=include))


def test_incremental_updates(store):
    assert store.last_row_id() == 0 and store.count_since(0) == 0
    vote(store, "alice", "Paris", text="Paris one")
    vote(store, "alice", "Paris", text="Paris two")
    mark = store.last_row_id()
    assert store.examples_since(mark) == [] and store.count_since(mark) == 0
    vote(store, "bob", "Paris, Texas", text="Paris two")  # ties with alice, newer -> label changes
    vote(store, "bob", "Paris", text="Paris three")
    assert store.count_since(mark) == 2
    new = store.examples_since(mark)
    assert [(e["text"], e["entity"]) for e in new] == [("Paris two", "Paris, Texas"), ("Paris three", "Paris")]
    old_ids = {e["id"] for e in store.training_examples()}
    assert {e["id"] for e in new} <= old_ids  # same ids as a full rebuild: replace by id
    assert all(e["meta"]["row_id"] > mark for e in new)
