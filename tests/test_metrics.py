"""Metrics: exact match, Wilson intervals, evaluate() on hand-computed cases and NIL edge cases."""

from __future__ import annotations

import json

import pytest

from gemel.data.metrics import EvalConfig, MetricsError, evaluate, exact_match, paired_comparison, wilson_interval
from gemel.types import Candidate, Example, Prediction


def _ex(entity: str | None, type_: str | None = None) -> Example:
    return Example(text="Jordan played well.", mention="Jordan", entity=entity,
                   meta={"type": type_} if type_ else {})


def _pred(entity: str | None, *names: str) -> Prediction:
    cands = [Candidate(name=n, score=-i, llm_logprob=-i, retrieval_sim=0.5) for i, n in enumerate(names)]
    return Prediction(entity=entity, candidates=cands, demonstrations=[])


@pytest.mark.parametrize("pred,gold,expected", [
    ("Michael Jordan", "Michael Jordan", True),
    (" Michael Jordan", "Michael Jordan", True),  # GEMEL strips the generated text
    ("Michael jordan", "Michael Jordan", False),  # case matters: KB titles are exact
    ("Michael Jordan", "Michael B. Jordan", False),
    (None, None, True),
    (None, "Michael Jordan", False),
    ("Michael Jordan", None, False),
])
def test_exact_match(pred: str | None, gold: str | None, expected: bool) -> None:
    assert exact_match(pred, gold) is expected


@pytest.mark.parametrize("x,n,low,high", [
    (8, 10, 0.4902, 0.9433),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (50, 100, 0.4038, 0.5962),
    (1, 1, 0.2065, 1.0),
])
def test_wilson_known_values(x: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(x, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_wilson_properties() -> None:
    for n in range(1, 41):
        for x in range(n + 1):
            lo, hi = wilson_interval(x, n)
            assert 0.0 <= lo <= x / n <= hi <= 1.0
            mirror = wilson_interval(n - x, n)
            assert mirror == pytest.approx((1 - hi, 1 - lo), abs=1e-12)  # symmetric in successes/failures
    widths = [hi - lo for lo, hi in (wilson_interval(5 * m, 10 * m) for m in (1, 10, 100))]
    assert widths[0] > widths[1] > widths[2], "more data, narrower interval"
    lo95, hi95 = wilson_interval(7, 20, 0.95)
    lo99, hi99 = wilson_interval(7, 20, 0.99)
    assert lo99 < lo95 and hi99 > hi95
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("x,n", [(-1, 5), (6, 5), (0, -1)])
def test_wilson_rejects(x: int, n: int) -> None:
    with pytest.raises(MetricsError, match="0 <= successes <= n"):
        wilson_interval(x, n)


GOLDS = [_ex("Michael Jordan", "Person"), _ex("Chicago Bulls", "Organization"), _ex(None, "Person"),
         _ex("Michael B. Jordan", "Person"), _ex(None)]
PREDS = [
    _pred("Michael Jordan", "Michael Jordan", "Michael B. Jordan", "Jordan"),  # right, rank 1
    _pred("Chicago", "Chicago", "Chicago Bulls", "Chicago Bears"),  # wrong, gold at rank 2
    _pred(None, "Jordan River"),  # right NIL
    _pred("Michael Jordan", "Michael Jordan", "Jordan", "Air Jordan"),  # wrong, gold absent
    _pred("Jordan"),  # wrong: predicted an entity for a NIL gold
]


def test_evaluate_hand_computed() -> None:
    report = evaluate(PREDS, GOLDS)
    assert report.n == 5 and report.overall.correct == 2 and report.accuracy == pytest.approx(0.4)
    assert report.ci == pytest.approx(wilson_interval(2, 5))
    assert report.recall_at_k == pytest.approx({1: 1 / 3, 3: 2 / 3})  # 3 linked golds; lists reach 3, not 5
    assert report.nil is not None
    assert (report.nil.gold_nil, report.nil.predicted_nil) == (2, 1)
    assert (report.nil.precision, report.nil.recall) == pytest.approx((1.0, 0.5))
    assert report.nil.f1 == pytest.approx(2 / 3)
    assert set(report.per_type) == {"Person", "Organization"}  # the untyped example is not counted
    person = report.per_type["Person"]
    assert (person.n, person.correct) == (3, 2) and person.accuracy == pytest.approx(2 / 3)
    assert report.per_type["Organization"].accuracy == 0.0


def test_dicts_and_objects_give_the_same_report() -> None:
    as_dicts = [p.to_dict() for p in PREDS]
    assert evaluate(as_dicts, GOLDS) == evaluate(PREDS, GOLDS)
    names_only = [{"entity": p.entity, "candidates": [c.name for c in p.candidates]} for p in PREDS]
    assert evaluate(names_only, GOLDS).to_dict() == evaluate(PREDS, GOLDS).to_dict()


def test_recall_ks_follow_the_candidate_lists() -> None:
    names = [f"E{i}" for i in range(20)]
    golds = [_ex("E0"), _ex("E4"), _ex("E12")]
    report = evaluate([_pred("E0", *names)] * 3, golds)
    assert report.recall_at_k == pytest.approx({1: 1 / 3, 3: 1 / 3, 5: 2 / 3, 10: 2 / 3, 16: 1.0})
    values = list(report.recall_at_k.values())
    assert values == sorted(values), "recall@k never decreases with k"
    custom = evaluate([_pred("E0", *names)] * 3, golds, EvalConfig(ks=(2, 13)))
    assert custom.recall_at_k == pytest.approx({2: 1 / 3, 13: 1.0})


@pytest.mark.parametrize("preds,golds,nil", [
    ([None, None], [_ex(None), _ex("A")], (0.5, 1.0, 2 / 3)),  # everything predicted NIL
    (["A", "A"], [_ex(None), _ex("A")], (0.0, 0.0, 0.0)),  # nothing predicted NIL: precision 0, not an error
    ([None, None], [_ex(None), _ex(None)], (1.0, 1.0, 1.0)),  # all gold NIL
])
def test_nil_edge_cases(preds: list, golds: list[Example], nil: tuple[float, float, float]) -> None:
    report = evaluate(preds, golds)
    assert report.nil is not None
    assert (report.nil.precision, report.nil.recall, report.nil.f1) == pytest.approx(nil)
    assert report.recall_at_k == {}  # no candidate lists


def test_no_gold_nil_no_types_no_candidates() -> None:
    report = evaluate(["A", "B"], [_ex("A"), _ex("C")])
    assert report.nil is None and report.per_type == {} and report.recall_at_k == {}
    assert report.accuracy == 0.5


def test_empty_evaluation() -> None:
    report = evaluate([], [])
    assert report.n == 0 and report.accuracy == 0.0 and report.ci == (0.0, 1.0)


def test_to_dict_is_json_and_table_lists_every_figure() -> None:
    report = evaluate(PREDS, GOLDS)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["n"] == 5 and d["correct"] == 2 and d["recall_at_k"] == {"1": 1 / 3, "3": 2 / 3}
    assert d["ci_low"] <= d["accuracy"] <= d["ci_high"] and d["nil"]["gold_nil"] == 2
    assert d["per_type"]["Person"]["n"] == 3
    table = report.table()
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "value", "95%", "CI"]
    for label in ("accuracy", "recall@1", "recall@3", "NIL precision", "NIL F1", "type Person (n=3)"):
        assert any(line.startswith(label) for line in lines), label
    assert "0.4000" in table and f"[{report.ci[0]:.4f}, {report.ci[1]:.4f}]" in table


@pytest.mark.parametrize("preds,golds,fragment", [
    (["A"], [_ex("A"), _ex("B")], "1 predictions for 2 gold examples"),
    ([42], [_ex("A")], "is not a Prediction"),
    ([{"label": "A"}], [_ex("A")], "is not a Prediction"),
    ([{"entity": "A", "candidates": [{"score": 1.0}]}], [_ex("A")], "has no name"),
])
def test_evaluate_rejects(preds: list, golds: list[Example], fragment: str) -> None:
    with pytest.raises(MetricsError, match=fragment):
        evaluate(preds, golds)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"ks": ()}, "ks=()"),
    ({"ks": (0, 1)}, "integers >= 1"),
    ({"confidence": 1.0}, "confidence=1.0"),
    ({"confidence": 0}, "confidence=0"),
])
def test_eval_config_rejects(kwargs: dict, fragment: str) -> None:
    with pytest.raises(MetricsError, match=fragment):
        EvalConfig(**kwargs)


@pytest.mark.parametrize("first,second,only_first,only_second,p", [
    ([True] * 5, [True] * 5, 0, 0, 1.0),  # never disagree: no evidence either way
    ([True, False], [False, True], 1, 1, 1.0),
    ([False] * 6, [True] * 6, 0, 6, 0.03125),  # 2 * 0.5 ** 6: six of six disagreements one way
    ([True, True, False, False, True], [False, False, False, True, True], 2, 1, 1.0),
    ([False] * 10 + [True], [True] * 10 + [False], 1, 10, 0.01171875),  # 2 * (1 + 11) / 2 ** 11
])
def test_paired_comparison_exact_mcnemar(first: list[bool], second: list[bool], only_first: int,
                                         only_second: int, p: float) -> None:
    got = paired_comparison(first, second)
    assert (got.n, got.only_first, got.only_second) == (len(first), only_first, only_second)
    assert got.p_value == pytest.approx(p)
    assert paired_comparison(second, first).p_value == pytest.approx(p)  # symmetric


def test_paired_comparison_matches_scipy_binomial_test() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for only_first, only_second in ((3, 9), (7, 2), (12, 12), (0, 4), (15, 40)):
        first = [True] * only_first + [False] * only_second + [True] * 5
        second = [False] * only_first + [True] * only_second + [True] * 5
        expected = scipy_stats.binomtest(only_first, only_first + only_second, 0.5).pvalue
        assert paired_comparison(first, second).p_value == pytest.approx(expected)


def test_paired_comparison_needs_one_answer_per_item() -> None:
    with pytest.raises(MetricsError, match="got 3 and 2 answers"):
        paired_comparison([True, False, True], [True, False])
