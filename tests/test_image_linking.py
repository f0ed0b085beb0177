"""The picture as a linking signal: the image scorer's candidates join the text's, ``w_img * image_score`` joins
the fused score, an abstaining scorer or a query without a picture changes nothing, and a scorer that does not
fit the profile is refused with a sentence.

The scorer is built here for the tiny open_clip encoder: a random projection from its pooled feature to the tiny
embedder's space."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image

from gemel.config import ImageConfig, LinkerConfig, ProfileError
from gemel.errors import GemelError
from gemel.generation.decoding import Hypothesis
from gemel.image.configs import FusionConfig, ImageScoreError, ScorerSpec
from gemel.image.gates import merge_candidates, top_rows
from gemel.image.projection import Projection
from gemel.image.scorer import ImageEntityScorer
from gemel.types import Candidate

TEXT, MENTION = "Look at this Apple.", "Apple"


def _spec(linker, **changes) -> ScorerSpec:
    spec = ScorerSpec(vision=linker.vision.config.name, vision_dim=linker.vision.dim, embedder=linker.embedder.name,
                      embed_dim=linker.embedder.dim)
    return dataclasses.replace(spec, **changes)


def _save_scorer(linker, path, fusion: FusionConfig = FusionConfig(), **spec) -> str:
    torch.manual_seed(0)
    s = _spec(linker, **spec)
    ImageEntityScorer(s, linker.vision, Projection(s.vision_dim, s.embed_dim), fusion=fusion).save(path)
    return str(path)


@pytest.fixture(scope="module")
def scorer_file(tiny_linker, tmp_path_factory):
    return _save_scorer(tiny_linker, tmp_path_factory.mktemp("scorer") / "scorer.pt")


def _with_image(linker, scorer: str, weight: float = 1.0, candidates: int = 2):
    return linker.replace(config=linker.config.replace(image={"scorer": scorer, "weight": weight,
                                                              "candidates": candidates}))


# ---- candidates ------------------------------------------------------------------------------------
def test_image_candidates_join_the_text_candidates(tiny_linker):
    text_rows = tiny_linker.retrieve_candidates(tiny_linker.embedder.encode(["Apple"]))
    scores = np.zeros(len(tiny_linker.kb), np.float32)
    outside = [r for r in range(len(tiny_linker.kb)) if r not in text_rows]
    scores[outside[-1]], scores[outside[0]], scores[text_rows[0]] = 3.0, 2.0, 5.0
    assert top_rows(scores, 3) == [text_rows[0], outside[-1], outside[0]]
    assert merge_candidates(text_rows, top_rows(scores, 3)) == text_rows + [outside[-1], outside[0]]
    assert merge_candidates(text_rows, []) == text_rows and top_rows(scores, 0) == []


def test_linker_adds_the_pictures_top_entities(tiny_linker, scorer_file, tiny_dir):
    image = tiny_dir / "img.png"
    linker = _with_image(tiny_linker, scorer_file, candidates=3)
    query = linker.embedder.encode(["Look at this Apple."])
    scores = linker.image_scores(image)
    assert scores is not None and scores.shape == (len(linker.kb),)
    union = linker.retrieve_candidates(query, image_scores=scores)
    text = tiny_linker.retrieve_candidates(query)
    assert union[:len(text)] == text and set(union) == set(text) | set(top_rows(scores, 3))
    pred = linker.link(image, TEXT, MENTION)
    assert {c.name for c in pred.candidates} == {linker.kb.titles[r] for r in union}
    assert all(c.image_score == pytest.approx(float(scores[linker.kb.index(c.name)])) for c in pred.candidates)


def test_given_candidates_stay_as_given(tiny_linker, scorer_file, tiny_dir):
    linker = _with_image(tiny_linker, scorer_file, candidates=5)
    pred = linker.link(tiny_dir / "img.png", TEXT, MENTION, candidates=["Apple", "Apple Inc."])
    assert sorted(c.name for c in pred.candidates) == ["Apple", "Apple Inc."]


# ---- fusion ----------------------------------------------------------------------------------------
def test_the_image_term_reorders_as_its_weight_says(tiny_linker, scorer_file):
    query = tiny_linker.embedder.encode([TEXT])
    a, b = tiny_linker.kb.index("Apple"), tiny_linker.kb.index("Apple Inc.")
    hyps = [Hypothesis(tiny_linker.name_tokens(a), -1.0), Hypothesis(tiny_linker.name_tokens(b), -60.0)]
    scores = np.zeros(len(tiny_linker.kb), np.float32)
    scores[b] = 1.0
    plain = {c.name: c for c in tiny_linker.rank(hyps, query)}
    gap = plain["Apple"].score - plain["Apple Inc."].score  # what the image term must overcome
    assert gap > 0.2 and all(c.image_score is None for c in plain.values())
    for weight, first in ((gap - 0.1, "Apple"), (gap + 0.1, "Apple Inc.")):
        ranked = _with_image(tiny_linker, scorer_file, weight).rank(hyps, query, scores)
        assert ranked[0].name == first
        assert {c.name: c.image_score for c in ranked} == {"Apple": 0.0, "Apple Inc.": 1.0}
    heavy = {c.name: c.score for c in _with_image(tiny_linker, scorer_file, 2.0).rank(hyps, query, scores)}
    assert heavy == pytest.approx({"Apple": plain["Apple"].score, "Apple Inc.": plain["Apple Inc."].score + 2.0})


def test_an_abstaining_scorer_adds_nothing(tiny_linker, tmp_path, tiny_dir):
    path = _save_scorer(tiny_linker, tmp_path / "abstain.pt", FusionConfig(abstain_below=1.01))
    linker = _with_image(tiny_linker, path, weight=5.0, candidates=4)
    image = tiny_dir / "img.png"
    assert linker.image_scores(image) is None
    with_scorer, without = linker.link(image, TEXT, MENTION), tiny_linker.link(image, TEXT, MENTION)
    assert [c.name for c in with_scorer.candidates] == [c.name for c in without.candidates]
    assert [c.score for c in with_scorer.candidates] == pytest.approx([c.score for c in without.candidates])
    assert all(c.image_score is None for c in with_scorer.candidates)


def test_below_min_confidence_the_image_adds_nothing(tiny_linker, scorer_file, tiny_dir):
    from gemel.image.gates import confidence

    image = tiny_dir / "img.png"
    sure = _with_image(tiny_linker, scorer_file, weight=5.0, candidates=4)
    conf = confidence(sure.image_scores(image))
    assert 0 < conf < 1
    unsure = sure.replace(config=sure.config.replace(image={"min_confidence": min(conf + 1e-3, 1.0)}))
    assert unsure.image_scores(image) is None
    at = sure.replace(config=sure.config.replace(image={"min_confidence": conf - 1e-6}))
    assert at.image_scores(image) is not None
    pred, plain = unsure.link(image, TEXT, MENTION), tiny_linker.link(image, TEXT, MENTION)
    assert [(c.name, c.image_score) for c in pred.candidates] == [(c.name, None) for c in plain.candidates]


def test_no_picture_links_exactly_as_without_a_scorer(tiny_linker, scorer_file):
    linker = _with_image(tiny_linker, scorer_file, weight=5.0, candidates=4)
    assert linker.image_scores(None) is None
    a, b = linker.link(None, TEXT, MENTION), tiny_linker.link(None, TEXT, MENTION)
    assert [(c.name, c.score, c.image_score) for c in a.candidates] == \
        [(c.name, c.score, c.image_score) for c in b.candidates]


def test_a_picture_is_decoded_once_for_the_gates_across_links(tiny_linker, scorer_file, tmp_path, monkeypatch):
    """Re-linking a picture (several mentions of one upload) reuses its flatness and colour layout; another
    picture, or the same one changed on disk, is read again; the scores are the same either way."""
    import gemel.image.gates as image_link

    linker = _with_image(tiny_linker, scorer_file, weight=5.0, candidates=4)
    linker = linker.replace(config=linker.config.replace(image={"min_flatness": 0.01}))
    image = tmp_path / "query.png"  # content no other test links: the facts cache is shared by the variants
    Image.effect_noise((48, 32), 64).convert("RGB").save(image)
    reads = []
    real = image_link._readable
    monkeypatch.setattr(image_link, "_readable", lambda im: reads.append(im) or real(im))
    first = linker.image_signal.scores(image, None, [])
    second = linker.image_signal.scores(image, None, [])
    assert len(reads) == 1 and first[1] == second[1]
    assert (first[0] is None and second[0] is None) or np.array_equal(first[0], second[0])
    Image.new("RGB", (37, 23), (12, 200, 91)).save(image)  # new content: a new key
    linker.image_signal.scores(image, None, [])
    assert len(reads) == 2


def test_variants_share_one_loaded_scorer(tiny_linker, scorer_file):
    one = _with_image(tiny_linker, scorer_file, 1.0, 2)
    other = one.replace(config=one.config.replace(image={"weight": 3.0, "candidates": 0}))
    assert other.image_scorer is one.image_scorer is not None
    assert tiny_linker.image_scorer is None


def test_candidate_dicts_round_trip_and_old_ones_load():
    c = Candidate("Apple", 1.0, -2.0, 0.5, "fruit", image_score=1.25)
    assert Candidate.from_dict(c.to_dict()) == c and c.to_dict()["image_score"] == 1.25
    old = {k: v for k, v in c.to_dict().items() if k != "image_score"}
    assert Candidate.from_dict(old).image_score is None


# ---- refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, message", [
    ({"scorer": "s.pt", "weight": -1.0}, r"image.weight=-1.0 must be a finite number >= 0"),
    ({"scorer": "s.pt", "weight": float("nan")}, r"image.weight=nan must be a finite number"),
    ({"scorer": "s.pt", "candidates": 999}, r"image.candidates=999 must be in 0..256"),
    ({"weight": 0.5}, r"need an image.scorer: set image.scorer"),
    ({"candidates": 4}, r"need an image.scorer"),
    ({"scorer": "s.pt", "min_confidence": 1.5}, r"image.min_confidence=1.5 must be in \[0, 1\]"),
])
def test_bad_image_config_is_refused(values, message):
    with pytest.raises(ProfileError, match=message):
        ImageConfig(**values)


def test_image_section_in_a_profile(tiny_config):
    d = {"name": "x", "llm": {"source": "a"}, "vision": {}, "embedder": {"source": "e"}, "kb": {"source": "k"},
         "image": {"scorer": "s.pt", "weight": 0.5, "candidates": 4}}
    assert LinkerConfig.from_dict(d).image == ImageConfig("s.pt", 0.5, 4)
    assert tiny_config.image == ImageConfig() and not tiny_config.image.active
    with pytest.raises(ProfileError, match=r"image.weight = '1' must be of type float"):
        LinkerConfig.from_dict({**d, "image": {"scorer": "s.pt", "weight": "1"}})
    with pytest.raises(ProfileError, match=r"unknown key\(s\) \['w'\] in \[image\]"):
        LinkerConfig.from_dict({**d, "image": {"w": 1.0}})


def test_a_missing_scorer_file_is_refused(tiny_linker, tmp_path):
    with pytest.raises(ProfileError, match=r"image.scorer '.*nowhere.pt' is not a file .* or image.scorer = \"\""):
        _with_image(tiny_linker, str(tmp_path / "nowhere.pt"))


def test_a_scorer_for_another_encoder_is_refused(tiny_linker, tmp_path):
    path = _save_scorer(tiny_linker, tmp_path / "other.pt", vision_dim=tiny_linker.vision.dim + 1)
    with pytest.raises(ImageScoreError, match=r"cannot be used with vision 'tiny-vit'.*vision_dim: artifact"):
        _with_image(tiny_linker, path)


def _with_old_bridge(path, out, w_bridge: float) -> str:
    """A copy of a saved scorer as one saved before the ImageNet bridge was removed: its class vectors, its config,
    the classifier size in the spec and its weight in the fusion."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    blob["spec"]["num_classes"] = 10
    blob["bridge"] = {"top_classes": 5, "temperature": 1.0}
    blob["fusion"]["w_bridge"] = w_bridge
    blob["state_dict"]["bridge.class_vectors"] = torch.randn(10, blob["spec"]["embed_dim"]).half()
    torch.save(blob, out)
    return str(out)


def test_an_old_scorer_with_the_bridge_at_weight_0_links_as_before(tiny_linker, scorer_file, tmp_path, tiny_dir):
    old = _with_image(tiny_linker, _with_old_bridge(scorer_file, tmp_path / "old.pt", 0.0), candidates=4)
    now = _with_image(tiny_linker, scorer_file, candidates=4)
    before, after = (linker.image_scores(tiny_dir / "img.png") for linker in (old, now))
    assert after is not None and np.array_equal(before, after)


def test_an_old_scorer_that_weighs_the_bridge_is_refused(tiny_linker, scorer_file, tmp_path):
    path = _with_old_bridge(scorer_file, tmp_path / "weighed.pt", 0.3)
    with pytest.raises(ImageScoreError, match=r"w_bridge=0.3, but the bridge no longer exists: retrain the scorer"):
        _with_image(tiny_linker, path)


# ---- fitting w_img and K_img on dev records --------------------------------------------------------
def _record(gold, image=(0.0, 2.0, 3.0), stratum="all"):
    from gemel.training.image_fit import ImageScored

    return ImageScored("x", gold, ("A", "B", "C"), (-1.0, -1.5, -1.2), (0.0, 0.0, 0.0), image,
                       (True, True, False), (-1, 1, 0), stratum)


def test_choose_keeps_k_image_candidates_and_weighs_the_image():
    from gemel.training.image_fit import choose

    r = _record("B")
    assert choose(r, 0.0, 0) == "A"  # text candidates only, LLM decides
    assert choose(r, 1.0, 0) == "B"  # -1.5 + 2 beats -1 + 0; C (image-only candidate) is not kept
    assert choose(r, 1.0, 1) == "C"  # C joins (image rank 0) and wins: -1.2 + 3
    assert choose(r, 0.0, 1, image_only=True) == "C" and choose(_record("A", None), 5.0, 1) == "A"
    assert _record("A").from_dict(_record("A").to_dict()) == _record("A")


def test_fit_picks_the_best_pair_and_prefers_fewer_candidates():
    from gemel.training.image_fit import ImageFitError, fit

    items = [_record("B", stratum="s1"), _record("A", (0.0, 0.1, 0.0), stratum="s2")]
    result = fit(items, w_ret=0.0, weights=(0.0, 1.0, 5.0), candidates=(0, 1, 2))
    assert (result.weight, result.candidates, result.accuracy, result.baseline) == (1.0, 0, 1.0, 0.5)
    assert len(result.grid) == 9
    guarded = fit(items, w_ret=0.0, weights=(0.0, 1.0, 5.0), candidates=(0, 1, 2), guard=("s2",))
    assert (guarded.weight, guarded.candidates) == (1.0, 0)  # s2 keeps its one right answer at w_img = 1
    items.append(_record("A", (0.0, 0.9, 0.0), stratum="s2"))  # at w_img = 1, B (-0.6) now beats A (-1)
    none = fit(items, 0.0, (0.0, 1.0), (0,), guard=("s2",), confidences=(0.0, 0.03), flatnesses=(0.0, 0.4),
               margins=(math.inf, 0.5), exact_names=(False, True))
    assert (none.weight, none.candidates) == (0.0, 0)  # no image: the gates are left open, not set by a tie-break
    assert none.gates() == {"min_confidence": 0.0, "min_flatness": 0.0, "max_text_margin": math.inf,
                            "trust_exact_name": False}
    with pytest.raises(ImageFitError, match=r"guard strata \['s3'\] have no examples"):
        fit(items, 0.0, guard=("s3",))
    with pytest.raises(ImageFitError, match="must be non-empty and >= 0"):
        fit(items, 0.0, weights=(-1.0,))


def test_collect_one_keeps_where_candidates_came_from(tiny_linker, scorer_file, tiny_dir):
    from gemel.training.image_fit import choose, collect_one
    from gemel.types import Example

    linker = _with_image(tiny_linker, scorer_file, weight=0.0, candidates=3)
    ex = Example(TEXT, MENTION, "Apple", str(tiny_dir / "img.png"), "q-1")
    r = collect_one(linker, ex)
    assert r.image is not None and sum(r.text) == tiny_linker.config.decode.candidates
    assert sorted(i for i in r.image_rank if i >= 0) == [i for i in range(3) if i in r.image_rank]
    plain = tiny_linker.link(ex.image, TEXT, MENTION, exclude=["q-1"])
    assert choose(r, 0.0, 0, w_ret=1.0) == plain.entity  # no image signal = today's answer


def test_cli_shows_the_image_score_only_when_there_is_one():
    from gemel.cli.main import format_prediction
    from gemel.types import Prediction

    cands = [Candidate("Apple", 1.0, -2.0, 0.5, "fruit", image_score=1.25), Candidate("Apple Inc.", 0.5, -2.0, 0.4)]
    text = format_prediction(Prediction("Apple", cands, []))
    assert "sim 0.500, image +1.250)" in text and "sim 0.400)" in text


# ---- gemel calibrate --image ---------------------------------------------------------------------------
def _dev_rows(tiny_dir, n=4):
    import json

    rows = [json.loads(line) for line in (tiny_dir / "seed.jsonl").read_text().splitlines()][:n]
    for r in rows:
        r["image"] = str(tiny_dir / r["image"]) if r["image"] else None
    return rows


def test_calibrate_image_is_never_worse_than_no_image(tiny_linker, scorer_file, tiny_dir):
    from gemel.training.image_fit import (
        CONFIDENCES,
        EXACT_NAMES,
        FLATNESSES,
        IMAGE_CANDIDATES,
        MARGINS,
        WEIGHTS,
        calibrate_image,
        open_gates,
    )
    from gemel.types import Example

    linker = _with_image(tiny_linker, scorer_file, weight=2.0, candidates=1)
    examples = [Example(r["text"], r["mention"], r["entity"], r["image"], f"dev-{i}")
                for i, r in enumerate(_dev_rows(tiny_dir))]
    fitted = calibrate_image(linker, examples, w_ret=linker.config.decode.w_ret, progress=False)
    assert fitted.accuracy >= fitted.baseline
    assert len(fitted.grid) == (len(WEIGHTS) * len(IMAGE_CANDIDATES) * len(CONFIDENCES) * len(FLATNESSES)
                                * len(MARGINS) * len(EXACT_NAMES))
    assert max(g[-1] for g in fitted.grid) == pytest.approx(max(fitted.accuracy, fitted.baseline))
    collector = open_gates(linker)
    assert collector.config.image.candidates == max(IMAGE_CANDIDATES) and collector.config.image.min_flatness == 0
    with pytest.raises(GemelError, match="no image scorer"):
        open_gates(tiny_linker)


def test_calibrate_cli_fits_the_image_section(tiny_config, tiny_dir, scorer_file, tmp_path, capsys):
    import json
    import re

    from gemel.cli.main import main
    from gemel.config import load_profile
    from gemel.training.calibrate import profile_toml

    profile = tmp_path / "tiny.toml"
    profile.write_text(profile_toml(tiny_config.replace(image={"scorer": scorer_file, "weight": 1.0})))
    data = tmp_path / "dev.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in _dev_rows(tiny_dir)) + "\n")
    out = tmp_path / "cal.toml"
    argv = ["calibrate", "--profile", str(profile), "--data", str(data), "--weights", "0,1", "--out", str(out),
            "--quiet"]
    assert main(argv + ["--image"]) == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith("[image] fitted on 4 mentions"))
    values = dict(re.findall(r"(\w+)=(\S+)", line))
    image = load_profile(out).image
    assert image.scorer and float(values["weight"]) == image.weight
    assert int(values["candidates"]) == image.candidates and float(values["min_flatness"]) == image.min_flatness
    assert "[image]" in out.read_text().splitlines()[0]  # the header says what was fitted

    plain = tmp_path / "plain.toml"
    plain.write_text(profile_toml(tiny_config))
    assert main(["calibrate", "--profile", str(plain), "--data", str(data), "--out", str(out), "--quiet",
                 "--image"]) == 2
    assert "--image needs a profile with an image scorer" in capsys.readouterr().err


def test_one_link_reads_hashes_and_decodes_its_picture_once(tiny_linker, scorer_file, tmp_path, monkeypatch):
    """The vision feature, the style gate, the colour layout and the recall all share one `Picture`: a link
    reads the file once and decodes it once (content no other test links, so no cache answers for it)."""
    import gemel.images as images

    linker = _with_image(tiny_linker, scorer_file, weight=5.0, candidates=4)
    linker = linker.replace(config=linker.config.replace(image={"min_flatness": 0.01}))
    image = tmp_path / "once.png"
    Image.effect_noise((41, 29), 80).convert("RGB").save(image)
    reads, decodes = [], []
    real_read, real_decode = images._read_file, images._decode
    monkeypatch.setattr(images, "_read_file", lambda p: reads.append(str(p)) or real_read(p))
    monkeypatch.setattr(images, "_decode", lambda *a: decodes.append(a[1]) or real_decode(*a))
    pred = linker.link(str(image), TEXT, MENTION)
    assert pred.image.startswith("on") and reads.count(str(image)) == 1
    assert sum(str(image) in what for what in decodes) == 1


def test_a_picture_answers_as_its_source_does(tmp_path):
    from gemel.images import Picture, image_key, load_image

    path = tmp_path / "p.png"
    Image.new("RGBA", (9, 7), (10, 20, 30, 0)).save(path)
    for source in (str(path), path.read_bytes(), Image.open(path)):
        pic = Picture.of(source)
        assert Picture.of(pic) is pic and pic.key == image_key(source)
        assert load_image(pic).tobytes() == load_image(source).tobytes() and load_image(pic) is load_image(pic)
    assert Picture.of(None) is None
