"""`gemel calibrate`: the fusion weight and NIL threshold that maximise held-out accuracy, from one LLM pass."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemel.config import load_profile
from gemel.data.metrics import exact_match
from gemel.training.calibrate import (
    CalibrateConfig,
    CalibrationError,
    Scored,
    best_threshold,
    collect,
    profile_toml,
    rerank,
    search,
    write_profile,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def item(gold, llm: dict[str, float], sim: dict[str, float]) -> Scored:
    names = tuple(llm)
    return Scored(gold, names, np.array([llm[n] for n in names]), np.array([sim[n] for n in names]))


# A wins iff -2.25 + 0.9 w > -1 + 0.4 w  <=>  w > 2.5;   B wins iff -1 + 0.3 w > -3 + 0.8 w  <=>  w < 4
CASE = [item("A", {"A": -2.25, "B": -1.0}, {"A": 0.9, "B": 0.4}),
        item("B", {"A": -3.0, "B": -1.0}, {"A": 0.8, "B": 0.3})]


def accuracy(scored, w, t=-math.inf) -> int:
    return sum(exact_match(e, x.gold) for e, x in zip(rerank(scored, w, t), scored))


def test_picks_the_weight_that_maximises_accuracy():
    result = search(CASE, CalibrateConfig(weights=(0, 1, 2, 3, 4, 6, 8)))
    assert result.chosen.w_ret == 3 and result.chosen.correct == 2
    assert [r.correct for r in result.rows] == [1, 1, 1, 2, 1, 1, 1]
    assert not result.searched_threshold  # no gold NIL: the threshold is kept
    assert "<- chosen" in result.table().splitlines()[5]


def test_ties_pick_the_middle_of_the_plateau():
    result = search(CASE, CalibrateConfig(weights=(2.75, 3, 3.5, 10)))
    assert [r.correct for r in result.rows] == [2, 2, 2, 1] and result.chosen.w_ret == 3


def test_threshold_separates_nil_from_linked_mentions():
    scored = CASE + [item(None, {"A": -6.0, "B": -7.0}, {"A": 0.1, "B": 0.0}),
                     item(None, {"A": -5.0, "B": -8.0}, {"A": 0.2, "B": 0.1})]
    result = search(scored, CalibrateConfig(weights=(0, 3)))
    assert result.searched_threshold and result.chosen.w_ret == 3 and result.chosen.correct == 4
    t = result.chosen.nil_threshold
    assert -4.4 < t < -1.9  # between the NIL mentions' best scores and the linked ones'
    assert rerank(scored, 3, t) == ["A", "B", None, None]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C", None]),
                          st.lists(st.floats(-8, 0, allow_nan=False), min_size=3, max_size=3),
                          st.lists(st.floats(-1, 1, allow_nan=False), min_size=3, max_size=3)),
                min_size=1, max_size=12),
       st.sampled_from([0.0, 0.5, 2.0]))
def test_best_threshold_is_the_exact_optimum(rows, w):
    scored = [item(g, dict(zip("ABC", llm)), dict(zip("ABC", sim))) for g, llm, sim in rows]
    t, correct = best_threshold(scored, w)
    assert accuracy(scored, w, t) == correct  # the threshold really gives the count it claims
    bests = sorted({float((x.llm + w * x.sim).max()) for x in scored})
    probes = [-math.inf, math.inf] + bests + [b - 1e-9 for b in bests] + [b + 1e-9 for b in bests]
    assert correct == max(accuracy(scored, w, p) for p in probes)  # nothing beats it


def test_rerank_reproduces_the_linkers_own_choice(tiny_linker, tiny_dir):
    from gemel.data.evaluate import load_examples

    examples = load_examples(tiny_dir / "seed.jsonl")[:4]
    scored = collect(tiny_linker, examples, progress=False)
    d = tiny_linker.config.decode
    preds = [tiny_linker.link(e.image, e.text, e.mention, exclude=[e.id]).entity for e in examples]
    assert rerank(scored, d.w_ret, d.nil_threshold, d.w_llm) == preds
    assert all(len(x.names) == d.candidates for x in scored)


def test_calibrated_profile_is_a_loadable_copy(tmp_path):
    offline = load_profile("offline")
    out = write_profile(offline, tmp_path / "sub" / "cal.toml", w_ret=3.0, nil_threshold=-1.25, note="test run")
    text = out.read_text()
    assert text.startswith("# test run")
    cal = load_profile(out)
    assert (cal.decode.w_ret, cal.decode.nil_threshold, cal.decode.w_llm) == (3.0, -1.25, 1.0)
    assert Path(cal.demos.seed_pool).is_absolute() and Path(cal.demos.seed_pool).is_file()
    assert cal.kb.source == offline.kb.source and cal.llm == offline.llm and cal.vision == offline.vision
    assert cal.mapper == offline.mapper and cal.demos.n == offline.demos.n


def test_infinite_threshold_survives_the_round_trip(tiny_config, tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(profile_toml(tiny_config.replace(decode={"nil_threshold": -math.inf})))
    assert load_profile(path).decode.nil_threshold == -math.inf


def test_calibrate_cli_writes_the_profile(tiny_config, tiny_dir, tmp_path, capsys):
    import json

    from gemel.cli.main import main

    profile = tmp_path / "tiny.toml"
    profile.write_text(profile_toml(tiny_config))
    data = tmp_path / "dev.jsonl"
    rows = [json.loads(line) for line in (tiny_dir / "seed.jsonl").read_text().splitlines()][:3]
    for r in rows:
        r["image"] = str(tiny_dir / r["image"]) if r["image"] else None
    rows.append({"id": "nil-1", "text": "Zorblat ate the moonpie.", "mention": "Zorblat", "entity": None})
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "cal.toml"
    assert main(["calibrate", "--profile", str(profile), "--data", str(data), "--weights", "0,1,2", "--out",
                 str(out), "--report", str(tmp_path / "grid.json"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "<- chosen" in printed and "1 gold NIL" in printed
    cal = load_profile(out)
    grid = json.loads((tmp_path / "grid.json").read_text())
    assert cal.decode.w_ret == grid["chosen"]["w_ret"] and grid["searched_threshold"] is True
    assert len(grid["rows"]) == 3


def test_calibrate_cli_reads_an_annotation_store(tiny_config, tmp_path, capsys):
    from annotations import Store
    from gemel.cli.main import main

    db = tmp_path / "ann.db"
    store = Store.open(db)
    store.record("alice", "search", "Moon", text="The Moon rose over the harbour.", mention="Moon")
    store.record("alice", "nil", None, text="Zorblat ate the moonpie.", mention="Zorblat")
    store.close()
    profile = tmp_path / "tiny.toml"
    profile.write_text(profile_toml(tiny_config))
    assert main(["calibrate", "--profile", str(profile), "--annotations", str(db), "--weights", "0,1",
                 "--out", str(tmp_path / "cal.toml"), "--quiet"]) == 0
    assert "on 2 mentions (1 gold NIL)" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs,message", [
    ({"weights": ()}, "weights is empty"), ({"weights": (1.0, -1.0)}, "must be finite and >= 0"),
    ({"weights": (math.inf,)}, "must be finite"), ({"threshold": "maybe"}, "threshold='maybe'"),
])
def test_bad_calibrate_config_is_refused(kwargs, message):
    with pytest.raises(CalibrationError, match=message):
        CalibrateConfig(**kwargs)


def test_nothing_to_calibrate_on_is_refused():
    with pytest.raises(CalibrationError, match="no examples"):
        search([])


@pytest.mark.parametrize("argv,message", [(["--weights", "a,b"], "comma-separated"),
                                          (["--out", "cal.json"], "must end in .toml"),
                                          ([], "decides with the learned ranker"),
                                          (["--set", "rank.model=x.json"], "--set rank.model=\"\"")])
def test_calibrate_cli_refuses_bad_arguments(tiny_dir, capsys, argv, message):
    from gemel.cli.main import main

    base = ["calibrate", "--profile", "offline", "--data", str(tiny_dir / "seed.jsonl"), "--out", "x.toml"]
    assert main(base + argv) == 2
    assert message in capsys.readouterr().err
