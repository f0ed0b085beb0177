"""Agreement: hand-computed textbook values for Cohen's and Fleiss' kappa, and the store's report."""

from __future__ import annotations

import pytest
import sqlite_utils
from hypothesis import given, settings
from hypothesis import strategies as st

from annotations import Store, cohen_kappa, fleiss_kappa, fleiss_kappa_counts, percent_agreement
from annotations.agreement import MORE_CONTEXT_LABEL, NIL_LABEL, item_agreement, label_of

# Fleiss (1971) as worked on Wikipedia ("Fleiss' kappa", worked example): 10 subjects, 14 raters,
# 5 categories; P-bar = 0.378, P_e = 0.213, kappa = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def test_fleiss_textbook_example():
    assert fleiss_kappa_counts(FLEISS_TABLE) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_from_labels_matches_the_table():
    items = [[c for c, n in enumerate(row) for _ in range(n)] for row in FLEISS_TABLE]
    assert fleiss_kappa([[str(c) for c in it] for it in items]) == pytest.approx(fleiss_kappa_counts(FLEISS_TABLE))


def test_cohen_textbook_example():
    # Wikipedia "Cohen's kappa": 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> p_o 0.7, p_e 0.5, kappa 0.4
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_fleiss_with_unequal_rating_counts_by_hand():
    # P_i = 1/3, 0, 1 -> P-bar 4/9; p = 3/7, 4/7 -> P_e 25/49; kappa = -29/216
    assert fleiss_kappa([["A", "A", "B"], ["A", "B"], ["B", "B"]]) == pytest.approx(-29 / 216)


def test_items_with_one_rating_are_ignored():
    assert fleiss_kappa([["A", "A"], ["B", "B"], ["C"]]) == fleiss_kappa([["A", "A"], ["B", "B"]]) == 1.0


@pytest.mark.parametrize("items", [[], [["A"]], [["A", "A"], ["A", "A"]]])
def test_undefined_kappa_is_none(items):
    assert fleiss_kappa(items) is None


def test_cohen_undefined_cases():
    assert cohen_kappa([]) is None
    assert cohen_kappa([("a", "a"), ("a", "a")]) is None


def test_percent_agreement_is_the_share_of_agreeing_pairs():
    assert item_agreement(["A", "A", "B"]) == pytest.approx(1 / 3)
    assert percent_agreement([["A", "A"], ["A", "B"], ["C"]]) == pytest.approx(50.0)
    assert percent_agreement([]) is None
    with pytest.raises(ValueError):
        item_agreement(["A"])


def test_labels():
    assert label_of("candidate", "Paris") == label_of("search", "Paris") == "Paris"
    assert (label_of("nil", None), label_of("more_context", None)) == (NIL_LABEL, MORE_CONTEXT_LABEL)


labels_strategy = st.lists(st.lists(st.sampled_from("ABCD"), min_size=2, max_size=5), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(labels_strategy, st.permutations("ABCD"), st.randoms(use_true_random=False))
def test_fleiss_properties(items, perm, rnd):
    """kappa <= 1, and it does not depend on category names, item order or rating order."""
    k = fleiss_kappa(items)
    rename = dict(zip("ABCD", perm))
    shuffled = [rnd.sample(it, len(it)) for it in rnd.sample(items, len(items))]
    renamed = fleiss_kappa([[rename[x] for x in it] for it in shuffled])
    assert (k is None) == (renamed is None)
    if k is not None:
        assert k <= 1 + 1e-12 and k == pytest.approx(renamed)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from("ABC"), min_size=2, max_size=20))
def test_perfect_agreement_gives_kappa_one(labels):
    items = [[x, x, x] for x in labels]
    expected = 1.0 if len(set(labels)) > 1 else None
    assert fleiss_kappa(items) == expected
    assert cohen_kappa([(x, x) for x in labels]) == expected


# ---- the store's report -----------------------------------------------------------------------


@pytest.fixture
def store():
    s = Store(sqlite_utils.Database(memory=True))
    votes = {  # text -> annotator -> entity (None = nil)
        "Paris one": {"alice": "Paris", "bob": "Paris"},
        "Paris two": {"alice": "Paris", "bob": "Paris, Texas"},
        "Paris three": {"alice": None, "bob": None},
        "Paris four": {"alice": "Paris"},  # one annotator: not part of agreement
    }
    for text, by in votes.items():
        for who, entity in by.items():
            s.record(who, "nil" if entity is None else "search", entity, text=text, mention="Paris")
    return s


def test_store_agreement_for_two_annotators(store):
    a = store.agreement()
    assert a["items"] == 3 and a["annotators"] == ["alice", "bob"]
    assert a["percent_agreement"] == pytest.approx(200 / 3)
    # pairs: (Paris, Paris), (Paris, Texas), (NIL, NIL): p_o = 2/3; p_e = (2*1 + 1*1)/9 = 1/3 -> 0.5
    assert a["cohen_kappa"] == pytest.approx(0.5)
    assert a["pairwise"][0]["kappa"] == pytest.approx(0.5)
    assert [d["decisions"][0]["text"] for d in a["disagreements"]] == ["Paris two"]
    assert {d["entity"] for d in a["disagreements"][0]["decisions"]} == {"Paris", "Paris, Texas"}


def test_store_agreement_uses_current_decisions_only(store):
    input_id = store.find_input("Paris two", "Paris")
    store.record("bob", "search", "Paris", text="Paris two", mention="Paris")  # bob changes his mind
    a = store.agreement()
    assert a["disagreements"] == [] and a["percent_agreement"] == 100.0
    store.undo("bob", input_id)
    assert len(store.agreement()["disagreements"]) == 1


def test_three_annotators_give_fleiss_and_pairwise_not_a_single_cohen(store):
    store.record("carol", "search", "Paris", text="Paris one", mention="Paris")
    a = store.agreement()
    assert a["cohen_kappa"] is None and len(a["pairwise"]) == 3
    assert a["fleiss_kappa"] is not None
