"""Re-training from corrections only ever helps: bad input gets one sentence, the serving linker is never
changed by the job (crash, rejection), an accepted candidate is swapped in and later predictions carry its
version. Tiny random models; one real end-to-end run, the other job tests force the verdict."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr
import pytest
import torch

from demo.config import AppConfig
from demo.handlers import Studio
from demo.retrain_job import RetrainJob
from gemel.training import retrain as retrain_mod
from gemel.training.retrain import (
    RetrainConfig,
    RetrainError,
    Scores,
    check_decisions,
    decide,
    retrain,
    split,
)
from gemel.types import Example

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = RetrainConfig(epochs=1, lr=3e-3, grad_accum=2)

DECISIONS = [  # (caption, mention, entity) of the tiny KB; None = "not in the KB"
    ("Hopper wrote the first compiler for the Navy.", "Hopper", "Grace Hopper"),
    ("Hopper painted a lonely diner at night.", "Hopper", "Edward Hopper"),
    ("Apple sold more phones this year.", "Apple", "Apple Inc."),
    ("Mercury is the planet closest to the Sun.", "Mercury", "Mercury (planet)"),
    ("The cat slept on the warm mat.", "cat", "Cat"),
    ("Coffee kept the team awake.", "Coffee", "Coffee"),
]


@pytest.fixture
def linker(tiny_linker):
    """The session's tiny linker with a private pool (its mapper is shared: the job must never change it)."""
    return tiny_linker.replace(pool=tiny_linker.labelled_pool.with_examples())


@pytest.fixture
def photo(tiny_dir) -> str:
    return str(Path(tiny_dir) / "img.png")


@pytest.fixture
def test_split(photo) -> list[Example]:
    return [Example("Hopper wrote a compiler.", "Hopper", "Grace Hopper", photo, "t-1"),
            Example("Jordan scored again.", "Jordan", "Michael Jordan", None, "t-2")]


def examples(photo: str, rows=DECISIONS) -> list[Example]:
    return [Example(t, m, e, photo if i % 2 == 0 else None, f"in-{i}", "annotations")
            for i, (t, m, e) in enumerate(rows)]


def state_of(mapper) -> dict:
    return {k: v.detach().clone() for k, v in mapper.state_dict().items()}


def same(mapper, state: dict) -> bool:
    return all(torch.equal(v, mapper.state_dict()[k]) for k, v in state.items())


def one_sentence(text: str) -> bool:
    return ". " not in text.strip().rstrip(".") and "\n" not in text


# ---------------------------------------------------------------------------------------------- library
@pytest.mark.parametrize("rows, words", [
    ([], "no decisions"),
    (DECISIONS[:1], "only 1 decision"),
    ([("The cat slept.", "cat", None), ("Coffee again.", "Coffee", None)], "'not in the KB'"),
])
def test_bad_decisions_get_one_sentence(linker, photo, rows, words, tmp_path):
    with pytest.raises(RetrainError, match=words) as info:
        retrain(linker, examples(photo, rows), tmp_path, FAST)
    assert one_sentence(str(info.value))


def test_a_text_only_linker_has_nothing_to_retrain(linker, photo):
    with pytest.raises(RetrainError, match="no vision encoder") as info:
        check_decisions(linker.replace(mapper=None), examples(photo), FAST)
    assert one_sentence(str(info.value))


@pytest.mark.parametrize("bad", [{"held_out_share": 0.0}, {"held_out_share": 1.0}, {"min_decisions": 1},
                                 {"epochs": 0}, {"test_limit": 0}])
def test_config_is_checked(bad):
    with pytest.raises(RetrainError):
        RetrainConfig(**bad)


def test_split_is_deterministic_by_input(photo):
    data = examples(photo) + [Example("The cat slept.", "cat", None, None, "nil-1")]
    train, held = split(data, FAST)
    again = split(list(reversed(data)), FAST)
    assert [e.id for e in train] == [e.id for e in again[0]] and [e.id for e in held] == [e.id for e in again[1]]
    assert train and held and not {e.id for e in train} & {e.id for e in held}
    assert "nil-1" in {e.id for e in held} and all(e.entity for e in train)


@pytest.mark.parametrize("before, after, accepted", [
    ((0.5, 0.8), (0.6, 0.8), True),
    ((0.5, 0.8), (0.5, 0.9), False),  # held-out not strictly better
    ((0.5, 0.8), (0.6, 0.7), False),  # test worse
    ((0.5, None), (0.6, None), True),  # no test split: held-out alone
    ((0.5, 0.8), (0.4, 0.9), False),
])
def test_the_acceptance_rule(before, after, accepted):
    ok, reason = decide(Scores(*before), Scores(*after))
    assert ok is accepted and one_sentence(reason)


def test_a_real_tiny_run_never_changes_the_serving_linker(linker, photo, test_split, tmp_path):
    before = state_of(linker.mapper)
    version = linker.mapper_version
    seen: list[tuple[float, str]] = []
    result = retrain(linker, examples(photo), tmp_path / "run", FAST, test_examples=test_split,
                     progress_cb=lambda f, m: seen.append((f, m)))
    assert same(linker.mapper, before) and linker.mapper_version == version
    assert result.candidate.mapper is not linker.mapper and not same(result.candidate.mapper, before)
    assert result.version.startswith("mapper-") and result.previous == {"mapper": version}
    assert result.checkpoints["mapper"].is_file()
    assert (result.n_train, result.n_held_out, result.n_test) == (4, 2, 2)
    assert (result.accepted, result.reason) == decide(result.before, result.after)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert any("training the mapper" in m for _, m in seen)
    if not result.accepted:
        with pytest.raises(RetrainError, match="not accepted"):
            result.adopt(linker)


# ---------------------------------------------------------------------------------------------- the ranker
def uniformish_ranker():
    """A ranker that decides by retrieval alone: what a refit from decisions must move."""
    import numpy as np

    from gemel.rank.features import NAMES
    from gemel.rank.model import Ranker

    w = np.zeros(len(NAMES))
    w[NAMES.index("retrieval_sim")] = 1.0
    return Ranker(w, np.zeros(len(NAMES)), np.ones(len(NAMES)))


@pytest.fixture
def ranked(linker):
    return linker.replace(ranker=uniformish_ranker())


def test_a_profile_with_a_ranker_refits_the_ranker_and_never_changes_the_serving_one(ranked, photo, test_split,
                                                                                      tmp_path):
    from gemel.training.ranker import groups_file, read_groups
    from gemel.training.retrain import parts_for

    served, version, mapper = ranked.ranker, ranked.ranker.version, state_of(ranked.mapper)
    seen: list[tuple[float, str]] = []
    result = retrain(ranked, examples(photo), tmp_path / "run", FAST, test_examples=test_split,
                     progress_cb=lambda f, m: seen.append((f, m)), parts=parts_for(ranked))
    assert result.part == "ranker" and result.previous == {"ranker": version} and ranked.ranker is served
    assert ranked.ranker.version == version and same(ranked.mapper, mapper)  # nothing served moved
    assert result.candidate.ranker.version == result.version != version
    assert result.candidate.ranker.manifest["refit"] == {"base": 0, "decisions": 4}
    assert len(read_groups(groups_file(result.checkpoints["ranker"]))) == 4  # the next refit's starting data
    assert (result.accepted, result.reason) == decide(result.before, result.after, needs_gain=False)
    assert any("training the ranker" in m for _, m in seen)


def test_the_ranker_is_adopted_when_held_out_decisions_are_not_worse():
    assert decide(Scores(0.5, 0.5), Scores(0.5, 0.5), needs_gain=False)[0]
    assert not decide(Scores(0.5, 0.5), Scores(0.5, 0.5))[0]  # the mapper must gain
    assert not decide(Scores(0.5, 0.5), Scores(0.4, 0.9), needs_gain=False)[0]
    assert not decide(Scores(0.5, 0.5), Scores(0.6, 0.4), needs_gain=False)[0]


def test_an_accepted_ranker_serves_and_serves_again_after_a_restart(ranked, store, photo, test_split, tmp_path,
                                                                     monkeypatch):
    studio = Studio(ranked, store, AppConfig(work_dir=str(tmp_path / "work")))
    studio.retrain = RetrainJob(studio, FAST, test_examples=test_split)
    decide_all(studio, photo)
    force(monkeypatch, True)
    studio.retrain.start()
    state = studio.retrain.wait(120)
    assert state.error is None and state.result.part == "ranker"
    new = state.result.version
    assert studio.linker.ranker.version == new != ranked.ranker.version
    assert Path(state.saved) == studio.retrain.mappers_dir / f"{new}.json" and new in studio.retrain.view().result
    restarted = Studio(ranked, store, AppConfig(work_dir=str(tmp_path / "work2")))
    assert restarted.linker.ranker.version == new


# ---------------------------------------------------------------------------------------------- the job
@pytest.fixture
def store(linker, tmp_path):
    from annotations import Store

    with Store.open(tmp_path / "gemel.db", entity_exists=linker.kb.__contains__) as s:
        yield s


@pytest.fixture
def studio(linker, store, tmp_path, test_split):
    """A studio whose re-train fits the feature mapper (the Data tab fits the ranker; `retrain` takes either)."""
    from gemel.training.retrain import MapperPart

    s = Studio(linker, store, AppConfig(work_dir=str(tmp_path / "work")))
    s.retrain = RetrainJob(s, FAST, test_examples=test_split, parts=[MapperPart()])
    return s


def decide_all(studio, photo, rows=DECISIONS) -> None:
    for i, (text, mention, entity) in enumerate(rows):
        studio.loop.record("alice", "search" if entity else "nil", entity, text=text, mention=mention,
                           image=photo if i % 2 == 0 else None)


@pytest.mark.parametrize("rows, words", [
    ([], "no decisions"),
    (DECISIONS[:1], "only 1 decision"),
    ([("The cat slept.", "cat", None), ("Coffee again.", "Coffee", None)], "'not in the KB'"),
])
def test_the_action_refuses_bad_input_with_one_sentence(studio, photo, rows, words):
    decide_all(studio, photo, rows)
    with pytest.raises(gr.Error, match=words) as info:
        studio.retrain.start()
    assert one_sentence(info.value.message) and not studio.retrain.running and studio.retrain.thread is None


def test_a_job_started_twice_is_refused(studio, photo, monkeypatch):
    decide_all(studio, photo)
    release = threading.Event()

    def slow(*args, **kwargs):
        release.wait(10)
        raise RetrainError("stopped by the test")

    monkeypatch.setattr("demo.retrain_job.retrain", slow)
    studio.retrain.start()
    try:
        with pytest.raises(gr.Error, match="already running") as info:
            studio.retrain.start()
        assert one_sentence(info.value.message)
    finally:
        release.set()
    assert "stopped by the test" in studio.retrain.wait(10).error


def test_a_crash_mid_training_leaves_the_serving_model_untouched(studio, photo, monkeypatch):
    decide_all(studio, photo)
    serving, before, version = studio.linker, state_of(studio.linker.mapper), studio.linker.mapper_version
    trained = []

    def crash(self, acc, model, *args, **kwargs):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)  # half-way through an epoch: the weights being trained have moved
        trained.append(model)
        raise RuntimeError("out of memory")

    monkeypatch.setattr("gemel.training.train.Trainer._epoch", crash)
    studio.retrain.start()
    state = studio.retrain.wait(60)
    assert trained and trained[0] is not serving.mapper
    assert studio.linker is serving and studio.loop.linker is serving
    assert same(studio.linker.mapper, before) and studio.linker.mapper_version == version
    assert not state.running and state.result is None and one_sentence(state.error)
    assert "RuntimeError" in state.error and "unchanged" in state.error
    assert "unchanged" in studio.retrain.view().result and not any(studio.retrain.mappers_dir.glob("*.pt"))


def force(monkeypatch, accepted: bool) -> None:
    monkeypatch.setattr(retrain_mod, "decide", lambda before, after, needs_gain=True: (accepted, "forced by the test"))


def test_an_accepted_result_is_swapped_in_and_recorded_with_later_predictions(studio, photo, monkeypatch):
    decide_all(studio, photo)
    force(monkeypatch, True)
    old, before = studio.linker, state_of(studio.linker.mapper)
    studio.retrain.start()
    state = studio.retrain.wait(120)
    assert state.error is None and state.result.accepted
    new = state.result.version
    assert studio.linker is not old and studio.linker.mapper_version == new != old.mapper_version
    assert studio.loop.linker is studio.linker and studio.linker.labelled_pool is old.labelled_pool
    assert same(old.mapper, before)  # the previous linker object itself was not changed
    assert Path(state.saved) == studio.retrain.mappers_dir / f"{new}.pt" and Path(state.saved).is_file()
    assert "Accepted" in studio.retrain.view().result and new in studio.retrain.view().result

    view = studio.link(photo, "Hopper built compilers for ships.", "Hopper")
    assert view.query["prediction"]["mapper"] == new
    studio.correct(view.query, "bob", "save", "Grace Hopper")
    assert studio.store.history(annotator="bob")[0]["mapper_version"] == new
    assert new in [r["mapper_version"] for r in studio.store.stats()["model_accuracy"]]


def test_an_accepted_mapper_serves_again_after_a_restart(studio, store, linker, photo, tmp_path, monkeypatch):
    decide_all(studio, photo)
    force(monkeypatch, True)
    studio.retrain.start()
    new = studio.retrain.wait(120).result.version
    restarted = Studio(linker, store, AppConfig(work_dir=str(tmp_path / "work2")))  # the profile's mapper at load
    assert restarted.linker.mapper_version == new != linker.mapper_version
    assert restarted.loop.linker is restarted.linker
    assert restarted.link(photo, "Hopper built compilers for ships.", "Hopper").query["prediction"]["mapper"] == new
    Path(studio.retrain.wait(1).saved).unlink()  # the file is gone: the profile's own mapper serves, no crash
    assert Studio(linker, store, AppConfig(work_dir=str(tmp_path / "work3"))).linker is linker


def test_a_rejected_result_is_not_swapped_in(studio, photo, monkeypatch):
    decide_all(studio, photo)
    force(monkeypatch, False)
    old, before = studio.linker, state_of(studio.linker.mapper)
    studio.retrain.start()
    state = studio.retrain.wait(120)
    assert state.error is None and not state.result.accepted and state.saved is None
    assert studio.linker is old and same(old.mapper, before)
    assert "Not accepted: forced by the test" in studio.retrain.view().result
    assert not any(studio.retrain.mappers_dir.glob("*.pt"))


def test_the_data_tab_has_the_action(linker, store, tmp_path):
    from demo.app import build_app

    app = build_app(linker, store, AppConfig(work_dir=str(tmp_path / "work")))
    ids = {c.get("props", {}).get("elem_id") for c in app.config["components"]}
    assert {"retrain-start", "retrain-progress", "retrain-result", "data-plot"} <= ids


# ---------------------------------------------------------------------------------------------- the CLI
@pytest.fixture
def profile_toml(tiny_config, tiny_dir, tmp_path) -> Path:
    """conftest's tiny profile as a TOML file (every value of it is also valid TOML as JSON)."""
    import json

    from conftest import tiny_profile

    profile = tiny_profile(tiny_dir)
    lines = [f"name = {json.dumps(profile.pop('name'))}"]
    for section, values in profile.items():
        lines += [f"[{section}]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp_path / "tiny.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_gemel_train_on_a_tiny_store_end_to_end(studio, photo, profile_toml, tmp_path, capsys):
    from gemel.cli.main import main

    decide_all(studio, photo, DECISIONS + [("The cat slept.", "cat", None)])
    out = tmp_path / "run"
    code = main(["train", "--profile", str(profile_toml), "--annotations", str(studio.store.path), "--out", str(out),
                 "--epochs", "1", "--grad-accum", "2", "--no-eval-before"])
    printed = capsys.readouterr().out
    print(printed)
    assert code == 0 and (out / "mapper.pt").is_file()
    assert "training data: 6" in printed and "mapper: " in printed


def test_gemel_train_judge_prints_the_verdict(studio, photo, profile_toml, tmp_path, capsys):
    import json

    from gemel.cli.main import main

    decide_all(studio, photo)
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"id": "t-1", "text": "Hopper wrote a compiler.", "mention": "Hopper",
                                "entity": "Grace Hopper", "image": photo}) + "\n")
    code = main(["train", "--profile", str(profile_toml), "--annotations", str(studio.store.path), "--judge",
                 str(test), "--out", str(tmp_path / "run"), "--epochs", "1", "--grad-accum", "2", "--part", "mapper"])
    printed = capsys.readouterr().out
    print(printed)
    assert code == 0 and "held-out decisions (n=2)" in printed and "test.jsonl (n=1)" in printed
    assert "accepted: held-out accuracy" in printed and "version mapper-" in printed
    assert main(["train", "--profile", str(profile_toml), "--annotations", str(studio.store.path), "--judge",
                 str(test), "--data", str(test), "--out", str(tmp_path / "r2")]) == 2
    assert "--judge re-trains" in capsys.readouterr().err


def test_training_never_moves_the_shared_models(linker, photo, tmp_path, monkeypatch):
    """The serving linker shares the LLM with the candidate: re-training trains on the LLM's own device."""
    device = next(linker.lm.model.parameters()).device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine serving on the CPU
    seen = []
    monkeypatch.setattr("gemel.training.train.Trainer._accelerator",
                        lambda self: seen.append(self.config.cpu) or pytest.fail("stop after the device choice"))
    with pytest.raises(pytest.fail.Exception):
        retrain(linker, examples(photo), tmp_path, FAST)
    assert seen == [device.type == "cpu"] and next(linker.lm.model.parameters()).device == device
