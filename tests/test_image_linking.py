"""The picture as a linking signal: the image scorer's candidates join the text's, its scores become the ranker's
image features (a ranker that weighs them follows the picture), a query without a picture changes nothing, and a
scorer that does not fit the profile is refused with a sentence.

The scorer is built here for the tiny open_clip encoder: a random projection from its pooled feature to the tiny
embedder's space."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from gemel.config import ImageConfig, LinkerConfig, ProfileError
from gemel.image.configs import FusionConfig, ImageScoreError, ScorerSpec
from gemel.image.facts import merge_candidates, top_rows
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


def _with_image(linker, scorer: str, candidates: int = 2):
    return linker.replace(config=linker.config.replace(image={"scorer": scorer, "candidates": candidates}))


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
    union = linker.retrieve_candidates(query, image_scores=scores, mention=MENTION)
    text = tiny_linker.retrieve_candidates(query, mention=MENTION)
    assert union[:len(text)] == text and set(union) == set(text) | set(top_rows(scores, 3))
    pred = linker.link(image, TEXT, MENTION)
    assert {c.name for c in pred.candidates} == {linker.kb.titles[r] for r in union}
    assert all(c.image_score == pytest.approx(float(scores[linker.kb.index(c.name)]), abs=1e-5)
               for c in pred.candidates)


def test_given_candidates_stay_as_given(tiny_linker, scorer_file, tiny_dir):
    linker = _with_image(tiny_linker, scorer_file, candidates=5)
    pred = linker.link(tiny_dir / "img.png", TEXT, MENTION, candidates=["Apple", "Apple Inc."])
    assert sorted(c.name for c in pred.candidates) == ["Apple", "Apple Inc."]


# ---- the ranker's image features ---------------------------------------------------------------------
def test_a_ranker_that_weighs_the_picture_follows_it(tiny_linker, scorer_file, tiny_dir):
    from gemel.rank.features import NAMES
    from gemel.rank.model import Ranker

    image = tiny_dir / "img.png"
    weights = np.zeros(len(NAMES))
    weights[NAMES.index("image_drawing")] = weights[NAMES.index("image_photo")] = 50.0
    picture = _with_image(tiny_linker, scorer_file, candidates=4)
    by_picture = picture.replace(ranker=Ranker(weights, np.zeros(len(NAMES)), np.ones(len(NAMES))))
    pred = by_picture.link(image, TEXT, MENTION)
    best = max(pred.candidates, key=lambda c: c.image_score)
    assert pred.entity == best.name and pred.candidates[0].probability > 0.5
    assert pred.image.startswith("weighed by the ranker, as a")
    assert max(best.contributions, key=best.contributions.get) in {"image_drawing", "image_photo"}
    text_only = picture.link(image, TEXT, MENTION)  # the shipped ranker without picture features
    assert all(c.contributions[n] == 0.0 for c in text_only.candidates for n in ("image_drawing", "image_photo"))


def test_no_picture_links_exactly_as_without_a_scorer(tiny_linker, scorer_file):
    linker = _with_image(tiny_linker, scorer_file, candidates=4)
    assert linker.image_scores(None) is None
    a, b = linker.link(None, TEXT, MENTION), tiny_linker.link(None, TEXT, MENTION)
    assert [(c.name, c.score, c.image_score) for c in a.candidates] == \
        [(c.name, c.score, c.image_score) for c in b.candidates]


def test_a_picture_is_decoded_once_for_its_facts_across_links(tiny_linker, scorer_file, tmp_path, monkeypatch):
    """Re-linking a picture (several mentions of one upload) reuses its flatness and colour layout; another
    picture, or the same one changed on disk, is read again; the scores are the same either way."""
    import gemel.image.facts as image_link

    linker = _with_image(tiny_linker, scorer_file, candidates=4)
    image = tmp_path / "query.png"  # content no other test links: the facts cache is shared by the variants
    Image.effect_noise((48, 32), 64).convert("RGB").save(image)
    reads = []
    real = image_link._readable
    monkeypatch.setattr(image_link, "_readable", lambda im: reads.append(im) or real(im))
    first = linker.image_signal.picture(image)
    second = linker.image_signal.picture(image)
    assert len(reads) == 1 and first.flatness == second.flatness and np.array_equal(first.scores, second.scores)
    Image.new("RGB", (37, 23), (12, 200, 91)).save(image)  # new content: a new key
    linker.image_signal.picture(image)
    assert len(reads) == 2


def test_variants_share_one_loaded_scorer(tiny_linker, scorer_file):
    one = _with_image(tiny_linker, scorer_file, 2)
    other = one.replace(config=one.config.replace(image={"candidates": 0}))
    assert other.image_scorer is one.image_scorer is not None
    assert tiny_linker.image_scorer is None


def test_candidate_dicts_round_trip_and_old_ones_load():
    c = Candidate("Apple", 1.0, -2.0, 0.5, "fruit", image_score=1.25)
    assert Candidate.from_dict(c.to_dict()) == c and c.to_dict()["image_score"] == 1.25
    old = {k: v for k, v in c.to_dict().items() if k != "image_score"}
    assert Candidate.from_dict(old).image_score is None


# ---- refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, message", [
    ({"scorer": "s.pt", "candidates": 999}, r"image.candidates=999 must be in 0..256"),
    ({"candidates": 4}, r"image.candidates=4 needs an image.scorer: set image.scorer"),
])
def test_bad_image_config_is_refused(values, message):
    with pytest.raises(ProfileError, match=message):
        ImageConfig(**values)


def test_image_section_in_a_profile(tiny_config):
    d = {"name": "x", "llm": {"source": "a"}, "vision": {}, "embedder": {"source": "e"}, "kb": {"source": "k"},
         "image": {"scorer": "s.pt", "candidates": 4}}
    assert LinkerConfig.from_dict(d).image == ImageConfig(scorer="s.pt", candidates=4)
    assert tiny_config.image == ImageConfig() and not tiny_config.image.active
    with pytest.raises(ProfileError, match=r"image.candidates = '1' must be of type int"):
        LinkerConfig.from_dict({**d, "image": {"scorer": "s.pt", "candidates": "1"}})
    with pytest.raises(ProfileError, match=r"image.min_flatness, image.weight no longer exist\(s\): the learned "
                                           r"ranker decides.*delete the key\(s\) from the profile"):
        LinkerConfig.from_dict({**d, "image": {"scorer": "s.pt", "weight": 4.0, "min_flatness": 0.3}})
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


def test_cli_shows_the_image_score_only_when_there_is_one():
    from gemel.cli.main import format_prediction
    from gemel.types import Prediction

    cands = [Candidate("Apple", 1.0, -2.0, 0.5, "fruit", image_score=1.25), Candidate("Apple Inc.", 0.5, -2.0, 0.4)]
    text = format_prediction(Prediction("Apple", cands, []))
    assert "sim 0.500, image +1.250)" in text and "sim 0.400)" in text


def test_one_link_reads_hashes_and_decodes_its_picture_once(tiny_linker, scorer_file, tmp_path, monkeypatch):
    """The vision feature, the flatness, the colour layout and the recall all share one `Picture`: a link
    reads the file once and decodes it once (content no other test links, so no cache answers for it)."""
    import gemel.images as images

    linker = _with_image(tiny_linker, scorer_file, candidates=4)
    image = tmp_path / "once.png"
    Image.effect_noise((41, 29), 80).convert("RGB").save(image)
    reads, decodes = [], []
    real_read, real_decode = images._read_file, images._decode
    monkeypatch.setattr(images, "_read_file", lambda p: reads.append(str(p)) or real_read(p))
    monkeypatch.setattr(images, "_decode", lambda *a: decodes.append(a[1]) or real_decode(*a))
    pred = linker.link(str(image), TEXT, MENTION)
    assert pred.image.startswith("shown, not weighed") and reads.count(str(image)) == 1
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
