"""The pure helpers of bench/learning_curve.py: folds, the re-training shares, pooling and the last line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

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


def test_shared_entities_counts_the_held_out_cases_another_fold_can_answer():
    names = ["A", "B", "A", "C", None, None, "B", "D"]
    items = [SimpleNamespace(id=f"x{i}", entity=e) for i, e in enumerate(names)]
    got = lc.shared_entities(items, 2)
    for held, others in lc.folds(items, 2):
        other_entities = {o.entity for o in others}
        expected = [x for x in held if x.entity is not None and x.entity in other_entities]
        assert [x for x in got if x in held] == expected
    assert all(x.entity is not None for x in got)  # NIL is no entity to share
    assert {x.entity for x in got} <= {"A", "B"}  # C and D appear once


def test_retrain_shares():
    assert lc.retrain_shares("0.5") == (0.5,)
    assert lc.retrain_shares("0.5,0.25") == (0.25, 0.5)
    assert lc.retrain_shares("0.5", no_retrain=True) == ()
    for bad in ("0.3", "0", "half"):
        with pytest.raises(SystemExit):
            lc.retrain_shares(bad)


def test_served_is_the_new_mapper_only_when_the_gate_accepts():
    assert lc.Retrained(0.5, 10, old=7, new=9, accepted=True, reason="").served == 9
    assert lc.Retrained(0.5, 10, old=7, new=9, accepted=False, reason="").served == 7
    assert lc.Retrained(0.5, 10, old=7, new=5, accepted=False, reason="").served == 7
    assert lc.Retrained(0.5, 10, old=7, new=None, accepted=False, reason="too few").served == 7


def test_pooling_and_the_last_line():
    points = [lc.Retrained(0.5, 48, old=38, new=40, accepted=True, reason=""),
              lc.Retrained(0.5, 47, old=37, new=30, accepted=False, reason=""),
              lc.Retrained(0.25, 48, old=38, new=38, accepted=False, reason="")]
    pooled = lc.pool_retrained(points, 0.5)
    assert (pooled["n"], pooled["old"], pooled["new"], pooled["served"]) == (95, 75, 70, 77)
    assert (pooled["accepted"], pooled["folds"]) == (1, 2)
    assert lc.retrained_figures(pooled) == "retrained=0.737 served=0.811 gate=1/2"
    assert lc.retrained_figures(lc.pool_retrained(points, 0.25), "25") == "retrained25=0.792 served25=0.792 gate25=0/1"
    assert lc.retrained_figures(None) == "retrained=not-yet"
    assert lc.retrained_figures(lc.pool_retrained(points, 0.1)) == "retrained=not-yet"
    failed = lc.pool_retrained([*points, lc.Retrained(0.5, 10, 5, None, False, "too few")], 0.5)
    assert failed["new"] is None and lc.retrained_figures(failed).startswith("retrained=failed served=")
