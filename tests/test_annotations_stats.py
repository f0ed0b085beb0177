"""`Store.stats()`: counts per annotator and decision, per day, model accuracy per mapper version."""

from __future__ import annotations

import pytest
import sqlite_utils

from annotations import Store

CANDS = [{"name": "Paris", "score": -0.1}, {"name": "Paris, Texas", "score": -0.4}]


@pytest.fixture
def store():
    s = Store(sqlite_utils.Database(memory=True))
    rec = lambda who, decision, entity, text, mapper, day, model="Paris": s.record(
        who, decision, entity, text=text, mention="Paris", model_entity=model, candidates=CANDS,
        mapper_version=mapper, at=f"2024-05-{day:02d}T12:00:00+00:00")
    rec("alice", "accept", None, "Paris 1", "v1", 1)
    rec("alice", "candidate", "Paris, Texas", "Paris 2", "v1", 1)
    rec("alice", "nil", None, "Paris 3", "v1", 2)
    rec("bob", "accept", None, "Paris 1", "v2", 2)
    rec("bob", "more_context", None, "Paris 4", "v2", 3)  # not a judgment of the model
    rec("bob", "nil", None, "Paris 5", "v2", 3, model=None)  # model said NIL, and it was right
    rec("carol", "search", "Paris", "Paris 6", None, 3, model=None)  # no prediction recorded: ignored
    return s


def test_counts_per_annotator_and_decision(store):
    assert store.stats()["per_annotator"] == {
        "alice": {"accept": 1, "candidate": 1, "nil": 1},
        "bob": {"accept": 1, "more_context": 1, "nil": 1},
        "carol": {"search": 1},
    }


def test_corrections_per_day(store):
    assert store.stats()["per_day"] == [
        {"day": "2024-05-01", "corrections": 2}, {"day": "2024-05-02", "corrections": 2},
        {"day": "2024-05-03", "corrections": 3}]


def test_model_accuracy_per_mapper_version(store):
    acc = {m["mapper_version"]: m for m in store.stats()["model_accuracy"]}
    assert set(acc) == {"v1", "v2"}
    assert (acc["v1"]["decisions"], acc["v1"]["correct"]) == (3, 1) and acc["v1"]["accuracy"] == pytest.approx(1 / 3)
    assert (acc["v2"]["decisions"], acc["v2"]["correct"], acc["v2"]["accuracy"]) == (2, 2, 1.0)


def test_totals_and_agreement_summary(store):
    stats = store.stats()
    assert stats["totals"] == {"corrections": 7, "current_decisions": 7, "inputs": 6, "queue_items": 0}
    assert stats["agreement"]["items"] == 1 and stats["agreement"]["disagreements"] == 0


def test_superseded_and_undone_rows(store):
    store.record("alice", "search", "Paris", text="Paris 2", mention="Paris", model_entity="Paris",
                 mapper_version="v1", at="2024-05-04T00:00:00+00:00")  # supersedes the candidate decision
    stats = store.stats()
    assert stats["per_annotator"]["alice"] == {"accept": 1, "search": 1, "nil": 1}
    assert stats["totals"]["corrections"] == 8 and stats["per_day"][-1] == {"day": "2024-05-04", "corrections": 1}
    store.undo_last("alice")
    assert store.stats()["per_day"][-1]["day"] == "2024-05-03"  # undone rows are not counted


def test_empty_store():
    stats = Store(sqlite_utils.Database(memory=True)).stats()
    assert stats["per_annotator"] == {} and stats["per_day"] == [] and stats["model_accuracy"] == []
    assert stats["agreement"]["percent_agreement"] is None and stats["agreement"]["fleiss_kappa"] is None
