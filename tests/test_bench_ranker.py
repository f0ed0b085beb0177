"""bench/ranker.py's comparison rows: per-item answers of the rule and the ranker, the ranker's interval, and the
paired counts that say whether a difference between the two could be chance."""

from __future__ import annotations

import pytest

from bench.ranker import Row, group_row, pair, table
from gemel.types import Example


def _examples() -> list[Example]:
    golds = ["Paris", "Rome", "Oslo", "Bern", None]
    return [Example(f"caption {i}", "it", g, None, f"x{i}", "test", {"group": f"g{i // 2}"})
            for i, g in enumerate(golds)]


def test_pair_counts_where_the_two_rules_disagree():
    ex = _examples()
    rule = ["Paris", "Milan", "Oslo", "Bern", "Lyon"]  # right on x0, x2, x3
    ranker = ["Paris", "Rome", "Bergen", None, None]  # right on x0, x1, x4 (NIL)
    row = pair(rule, ranker, ex, range(5))
    assert row.ids == ["x0", "x1", "x2", "x3", "x4"]
    assert (row.rule_accuracy, row.ranker_score.accuracy) == (0.6, 0.6)
    assert (row.paired.only_first, row.paired.only_second) == (2, 2)  # x2, x3 for the rule; x1, x4 for the ranker
    assert row.paired.p_value == pytest.approx(1.0)
    sub = pair(rule, ranker, ex, [1, 2])
    assert (sub.n, sub.ids, sub.rule, sub.ranker) == (2, ["x1", "x2"], [False, True], [True, False])


def test_group_row_counts_a_group_only_when_every_picture_is_right():
    ex = _examples()  # groups g0 = x0, x1; g1 = x2, x3; g2 = x4
    ranker = ["Paris", "Rome", "Oslo", "Oslo", None]
    row = group_row(None, ranker, ex)
    assert (row.ids, row.ranker, row.rule, row.paired) == (["g0", "g1", "g2"], [True, False, True], None, None)
    assert row.rule_accuracy != row.rule_accuracy  # nan: no record of the rule


def test_table_and_report_show_the_interval_and_the_disagreements():
    row = Row(["a", "b", "c", "d"], [True, True, True, False], [False, False, False, False])
    text = table({"test": row, "groups": Row(["g"], [True], None)}, None, None)
    assert "| test | 4 | 0.000 | 0.750 | 0.301-0.954 | 0 | 3 | 0.25 |" in text
    assert "| groups | 1 | n/a | 1.000 | 0.207-1.000 | n/a | n/a | n/a |" in text
    saved = row.to_dict()
    assert saved["paired"] == {"n": 4, "only_first": 0, "only_second": 3, "p_value": 0.25}
    assert saved["items"]["ranker_right"] == [True, True, True, False]
