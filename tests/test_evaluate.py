"""`gemel eval`: running a linker over a data set, the embedding-lookup baseline, the report and its CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gemel.data.evaluate import (
    EvalOptions,
    EvaluationError,
    PrecomputedFeatures,
    baseline_predict,
    evaluate_linker,
    json_safe,
    load_examples,
    predict,
    with_feature_keys,
    write_report,
)
from gemel.errors import InputError
from gemel.types import Example, Prediction

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def gold(tiny_dir):
    return load_examples(tiny_dir / "seed.jsonl")


class RecordingLinker:
    """A stand-in with the linker's interface: answers from a table and records what it was asked."""

    def __init__(self, answers: dict[str, str | None]) -> None:
        self.answers, self.calls, self.verbatim = answers, [], []

    def link(self, image, text, mention, *, exclude=(), verbatim=True):
        self.calls.append((text, mention, tuple(exclude)))
        self.verbatim.append(verbatim)
        if mention == "boom":
            raise InputError("mention 'boom' does not occur")
        return Prediction(entity=self.answers.get(text), candidates=[], demonstrations=[])


def test_report_fields_on_the_tiny_linker(tiny_linker, gold, tmp_path):
    result = evaluate_linker(tiny_linker, gold, options=EvalOptions(progress=False))
    r = result.report
    assert r.n == len(gold) == len(result.predictions)
    assert 0.0 <= r.ci[0] <= r.accuracy <= r.ci[1] <= 1.0
    assert r.overall.correct == sum(p.entity == g.entity for p, g in zip(result.predictions, gold))
    k = tiny_linker.config.decode.candidates
    assert set(r.recall_at_k) <= {1, 3, 5} and max(r.recall_at_k) <= k
    recalls = [r.recall_at_k[x] for x in sorted(r.recall_at_k)]
    assert recalls == sorted(recalls)  # recall@k never falls as k grows
    assert r.recall_at_k[1] == pytest.approx(r.accuracy)  # no NIL here: top-1 hit == exact match
    assert all(p.entity in tiny_linker.kb for p in result.predictions)
    blob = json.loads(write_report(result, tmp_path / "r.json", data="seed.jsonl").read_text())
    assert {"accuracy", "ci_low", "ci_high", "recall_at_k", "n", "predictions", "profile", "mapper", "decode",
            "seconds_per_mention", "data"} <= set(blob)
    assert blob["predictions"][0]["gold"] == gold[0].entity and "correct" in blob["predictions"][0]


def test_each_example_is_kept_out_of_its_own_prompt():
    linker = RecordingLinker({})
    examples = [Example(text="a b", mention="a", entity="A", id="x1"), Example(text="c d", mention="c", id=None)]
    predict(linker, examples, progress=False)
    assert [c[2] for c in linker.calls] == [("x1",), ()]


def test_a_data_sets_non_verbatim_mention_is_prompted_as_given():
    linker = RecordingLinker({})
    examples = [Example(text="a b", mention="a", id="1"), Example(text="a b", mention="A-b", id="2", meta={"verbatim": False})]
    predict(linker, examples, progress=False)
    assert linker.verbatim == [True, False]
    predict(linker, examples, exclude_self=False, progress=False)
    assert linker.calls[-2][2] == ()


def test_a_failing_example_is_named():
    with pytest.raises(EvaluationError, match="example 'e7'.*boom"):
        predict(RecordingLinker({}), [Example(text="boom", mention="boom", id="e7")], progress=False)


def test_nil_and_types_are_reported():
    examples = [Example(text="t1", mention="t", entity="A", id="1", meta={"type": "PER"}),
                Example(text="t2", mention="t", entity=None, id="2", meta={"type": "ORG"}),
                Example(text="t3", mention="t", entity="B", id="3", meta={"type": "PER"})]
    from gemel.data.metrics import evaluate

    report = evaluate(predict(RecordingLinker({"t1": "A", "t2": None, "t3": None}), examples, progress=False),
                      examples)
    assert report.accuracy == pytest.approx(2 / 3)
    assert report.nil.precision == 0.5 and report.nil.recall == 1.0
    assert report.per_type["PER"].correct == 1 and report.per_type["ORG"].correct == 1


def test_baseline_is_the_nearest_kb_entry(tiny_linker, gold, monkeypatch):
    from gemel.models.embedder import mention_in_context

    monkeypatch.setattr(tiny_linker, "link", lambda *a, **k: pytest.fail("the baseline must not run the LLM"))
    preds = baseline_predict(tiny_linker, gold, k=4)
    kb_vecs = tiny_linker.embedder.encode([e.index_text() for e in tiny_linker.kb])
    for ex, pred in zip(gold, preds):
        q = tiny_linker.embedder.encode([mention_in_context(ex.text, ex.mention)])[0]
        assert pred.entity == tiny_linker.kb.entities[int(np.argmax(kb_vecs @ q))].title
        sims = [c.retrieval_sim for c in pred.candidates]
        assert len(sims) == 4 and sims == sorted(sims, reverse=True)
        assert pred.mapper == "baseline"


def test_eval_cli_reports_gemel_beside_the_baseline(tiny_config, tiny_dir, tmp_path, capsys):
    from gemel.cli.main import main
    from gemel.config import profile_toml

    profile = tmp_path / "tiny.toml"
    profile.write_text(profile_toml(tiny_config))
    report = tmp_path / "out" / "report.json"
    assert main(["eval", "--profile", str(profile), "--data", str(tiny_dir / "seed.jsonl"), "--limit", "3",
                 "--report", str(report), "--quiet", "--set", "decode.num_beams=2"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "embedding-lookup baseline" in out
    blob = json.loads(report.read_text())
    assert blob["n"] == 3 and blob["mode"] == "gemel" and blob["baseline"]["mode"] == "baseline"
    assert blob["decode"]["num_beams"] == 2
    assert main(["eval", "--profile", str(profile), "--data", str(tiny_dir / "seed.jsonl"), "--baseline",
                 "--report", str(report), "--quiet"]) == 0
    assert json.loads(report.read_text())["mapper"] == "baseline"


@pytest.mark.parametrize("argv,message", [
    (["--set", "decode.mode"], "SECTION.KEY=VALUE"),
    (["--set", "decode=beam"], "SECTION.KEY=VALUE"),
    (["--set", "decode.num_beams=0"], "num_beams=0"),
    (["--set", "decode.colour=red"], "unknown|colour"),
    (["--limit", "0"], "--limit 0"),
])
def test_eval_cli_refuses_bad_arguments(tiny_config, tiny_dir, tmp_path, capsys, argv, message):
    from gemel.cli.main import main
    from gemel.config import profile_toml

    profile = tmp_path / "tiny.toml"
    profile.write_text(profile_toml(tiny_config))
    assert main(["eval", "--profile", str(profile), "--data", str(tiny_dir / "seed.jsonl")] + argv) == 2
    import re

    assert re.search(message, capsys.readouterr().err)


def test_parse_sets_reads_toml_values():
    from gemel.cli.eval import parse_sets

    assert parse_sets(["decode.mode=beam", "decode.candidates=0", "decode.w_ret=1.5", "demos.kb_demos=false",
                       'kb.name="a b"']) == {"decode": {"mode": "beam", "candidates": 0, "w_ret": 1.5},
                                              "demos": {"kb_demos": False}, "kb": {"name": "a b"}}


def test_images_next_to_the_data_or_one_folder_up(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "eval").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "up.png")
    (tmp_path / "eval" / "images").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "eval" / "images" / "here.png")
    lines = [{"id": "a", "text": "x y", "mention": "x", "entity": "X", "image": "images/up.png"},
             {"id": "b", "text": "x y", "mention": "x", "entity": "X", "image": "images/here.png"},
             {"id": "c", "text": "x y", "mention": "x", "entity": None}]
    data = tmp_path / "eval" / "d.jsonl"
    data.write_text("\n".join(json.dumps(d) for d in lines) + "\n")
    a, b, c = load_examples(data)
    assert a.image == str(tmp_path / "images" / "up.png") and b.image == str(tmp_path / "eval" / "images" / "here.png")
    assert [e.id for e in load_examples(data, drop_nil=True)] == ["a", "b"]
    assert len(load_examples(data, limit=1)) == 1


def test_shipped_eval_files_resolve_their_images():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name in ("dev", "test"):
        examples = load_examples(root / "assets" / "eval" / f"{name}.jsonl")
        assert all(e.image is None or Path(e.image).is_file() for e in examples)


def test_precomputed_features_and_their_keys():
    feats = {"https://x.org/a.jpg": np.ones(3, dtype=np.float16)}
    store = PrecomputedFeatures(feats)
    assert store.get("https://x.org/a.jpg").dtype == torch.float32
    with pytest.raises(EvaluationError, match="no precomputed feature"):
        store.get("b.jpg")
    fallback = PrecomputedFeatures(feats, fallback=PrecomputedFeatures({"b.jpg": np.zeros(3)}))
    assert fallback.get("b.jpg").sum() == 0
    examples = [Example(text="t", mention="t", image="/data/a.jpg", meta={"image_key": "https://x.org/a.jpg"}),
                Example(text="t", mention="t", image="gone.jpg")]
    keyed = with_feature_keys(examples, feats)
    assert [e.image for e in keyed] == ["https://x.org/a.jpg", None]


def test_report_json_is_standard():
    blob = json_safe({"t": -math.inf, "n": [math.nan, 1.0], "ok": 2})
    text = json.dumps(blob)
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert blob == {"t": "-inf", "n": ["nan", 1.0], "ok": 2}


@pytest.mark.parametrize("kwargs,message", [({"limit": 0}, "limit=0"), ({"baseline_k": 0}, "baseline_k=0")])
def test_bad_eval_options_are_refused(kwargs, message):
    with pytest.raises(EvaluationError, match=message):
        EvalOptions(**kwargs)


def test_cases_whose_picture_is_a_demonstrations_are_reported_apart(tiny_linker, tiny_dir, tmp_path):
    from PIL import Image

    other = tmp_path / "other.png"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(other)
    examples = [Example(text="Apple makes phones.", mention="Apple", entity="Apple Inc.",
                        image=str(tiny_dir / "img.png"), id="e1"),
                Example(text="An apple a day.", mention="apple", entity="Apple", image=str(other), id="e2"),
                Example(text="Apple again.", mention="Apple", entity="Apple Inc.", image=None, id="e3")]
    result = evaluate_linker(tiny_linker, examples, baseline=True, options=EvalOptions(progress=False))
    assert {k: v.n for k, v in result.report.per_pool.items()} == {"in-pool": 1, "out-of-pool": 1}
    assert "in-pool picture (n=1)" in result.report.table() and "out-of-pool picture (n=1)" in result.report.table()
    assert set(result.report.to_dict()["per_pool"]) == {"in-pool", "out-of-pool"}


def test_a_package_picture_in_a_jsonl_file_is_found_inside_its_package(tmp_path):
    """The out-of-pool photos name pictures shipped in PyPI packages (``package:skimage/data/...``)."""
    from gemel.data.evaluate import load_examples

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "a", "text": "The Moon rose.", "mention": "Moon", "entity": "Moon",
                                "image": "package:skimage/data/moon.png"}) + "\n")
    (ex,) = load_examples(data)
    assert Path(ex.image).is_file() and ex.image.endswith("skimage/data/moon.png")
