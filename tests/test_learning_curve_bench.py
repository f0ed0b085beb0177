"""The pure helpers of bench/learning_curve.py: folds, the re-training shares, pooling and the last line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

PATH = Path(__file__).resolve().parents[1] / "bench" / "learning_curve.py"
spec = importlib.util.spec_from_file_location("bench_learning_curve", PATH)
lc = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = lc  # dataclasses look their module up
spec.loader.exec_module(lc)


def test_folds_partition_the_items_and_never_hold_out_a_correction():
    items = [SimpleNamespace(id=f"x{i}") for i in range(7)]
    got = lc.folds(items, 2)
    assert len(got) == 2
    held = [x.id for h, _ in got for x in h]
    assert sorted(held) == sorted(x.id for x in items)  # every item held out exactly once
    for h, others in got:
        assert not {x.id for x in h} & {x.id for x in others}
        assert len(h) + len(others) == 7
    assert lc.folds(items, 2) == got  # a fixed order


def curve_of(points: dict[str, list[bool]], gate: list[bool], fold_of: list[int]) -> "lc.Curve":
    c = lc.Curve("test", gate=gate, fold_of={f"x{i}": f for i, f in enumerate(fold_of)})
    for point, right in points.items():
        c.mark(point, [f"x{i}" for i in range(len(right))], right)
    return c


def test_flips_count_items_right_without_corrections_and_wrong_later():
    c = curve_of({"n0": [True, True, False, True], "n10": [True, False, False, True],
                  "n50": [True, True, True, True], "refit50": [True, False, True, False]}, [True, False], [0, 0, 1, 1])
    assert c.flips() == 2  # x1 (at 10% and the refit) and x3 (the refit); x2 was wrong to begin with
    assert curve_of({"n0": [True, False], "n50": [True, True]}, [], [0, 0]).flips() == 0


def test_served_takes_the_refit_only_in_folds_whose_gate_accepted_it():
    c = curve_of({"n0": [True] * 4, "n50": [True, False, True, False], "refit50": [False, True, False, True]},
                 [True, False], [0, 0, 1, 1])
    assert c.served == {"x0": False, "x1": True, "x2": True, "x3": False}
    assert c.figures("rec_").split() == ["rec_n0=1.000", "rec_n10=n/a", "rec_n25=n/a", "rec_n50=0.500",
                                         "rec_refit50=0.500", "rec_served50=0.500", "rec_gate=1/2", "rec_flips=4"]


def test_a_split_not_run_prints_n_a():
    assert lc.Curve("recurring").figures() == ("n0=n/a n10=n/a n25=n/a n50=n/a refit50=n/a served50=n/a gate=0/0 "
                                               "flips=n/a")
