"""The learned decision rule: features defined once, a conditional logit fitted in seconds, used by the linker."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from gemel.config import ProfileError
from gemel.rank.features import (
    FEATURES,
    NAMES,
    Evidence,
    PictureEvidence,
    candidate_features,
    memory_lead,
    name_features,
)
from gemel.rank.model import Ranker, RankerError
from gemel.training.ranker import (
    Group,
    RankerFitError,
    accuracy,
    cross_validate,
    fit,
    fit_nil,
    fit_with_cv,
    log_likelihood,
    out_of_fold,
    read_groups,
    write_groups,
)


# ---- features ------------------------------------------------------------------------------------------
def test_every_feature_has_a_meaning_and_a_unit():
    assert len(set(NAMES)) == len(NAMES) == len(FEATURES)
    assert all(f.meaning and len(f.meaning) < 120 and f.unit for f in FEATURES)


@pytest.mark.parametrize(("mention", "title", "aliases", "expected"), [
    ("Japan", "Japan", (), {"name_exact": 1, "name_base": 0, "name_head": 0, "has_qualifier": 0}),
    ("nut", "Nut (fruit)", (), {"name_exact": 0, "name_base": 1, "name_head": 0, "has_qualifier": 1}),
    ("mouse", "Computer mouse", (), {"name_exact": 0, "name_base": 0, "name_head": 1}),
    ("Congo", "Republic of the Congo", (), {"name_head": 0}),
    ("luna", "Moon", ("Luna",), {"name_exact": 1}),
    ("the country", "Japan", (), {"name_exact": 0, "name_base": 0, "name_head": 0, "name_overlap": 0}),
    ("Birds", "Bird", (), {"name_exact": 1, "name_overlap": 1}),  # a plural names its singular
    ("lemons", "Lemon (fruit)", (), {"name_exact": 0, "name_base": 1}),
    ("grass", "Poaceae", ("grasses",), {"name_exact": 1}),
    ("tower blocks", "Tower block", (), {"name_exact": 1, "name_overlap": 1}),
    ("the Moon", "Moon", (), {"name_exact": 1, "name_overlap": 1}),  # "the" before a capitalised name
    ("the Beatles", "The Beatles", (), {"name_exact": 1, "name_overlap": 1}),
    ("the country", "Country", (), {"name_exact": 0, "name_overlap": 0.5}),  # a description names nothing
])
def test_name_features(mention, title, aliases, expected):
    got = name_features(mention, title, aliases)
    assert {k: got[k] for k in expected} == pytest.approx(expected)


def test_candidate_features_hold_margins_the_picture_and_decisions():
    scores = np.array([0.0, 3.0, 1.0, -1.0])  # KB rows 0..3
    ev = Evidence("Jordan", ["Jordan", "Jordan River", "Michael Jordan"], [(), (), ()], [0, 1, 2],
                  llm_sum=[-2.0, -5.0, -3.0], tokens=[2, 3, 3], retrieval_sim=[0.5, 0.7, 0.2],
                  sense_prior={0: 1.5, 1: -1.5}, picture=PictureEvidence(scores, 0.75, frozenset({"Jordan"}),
                                                                            np.array([0.1, 0.7, 0.2, 0.0])),
                  memory={"Michael Jordan": 0.9, "Amman": 0.6}, decisions={"Jordan River": (0.8, 0.1)})
    x = candidate_features(ev)
    col = {n: i for i, n in enumerate(NAMES)}
    assert x.shape == (3, len(NAMES))
    assert x[:, col["llm_best"]].tolist() == [1.0, 0.0, 0.0]
    assert x[:, col["llm_mean"]].tolist() == pytest.approx([-1.0, -5 / 3, -1.0])
    assert x[:, col["retrieval_best"]].tolist() == [0.0, 1.0, 0.0]
    assert x[:, col["sense_prior"]].tolist() == [1.5, -1.5, 0.0]
    z = (scores - scores.mean()) / scores.std()
    assert x[:, col["image_drawing"]] == pytest.approx(z[:3] * 0.75)
    assert x[:, col["image_photo"]] == pytest.approx(z[:3] * 0.25)
    assert x[:, col["image_top"]].tolist() == pytest.approx([1 / 3, 1.0, 1 / 2])
    assert x[:, col["image_known"]].tolist() == [1.0, 0.0, 0.0]
    assert x[:, col["image_prob"]].tolist() == pytest.approx([0.1, 0.7, 0.2])
    assert x[:, col["memory_lead"]].tolist() == pytest.approx([0.0, 0.0, 0.3])  # Amman: labelled, no candidate
    assert x[:, col["memory_excess"]].tolist() == [0.0] * 3  # no reference level given: nothing to exceed
    assert x[:, col["name_exact"]].tolist() == [1.0, 0.0, 0.0] and x[2, col["name_head"]] == 1.0
    assert x[:, col["retrieval_named"]].tolist() == [0.5, 0.7, 0.2]  # "Jordan" names a candidate
    assert x[:, col["image_sense"]].tolist() == pytest.approx([1 / 3, 1.0, 0.0])  # the two senses only


def test_interactions_are_zero_where_the_caption_names_nothing_or_one_sense():
    ev = Evidence("the river", ["Jordan", "Jordan River"], [(), ()], [0, 1], llm_sum=[-2.0, -5.0], tokens=[2, 3],
                  retrieval_sim=[0.5, 0.7], picture=PictureEvidence(np.array([0.0, 3.0]), 0.5))
    x = candidate_features(ev)
    assert x[:, NAMES.index("retrieval_named")].tolist() == [0.0, 0.0]  # "the river" names no candidate
    assert x[:, NAMES.index("image_sense")].tolist() == [0.0, 0.0]  # no senses: image_top speaks alone
    assert x[:, NAMES.index("image_top")].tolist() == pytest.approx([0.5, 1.0])
    no_picture = candidate_features(replace(ev, mention="Jordan", sense_prior={0: 0.5, 1: -0.5}, picture=None))
    assert no_picture[:, NAMES.index("image_sense")].tolist() == [0.0, 0.0]
    assert no_picture[:, NAMES.index("retrieval_named")].tolist() == [0.5, 0.7]


# ---- fitting -------------------------------------------------------------------------------------------
def synthetic(n: int = 60, seed: int = 0, nil: int = 0) -> list[Group]:
    """Mentions whose gold candidate has the highest name_exact + 0.5 * retrieval_sim, the rest noise."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        c = int(rng.integers(2, 6))
        x = rng.normal(size=(c, len(NAMES)))
        x[:, NAMES.index("name_exact")] = 0.0
        x[:, NAMES.index("picture_flatness")] = 0.0  # one per mention: no picture here
        gold = int(rng.integers(c))
        x[gold, NAMES.index("name_exact")] = 1.0
        titles = [f"e{i}-{j}" for j in range(c)]
        out.append(Group(f"m{i}", titles, x, titles[gold]))
    for i in range(nil):  # NIL mentions: nobody has the exact name, the ranker is unsure
        x = rng.normal(size=(3, len(NAMES)))
        x[:, NAMES.index("name_exact")] = 0.0
        x[:, NAMES.index("picture_flatness")] = 0.0
        out.append(Group(f"nil{i}", [f"n{i}-{j}" for j in range(3)], x, None))
    return out


def test_fit_learns_the_deciding_feature_and_gives_probabilities():
    groups = synthetic()
    ranker = fit(groups, l2=0.1)
    p = ranker.probabilities(groups[0].x)
    assert p.sum() == pytest.approx(1.0) and accuracy(groups, [ranker.probabilities(g.x) for g in groups]) == 1.0
    assert int(np.argmax(np.abs(ranker.weights))) == NAMES.index("name_exact") and ranker.weights[
        NAMES.index("name_exact")] > 0
    contributions = ranker.contributions(groups[0].x)
    assert contributions.sum(1) == pytest.approx(ranker.scores(groups[0].x))


def test_drawings_and_photos_get_their_own_weights_mixed_by_flatness(tmp_path):
    """On the drawings the name decides and the LLM misleads, on the photos the other way round: one weight vector
    cannot learn both; the ranker fits one for each kind, mixes them by the picture's flatness and keeps both."""
    rng = np.random.default_rng(0)
    flat = NAMES.index("picture_flatness")

    def mention(i: int, flatness: float) -> Group:
        x = rng.normal(size=(4, len(NAMES))) * 0.1
        x[:, flat] = flatness
        deciding, misleading = ("name_exact", "llm_sum") if flatness == 1.0 else ("llm_sum", "name_exact")
        gold = i % 4
        x[gold, NAMES.index(deciding)] += 2.0
        x[(gold + 1) % 4, NAMES.index(misleading)] += 3.0
        return Group(f"{flatness}-{i}", list("abcd"), x, "abcd"[gold])

    groups = [mention(i, 1.0) for i in range(40)] + [mention(i, 0.0) for i in range(40)]
    ranker = fit(groups, l2=0.1)
    assert ranker.photo_weights is not None
    assert accuracy(groups, [ranker.probabilities(g.x) for g in groups]) == 1.0
    no_kind = [Group(g.key, g.titles, np.where(np.arange(len(NAMES)) == flat, 0.0, g.x), g.gold) for g in groups]
    single = fit(no_kind, l2=0.1)  # no picture has a flatness: one weight vector
    assert single.photo_weights is None and accuracy(no_kind, [single.probabilities(g.x) for g in no_kind]) < 0.8
    half = groups[0].x.copy()
    half[:, flat] = 0.5
    np.testing.assert_allclose(ranker.weights_for(half), (ranker.weights + ranker.photo_weights) / 2)
    again = Ranker.load(ranker.save(tmp_path / "r.json"))
    np.testing.assert_allclose(again.photo_weights, ranker.photo_weights)
    np.testing.assert_allclose(again.scores(groups[-1].x), ranker.scores(groups[-1].x))
    assert again.version == ranker.version != single.version


def test_cross_validation_scores_held_out_mentions_and_fits_nil():
    groups = synthetic(80, nil=20)
    cv = cross_validate(groups, k=5)
    assert cv.l2 in cv.by_l2 and len(cv.probabilities) == len(groups)
    assert cv.nil_below > 0 and cv.accuracy > accuracy(groups, cv.probabilities, 0.0)
    assert cv.accuracy >= 0.9


def test_the_penalty_is_the_one_whose_held_out_probabilities_are_best():
    groups = synthetic(60)
    cv = cross_validate(groups, k=5)
    assert set(cv.loglik_by_l2) == set(cv.by_l2) and cv.l2 == max(cv.loglik_by_l2, key=cv.loglik_by_l2.get)
    assert cv.loglik_by_l2[cv.l2] == pytest.approx(log_likelihood(groups, out_of_fold(groups, cv.l2)))
    assert all(v < 0 for v in cv.loglik_by_l2.values())
    # a fit that is sure and wrong is worse than one that is unsure and wrong, though both are as accurate
    sure, unsure = [np.array([0.999, 0.001])] * 2, [np.array([0.6, 0.4])] * 2
    pair = [Group(f"g{i}", ["a", "b"], np.zeros((2, len(NAMES))), gold) for i, gold in enumerate(["a", "b"])]
    assert accuracy(pair, sure) == accuracy(pair, unsure) and log_likelihood(pair, sure) < log_likelihood(pair, unsure)


def test_out_of_fold_never_sees_the_mention_it_scores():
    groups = synthetic(30)
    flipped = [Group(g.key, g.titles, g.x.copy(), g.gold) for g in groups]
    i = 7
    wrong = (flipped[i].target + 1) % len(flipped[i].titles)
    flipped[i].gold = flipped[i].titles[wrong]  # its own label changed: its out-of-fold probabilities do not move
    a, b = out_of_fold(groups, 0.1), out_of_fold(flipped, 0.1)
    np.testing.assert_allclose(a[i], b[i])


def test_nil_threshold_is_zero_without_nil_gold():
    groups = synthetic(40)
    assert fit_nil(groups, [fit(groups).probabilities(g.x) for g in groups]) == 0.0


def test_one_nil_mention_does_not_buy_a_nil_threshold():
    """A threshold that wins one NIL mention and loses nothing is within one standard error of never answering NIL:
    kept at 0; twenty such mentions buy it."""
    def unsure(gold: str | None) -> tuple[Group, np.ndarray]:
        return Group(str(gold), ["a", "b"], np.zeros((2, len(NAMES))), gold), np.array([0.55, 0.45])

    sure = [(Group(f"s{i}", ["a", "b"], np.zeros((2, len(NAMES))), "a"), np.array([0.9, 0.1])) for i in range(200)]
    for nils, kept in ((1, False), (20, True)):
        pairs = sure + [unsure(None) for _ in range(nils)]
        t = fit_nil([g for g, _ in pairs], [p for _, p in pairs])
        assert (t > 0) == kept and (not kept or 0.55 < t <= 0.9)


def test_nothing_to_learn_is_a_sentence():
    g = Group("a", ["x"], np.zeros((1, len(NAMES))), "y")
    with pytest.raises(RankerFitError, match="nothing to learn"):
        fit([g])
    with pytest.raises(RankerFitError, match="too few"):
        cross_validate([g])


def test_artifact_round_trip_describes_itself(tmp_path):
    groups = synthetic(40)
    data = write_groups(groups, tmp_path / "groups.jsonl")
    assert [g.key for g in read_groups(data)] == [g.key for g in groups]
    ranker = fit_with_cv(read_groups(data), files=[data])
    path = ranker.save(tmp_path / "r.json")
    d = json.loads(path.read_text())
    assert d["features"] == list(NAMES) and d["manifest"]["mentions"] == 40
    assert d["manifest"]["data"][0]["sha256"] and 0 <= d["manifest"]["cv"]["accuracy"] <= 1
    again = Ranker.load(path)
    np.testing.assert_allclose(again.scores(groups[3].x), ranker.scores(groups[3].x))


@pytest.mark.parametrize(("content", "message"), [
    ("{", "not readable JSON"),
    ('{"format": "other"}', "not a GEMEL Studio ranker"),
    ('{"format": "gemel-ranker/1", "features": ["llm_sum", "no_such_feature"]}', "does not compute"),
    ('{"format": "gemel-ranker/1", "features": ["llm_sum"], "weights": [1, 2], "mean": [0], "scale": [1]}',
     "1 features but 2 values"),
])
def test_a_bad_artifact_is_refused_with_a_sentence(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(RankerError, match=message):
        Ranker.load(path)
    with pytest.raises(RankerError, match="does not exist"):
        Ranker.load(tmp_path / "missing.json")


def test_memory_lead_is_the_nearest_labelled_pictures_margin():
    assert memory_lead({"A": 0.9, "B": 0.7, "C": 0.2}, "A") == pytest.approx(0.2)
    assert memory_lead({"A": 0.9, "B": 0.7}, "B") == 0.0  # another entity's picture is nearer
    assert memory_lead({"A": 0.9}, "A") == pytest.approx(0.9) and memory_lead({"A": 0.9}, "Z") == 0.0


def test_a_ranker_fitted_before_a_feature_existed_decides_as_it_did(tmp_path):
    ranker = fit_with_cv(synthetic(40))
    ranker.weights[NAMES.index("memory_lead")] = 2.0  # what a refit with the new feature could learn
    d = ranker.to_dict()
    keep = [i for i, n in enumerate(NAMES) if n != "memory_lead"]
    for k in ("weights", "mean", "scale"):
        d[k] = [d[k][i] for i in keep]
    d["features"] = [NAMES[i] for i in keep]
    (tmp_path / "old.json").write_text(json.dumps(d))
    old = Ranker.load(tmp_path / "old.json")
    assert old.weights[NAMES.index("memory_lead")] == 0.0
    x = synthetic(3, seed=5)[0].x.copy()
    x[:, NAMES.index("memory_lead")] = 7.0
    np.testing.assert_allclose(old.scores(x), ranker.scores(x) - ranker.contributions(x)[:, NAMES.index("memory_lead")])


# ---- the linker ----------------------------------------------------------------------------------------
def test_every_link_keeps_its_candidates_features(tiny_linker):
    pred = tiny_linker.link(None, "Mercury orbits the Sun.", "Mercury")
    assert pred.candidates and all(set(c.features) == set(NAMES) for c in pred.candidates)
    assert all(c.probability is not None for c in pred.candidates)  # the shipped text ranker decided
    assert tiny_linker.ranker.manifest["picture"] is False and tiny_linker.ranker.scorer is None
    again = type(pred.candidates[0]).from_dict(pred.candidates[0].to_dict())
    assert again.features == pred.candidates[0].features


def _one_feature_ranker(name: str, weight: float = 5.0, nil_below: float = 0.0) -> Ranker:
    w = np.zeros(len(NAMES))
    w[NAMES.index(name)] = weight
    return Ranker(w, np.zeros(len(NAMES)), np.ones(len(NAMES)), nil_below=nil_below)


def test_the_ranker_decides_when_the_linker_has_one(tiny_linker):
    by_retrieval = tiny_linker.replace(ranker=_one_feature_ranker("retrieval_sim", 50.0))
    pred = by_retrieval.link(None, "Mercury orbits the Sun.", "Mercury")
    sims = [c.features["retrieval_sim"] for c in pred.candidates]
    assert pred.entity == pred.candidates[0].name and sims == sorted(sims, reverse=True)
    assert sum(c.probability for c in pred.candidates) == pytest.approx(1.0)
    assert tiny_linker.ranker is not by_retrieval.ranker  # the variant's own


def test_below_nil_below_the_ranker_answers_nil(tiny_linker):
    unsure = tiny_linker.replace(ranker=_one_feature_ranker("retrieval_sim", 0.0, nil_below=0.99))
    pred = unsure.link(None, "Mercury orbits the Sun.", "Mercury")
    assert pred.entity is None and pred.candidates


def test_a_profile_names_its_ranker(tiny_linker, tmp_path):
    path = _one_feature_ranker("name_exact").save(tmp_path / "r.json")
    linker = tiny_linker.replace(config=tiny_linker.config.replace(rank={"model": str(path)}))
    assert linker.ranker is not None and linker.ranker.weights[NAMES.index("name_exact")] == 5.0
    from gemel.config import ProfileError

    with pytest.raises(ProfileError, match="decision_candidates"):
        tiny_linker.config.replace(rank={"decision_candidates": -1})


# ---- gemel fit-ranker ----------------------------------------------------------------------------------
@pytest.fixture
def tiny_profile_file(tiny_config, tmp_path):
    from gemel.config import profile_toml

    path = tmp_path / "tiny.toml"
    path.write_text(profile_toml(tiny_config))
    return path


def test_fit_ranker_cli_writes_an_artifact_a_profile_can_name(tiny_profile_file, tiny_dir, tmp_path, capsys):
    from gemel.cli.main import main

    out = tmp_path / "r.json"
    argv = ["fit-ranker", "--profile", str(tiny_profile_file), "--data", str(tiny_dir / "seed.jsonl"), "--out",
            str(out), "--folds", "2", "--quiet", "--cache", str(tmp_path / "cache")]
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "ranker written to" in said and "2-fold CV accuracy" in said
    d = json.loads(out.read_text())
    assert d["manifest"]["mentions"] > 2 and d["manifest"]["data"][0]["file"].endswith("seed.jsonl")
    assert list((tmp_path / "cache").glob("seed-*.jsonl"))  # a refit reads the gathered features
    assert main(argv) == 0 and Ranker.load(out).weights.shape == (len(NAMES),)
    kept = tmp_path / "r.groups.jsonl.gz"  # a refit from corrections starts from the data it was fitted on
    assert d["manifest"]["groups"] == kept.name and len(read_groups(kept)) == d["manifest"]["mentions"]
    elsewhere = tmp_path / "other.groups.jsonl.gz"  # features another fit gathered (e.g. with another scorer)
    write_groups(synthetic(6), elsewhere)
    assert main([*argv[:-1], str(tmp_path / "cache"), "--groups", str(elsewhere)]) == 0
    both = json.loads(out.read_text())["manifest"]
    assert both["mentions"] == d["manifest"]["mentions"] + 6 and both["data"][-1]["file"] == str(elsewhere)
    assert both["groups_from"] == [{"file": str(elsewhere), "scorer": "unknown"}]  # no artifact beside it


def test_fit_ranker_refits_a_ranker_fitted_on_features_this_code_no_longer_computes(tiny_profile_file, tiny_dir,
                                                                                     tmp_path, capsys):
    """A feature added or removed makes the profile's ranker unreadable (refused with a sentence when linking);
    `gemel fit-ranker` gathers with a ranker that decides nothing, so the refit the sentence asks for works."""
    from gemel.cli.main import main

    stale = tmp_path / "stale.json"
    d = Ranker.uniform().to_dict()
    d["features"] = [*d["features"], "memory_sim"]
    d["weights"], d["mean"], d["scale"] = ([0.0] * len(d["features"]),) * 3
    stale.write_text(json.dumps(d))
    from gemel.cli.eval import profile_with
    from gemel.linker import Linker

    profile = ["--profile", str(tiny_profile_file), "--set", f"rank.model={stale}"]
    with pytest.raises(RankerError, match="features this code does not compute.*refit it with `gemel fit-ranker`"):
        Linker.load(profile_with(str(tiny_profile_file), [f"rank.model={stale}"]))
    out = tmp_path / "r.json"
    assert main(["fit-ranker", *profile, "--data", str(tiny_dir / "seed.jsonl"), "--out", str(out), "--folds", "2",
                 "--quiet", "--cache", str(tmp_path / "cache")]) == 0
    assert Ranker.load(out).weights.shape == (len(NAMES),)


def test_a_refit_starts_from_the_groups_beside_the_profiles_ranker(tiny_linker, tmp_path):
    from gemel.training.ranker import groups_file, shipped_groups

    path = _one_feature_ranker("llm_sum").save(tmp_path / "r.json")
    named = tiny_linker.replace(config=tiny_linker.config.replace(rank={"model": str(path)}))
    assert shipped_groups(named) == []  # none kept beside it
    shipped = shipped_groups(tiny_linker)  # model = "": the text ranker's, the shipped ranker's features
    assert len(shipped) == tiny_linker.ranker.manifest["mentions"]
    write_groups(synthetic(6), groups_file(path))
    assert [g.key for g in shipped_groups(named)] == [g.key for g in synthetic(6)]


@pytest.mark.parametrize(("extra", "message"), [
    ([], "give labelled data"),
    (["--data", "missing.jsonl"], "does not exist"),
    (["--data", "x.jsonl", "--folds", "1"], "--folds 1"),
    (["--groups", "missing.groups.jsonl.gz"], "--groups file 'missing.groups.jsonl.gz' does not exist"),
    (["--groups", __file__], "is not a file of gathered features"),
])
def test_fit_ranker_cli_refuses_bad_input_with_a_sentence(tiny_profile_file, tmp_path, capsys, extra, message):
    from gemel.cli.main import main

    assert main(["fit-ranker", "--profile", str(tiny_profile_file), "--out", str(tmp_path / "r.json"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_the_reference_lists_every_feature():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "RANKER.md").read_text()
    assert all(f"| `{name}` |" in doc for name in NAMES)


def test_fit_ranker_learns_from_an_annotation_store(tiny_profile_file, tiny_dir, tmp_path, capsys):
    """Every decision saved in the store is a training example, linked with the store's other decisions loaded."""
    from annotations import Store
    from gemel.cli.main import main

    db = tmp_path / "g.db"
    seed = [json.loads(line) for line in (tiny_dir / "seed.jsonl").read_text().splitlines() if line.strip()]
    with Store.open(db) as store:
        for ex in seed:
            store.record("alice", "search", ex["entity"], text=ex["text"], mention=ex["mention"])
    out = tmp_path / "r.json"
    assert main(["fit-ranker", "--profile", str(tiny_profile_file), "--annotations", str(db), "--out", str(out),
                 "--folds", "2", "--quiet", "--cache", str(tmp_path / "cache")]) == 0
    m = json.loads(out.read_text())["manifest"]
    assert m["mentions"] == len(seed) and m["data"][0]["file"] == str(db)
    gathered = list((tmp_path / "cache").glob("g-*.jsonl"))
    assert main(["fit-ranker", "--profile", str(tiny_profile_file), "--annotations", str(db), "--out", str(out),
                 "--folds", "2", "--quiet", "--cache", str(tmp_path / "cache")]) == 0
    assert len(gathered) == 1 and list((tmp_path / "cache").glob("g-*.jsonl")) == gathered  # refit: read back
    again = json.loads(out.read_text())["manifest"]["data"][0]
    assert again == m["data"][0] and again["of"] == "its decisions"  # the store hashed by its decisions, not bytes
    with Store.open(db) as store:  # one more decision: another hash
        store.record("bob", "search", seed[0]["entity"], text="Another caption about it.", mention="Another")
    assert main(["fit-ranker", "--profile", str(tiny_profile_file), "--annotations", str(db), "--out", str(out),
                 "--folds", "2", "--quiet", "--cache", str(tmp_path / "cache")]) == 0
    assert json.loads(out.read_text())["manifest"]["data"][0]["sha256"] != again["sha256"]


def test_a_stores_decisions_are_linked_with_the_store_as_it_was_when_each_was_saved(tiny_linker):
    """As saved: each decision sees the decisions before it, never itself or a later one."""
    from gemel.training.ranker import collect
    from gemel.types import Example

    seen = []

    class Recording:
        def link(self, image, text, mention, exclude=(), verbatim=True):
            seen.append(list(exclude))
            return tiny_linker.replace(ranker=Ranker.uniform()).link(image, text, mention, exclude=exclude)

    decided = [Example(f"{w} is here.", w, None, None, f"d{i}") for i, w in enumerate(["Mercury", "Apple", "Cat"])]
    collect(Recording(), decided, progress=False, as_saved=True)
    assert seen == [["d0", "d1", "d2"], ["d1", "d2"], ["d2"]]
    seen.clear()
    collect(Recording(), decided, progress=False)
    assert seen == [["d0"], ["d1"], ["d2"]]


def test_a_variant_keeps_its_ranker_unless_its_config_names_another(tiny_linker, tmp_path):
    ranked = tiny_linker.replace(ranker=_one_feature_ranker("name_exact"))
    assert ranked.replace(config=ranked.config.replace(demos={"n": 2})).ranker is ranked.ranker
    with pytest.raises(ProfileError, match="every linker decides with a ranker"):
        ranked.replace(ranker=None)
    path = _one_feature_ranker("llm_sum").save(tmp_path / "r.json")
    named = ranked.replace(config=ranked.config.replace(rank={"model": str(path)}))
    assert named.ranker is not ranked.ranker and named.ranker.weights[NAMES.index("llm_sum")] == 5.0


# ---- the tree ensemble ---------------------------------------------------------------------------------
def interaction_groups(n: int = 120, seed: int = 0) -> list[Group]:
    """Mentions a linear rule cannot rank: the picture's first choice is right when the scorer knows it
    (image_known) and the language model's otherwise."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = np.zeros((3, len(NAMES)))
        x[:, NAMES.index("llm_sum")] = rng.normal(size=3)
        x[:, NAMES.index("image_top")] = rng.permutation([1.0, 0.5, 1 / 3])
        x[:, NAMES.index("image_known")] = rng.integers(0, 2, size=3)
        pic, llm = int(np.argmax(x[:, NAMES.index("image_top")])), int(np.argmax(x[:, NAMES.index("llm_sum")]))
        gold = pic if x[pic, NAMES.index("image_known")] else llm
        out.append(Group(f"m{i}", ["A", "B", "C"], x, ["A", "B", "C"][gold]))
    return out


def test_trees_learn_what_the_logit_cannot_and_explain_it_additively(tmp_path):
    from gemel.rank.model import load_ranker
    from gemel.rank.trees import TreeRanker
    from gemel.training.ranker import WITH_TREES, choose_by_cv

    groups = interaction_groups()
    cv = choose_by_cv(groups, kinds=WITH_TREES)
    assert cv.kind == "trees" and cv.by_kind["trees"] > cv.by_kind["logit"] + 0.1
    assert choose_by_cv(groups).kind == "logit" and fit_with_cv(groups).manifest["cv"]["kind"] == "logit"  # asked
    ranker = fit_with_cv(groups, kinds=WITH_TREES)
    assert isinstance(ranker, TreeRanker) and ranker.manifest["cv"]["kind"] == "trees"
    x = interaction_groups(1, seed=9)[0].x
    roots = ranker.base + sum(t.value[0] for t in ranker.trees)
    np.testing.assert_allclose(ranker.contributions(x).sum(1) + roots, ranker.scores(x))
    again = load_ranker(ranker.save(tmp_path / "trees.json"))
    np.testing.assert_allclose(again.probabilities(x), ranker.probabilities(x))
    assert again.version == ranker.version


def test_trees_score_as_scikit_learn_does():
    from sklearn.ensemble import GradientBoostingClassifier

    from gemel.rank.trees import views
    from gemel.training.ranker import TREE_PARAMS, fit_trees

    groups = interaction_groups(60)
    ranker = fit_trees(groups)
    v = np.concatenate([views(g.x) for g in groups])
    y = np.concatenate([np.arange(3) == g.target for g in groups]).astype(int)
    reference = GradientBoostingClassifier(random_state=0, **TREE_PARAMS).fit(v, y)
    got = np.concatenate([ranker.scores(g.x) for g in groups])
    np.testing.assert_allclose(got, reference.decision_function(v), atol=1e-6)
