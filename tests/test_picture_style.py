"""Flatness tells drawings from photos, and ``image.min_flatness`` keeps the image score off photos: in the
linker, in the dev fit and for any picture format."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_image_linking import MENTION, TEXT, _record, _with_image, scorer_file  # noqa: F401  (fixture)

from gemel.config import ImageConfig, ProfileError
from gemel.image.style import flatness


def _drawing(size=(200, 120)) -> Image.Image:
    """A flag-like drawing: three flat stripes with a transparent margin."""
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    w, h = size
    for i, colour in enumerate(((200, 16, 46, 255), (255, 255, 255, 255), (0, 56, 168, 255))):
        im.paste(colour, (10, 10 + i * (h - 20) // 3, w - 10, 10 + (i + 1) * (h - 20) // 3))
    return im


def _photo(size=(200, 120), seed=0) -> Image.Image:
    """A smooth gradient with sensor-like noise (what photos are made of)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = np.stack([x / size[0] * 200, y / size[1] * 200, np.full(x.shape, 90.0)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8))


def test_drawings_are_flat_and_photos_are_not():
    assert flatness(_drawing()) > 0.9
    assert flatness(_photo()) < 0.1
    assert flatness(Image.new("RGB", (1, 1))) == 1.0 and flatness(Image.new("RGB", (1, 5), "red")) == 1.0


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "I;16", "CMYK", "LA"])
def test_every_picture_format_gives_a_flatness(mode):
    image = _drawing().convert(mode) if mode != "I;16" else _drawing().convert("L").convert("I;16")
    assert flatness(image) > 0.9  # converted drawings stay flat (palette and 16-bit included)


def test_large_pictures_are_measured_on_a_thumbnail_and_nothing_is_changed():
    big = _photo((3000, 2000))
    before = np.asarray(big).copy()
    assert flatness(big) < 0.1 and big.size == (3000, 2000) and np.array_equal(np.asarray(big), before)


def _saved_pictures(folder):
    """(a drawing, a photo) saved as PNG files in ``folder``."""
    drawing, photo = folder / "drawing.png", folder / "photo.png"
    _drawing().save(drawing)
    _photo().save(photo)
    return drawing, photo


def _gated(linker, scorer: str, weight: float, candidates: int, min_flatness: float = 0.5):
    with_image = _with_image(linker, scorer, weight=weight, candidates=candidates)
    return with_image.replace(config=with_image.config.replace(image={"min_flatness": min_flatness}))


def test_min_flatness_keeps_the_image_off_photos(tiny_linker, scorer_file, tmp_path):  # noqa: F811
    drawing, photo = _saved_pictures(tmp_path)
    gated = _gated(tiny_linker, scorer_file, weight=5.0, candidates=4)
    assert gated.image_scores(drawing) is not None
    assert gated.image_scores(photo) is None
    pred, plain = gated.link(photo, TEXT, MENTION), tiny_linker.link(photo, TEXT, MENTION)
    assert [(c.name, c.image_score) for c in pred.candidates] == [(c.name, None) for c in plain.candidates]
    ungated = gated.replace(config=gated.config.replace(image={"min_flatness": 0.0}))
    assert ungated.image_scores(photo) is not None


def test_min_flatness_must_be_a_share():
    with pytest.raises(ProfileError, match=r"image.min_flatness=1.5 must be in \[0, 1\]"):
        ImageConfig(scorer="s.pt", min_flatness=1.5)


def test_fit_gates_photos_by_flatness_and_keeps_the_guarded_stratum():
    from dataclasses import replace

    from gemel.training.image_fit import choose, fit

    drawing = replace(_record("B", stratum="drawings"), flatness=0.9)
    photo = replace(_record("A", (0.0, 3.0, 0.0), stratum="photos"), flatness=0.1)  # the image is wrong here
    assert choose(photo, 1.0, 0) == "B" and choose(photo, 1.0, 0, min_flatness=0.5) == "A"
    assert choose(drawing, 1.0, 0, min_flatness=0.5) == "B"
    result = fit([drawing, photo], 0.0, weights=(0.0, 1.0), candidates=(0,), guard=("photos",),
                 flatnesses=(0.0, 0.2, 0.5, 0.8, 0.95))
    assert (result.weight, result.accuracy, result.baseline) == (1.0, 1.0, 0.5)
    assert result.min_flatness == 0.5  # 0.2, 0.5 and 0.8 tie: the middle one
    assert len(result.grid) == 10


# ---- the text-margin gate: the picture decides only what the text leaves open --------------------------------
def test_text_leaves_open_compares_the_best_two_text_scores():
    from gemel.image.gates import text_leaves_open

    assert text_leaves_open([-3.0, -1.0, -1.5], 1.0)  # best two 0.5 apart
    assert not text_leaves_open([-3.0, -1.0, -2.0], 1.0)  # exactly 1.0 apart: decided
    assert text_leaves_open([-1.0, -9.0], float("inf")) and text_leaves_open([-1.0], 0.1)


def test_the_image_does_not_overrule_a_text_that_has_decided(tiny_linker, scorer_file):  # noqa: F811
    from gemel.generation.decoding import Hypothesis

    query = tiny_linker.embedder.encode([TEXT])
    a, b = tiny_linker.kb.index("Apple"), tiny_linker.kb.index("Apple Inc.")
    scores = np.zeros(len(tiny_linker.kb), np.float32)
    scores[b] = 1.0
    linker = _with_image(tiny_linker, scorer_file, weight=100.0)
    for llm_b, margin, first in ((-1.2, 1.0, "Apple Inc."), (-30.0, 1.0, "Apple"), (-30.0, 1e9, "Apple Inc.")):
        hyps = [Hypothesis(tiny_linker.name_tokens(a), -1.0), Hypothesis(tiny_linker.name_tokens(b), llm_b)]
        text = {c.name: c.score for c in tiny_linker.rank(hyps, query)}
        gated = linker.replace(config=linker.config.replace(image={"max_text_margin": margin}))
        ranked = gated.rank(hyps, query, scores)
        assert ranked[0].name == first, (llm_b, margin, text)
        if first == "Apple":  # decided by the text: no image share at all, scores exactly the text's
            assert {c.name: (c.score, c.image_score) for c in ranked} == {n: (s, None) for n, s in text.items()}


def test_fit_finds_the_margin_that_keeps_named_mentions_and_opens_ambiguous_ones():
    from dataclasses import replace

    from gemel.training.image_fit import ImageScored, choose, fit

    def rec(gold, llm, image, stratum):
        return ImageScored("x", gold, ("A", "B"), llm, (0.0, 0.0), image, (True, True), (1, 0), stratum, None, 0.9)

    named = rec("A", (-1.0, -5.0), (0.0, 9.0), "named")  # the text decided A; the (wrong) picture says B
    open_ = rec("B", (-1.0, -1.3), (0.0, 9.0), "open")  # the text cannot tell; the picture says B
    assert choose(named, 1.0, 0) == "B" and choose(named, 1.0, 0, max_text_margin=2.0) == "A"
    assert choose(open_, 1.0, 0, max_text_margin=2.0) == "B"
    result = fit([named, open_], 0.0, weights=(0.0, 1.0), candidates=(0,), guard=("named",),
                 margins=(float("inf"), 0.1, 2.0, 10.0))
    assert (result.weight, result.max_text_margin, result.accuracy) == (1.0, 2.0, 1.0)
    assert replace(open_, image=None).image is None and choose(replace(open_, image=None), 1.0, 0) == "A"


def test_an_exact_name_is_trusted_unless_several_candidates_share_it():
    from gemel.config import ImageConfig
    from gemel.image.gates import image_may_decide, names_exactly

    assert names_exactly("Japan", "Japan") and names_exactly(" nut ", "Nut (hardware)")
    assert not names_exactly("the country", "Country") and not names_exactly("", "Country")
    trusting = ImageConfig(scorer="s.pt", trust_exact_name=True)
    assert not image_may_decide([-1.0, -1.1], ["Japan", "National flag"], "Japan", trusting)
    assert image_may_decide([-1.0, -1.1], ["Nut (fruit)", "Nut (hardware)"], "Nut", trusting)
    assert image_may_decide([-1.0, -1.1], ["Country", "France"], "the country", trusting)
    assert image_may_decide([-1.0, -1.1], ["Japan", "National flag"], "Japan", ImageConfig(scorer="s.pt"))


def test_the_picture_picks_among_the_senses_a_mention_names():
    from gemel.image.gates import image_mask

    senses = ["Nut (fruit)", "Nut (hardware)", "Hazelnut"]
    far_apart = [-7.0, -18.0, -14.0]  # the LLM's prior for the fruit, not the caption's evidence
    rule = ImageConfig(scorer="s.pt", max_text_margin=1.5, trust_exact_name=True, choose_sense=True)
    assert image_mask(far_apart, senses, "Nut", rule) == [True, True, False]
    assert image_mask(far_apart, senses, "nut ", rule) == [True, True, False]
    no_rule = ImageConfig(scorer="s.pt", max_text_margin=1.5, trust_exact_name=True)
    assert image_mask(far_apart, senses, "Nut", no_rule) is None  # the margin gate: the text decided
    assert image_mask(far_apart, ["Japan", "National flag"], "Japan", rule) is None  # one name: trusted
    assert image_mask([-1.0, -1.1], ["Country", "France"], "the country", rule) == [True, True]
    assert image_mask(far_apart, senses, None, rule) is None


def test_a_mention_also_names_the_longer_titles_it_ends():
    from gemel.image.gates import image_mask, names_as_head, names_sense

    assert names_as_head("mouse", "Computer mouse") and names_as_head("Hockey", "Ice hockey (sport)")
    assert names_as_head("Jordan", "Michael Jordan") and names_as_head("nut", "Brazil nut")
    assert not names_as_head("Congo", "Democratic Republic of the Congo")  # a phrase about Congo, no compound
    assert not names_as_head("Japan", "Empire of Japan") and not names_as_head("France", "Tour de France")
    assert not names_as_head("Congo", "Congo River") and not names_as_head("war", "World War II")
    assert not names_as_head("Mouse", "Mouse") and not names_as_head("", "Computer mouse")
    assert not names_as_head("use", "Computer mouse")  # whole words only
    assert names_sense("Mouse", "Mouse") and names_sense("Mouse", "Computer mouse")
    titles = ["Mouse", "Computer mouse", "Rat"]
    far_apart = [-3.0, -8.0, -9.0]  # "Mouse" is the animal's title: the text alone says the animal
    rule = ImageConfig(scorer="s.pt", max_text_margin=1.5, trust_exact_name=True, choose_sense=True)
    assert image_mask(far_apart, titles, "Mouse", rule) == [True, True, False]
    assert image_mask(far_apart, titles, "Mouse", ImageConfig(scorer="s.pt", max_text_margin=1.5,
                                                              trust_exact_name=True)) is None


def test_choose_gives_the_image_score_to_the_senses_only():
    from gemel.training.image_fit import ImageScored, choose

    r = ImageScored("x", "Nut (hardware)", ("Nut (fruit)", "Nut (hardware)", "Lock"), (-7.4, -17.9, -25.3),
                    (0.0, 0.0, 0.0), (0.4, 5.7, 8.0), (True, True, False), (-1, 2, 0), "groups", None, 0.9,
                    (True, True, False))
    gates = {"max_text_margin": 1.5, "trust_exact_name": True}
    assert choose(r, 6.0, 1, **gates) == "Nut (fruit)"  # 10.5 apart: the margin gate keeps the picture out
    assert choose(r, 6.0, 1, choose_sense=True, **gates) == "Nut (hardware)"
    assert choose(r, 6.0, 1) == "Lock"  # every gate open, the image's own candidate wins: -25.3 + 48
    assert choose(r, 0.0, 0, choose_sense=True, **gates) == "Nut (fruit)"


def test_choose_counts_the_longer_titles_a_mention_ends_as_senses():
    from gemel.training.image_fit import ImageScored, choose

    r = ImageScored("x", "Computer mouse", ("Mouse", "Computer mouse", "Head"), (-3.0, -8.0, -20.0),
                    (0.0, 0.0, 0.0), (4.9, 9.3, 9.5), (True, True, False), (-1, 1, 0), "groups", None, 0.95,
                    (True, False, False), (True, True, False))
    gates = {"max_text_margin": 1.5, "trust_exact_name": True}
    assert choose(r, 6.0, 1, **gates) == "Mouse"  # one exact name: trusted, the picture stays out
    assert choose(r, 6.0, 1, choose_sense=True, **gates) == "Computer mouse"  # -8 + 55.8 > -3 + 29.4
    old = ImageScored(*[getattr(r, f) for f in ("id", "gold", "names", "llm", "sim", "image", "text", "image_rank",
                                                 "stratum", "confidence", "flatness", "named")])
    assert choose(old, 6.0, 1, choose_sense=True, **gates) == "Mouse"  # records without senses: exact names only


def test_the_linker_scores_only_the_senses_with_the_picture(tiny_linker, scorer_file):  # noqa: F811
    from types import SimpleNamespace

    from gemel.generation.decoding import Hypothesis
    from gemel.linker import image_use

    query = tiny_linker.embedder.encode([TEXT])
    planet, element, apple = (tiny_linker.kb.index(t) for t in ("Mercury (planet)", "Mercury (element)", "Apple"))
    scores = np.zeros(len(tiny_linker.kb), np.float32)
    scores[element], scores[apple] = 1.0, 5.0
    hyps = [Hypothesis(tiny_linker.name_tokens(i), llm) for i, llm in ((planet, -1.0), (element, -30.0),
                                                                       (apple, -9.0))]
    linker = _with_image(tiny_linker, scorer_file, weight=100.0)
    image = {"max_text_margin": 1.0, "trust_exact_name": True}
    off = linker.replace(config=linker.config.replace(image=image))
    assert [c.name for c in off.rank(hyps, query, scores, mention="Mercury")][0] == "Mercury (planet)"
    on = linker.replace(config=linker.config.replace(image={**image, "choose_sense": True}))
    ranked = on.rank(hyps, query, scores, mention="Mercury")
    assert ranked[0].name == "Mercury (element)"
    assert {c.name: c.image_score for c in ranked} == {"Mercury (element)": 1.0, "Mercury (planet)": 0.0,
                                                       "Apple": None}
    qp = SimpleNamespace(image_scores=scores, image_note="")
    assert image_use(qp, ranked, 100.0) == ("on: how much the picture looks like each candidate counts, among the "
                                            "senses the mention names")
    assert on.rank(hyps, query, scores, mention="the planet")[0].name == "Mercury (planet)"  # no name: margin gate


def test_every_answer_says_how_the_image_score_took_part(tiny_linker, scorer_file, tmp_path):  # noqa: F811
    from demo.render import meta_html
    from gemel.cli.main import format_prediction

    drawing, photo = _saved_pictures(tmp_path)
    linker = _gated(tiny_linker, scorer_file, weight=2.0, candidates=2)
    assert linker.link(drawing, TEXT, MENTION).image == "on: how much the picture looks like each candidate counts"
    off = linker.link(photo, TEXT, MENTION)
    assert off.image == "off: a photo, and the picture scorer is trusted on drawings only"
    decided = linker.replace(config=linker.config.replace(image={"max_text_margin": 1e-9}))
    assert decided.link(drawing, TEXT, MENTION).image.startswith("off: the text decided")
    assert linker.link(None, TEXT, MENTION).image == "" and tiny_linker.link(drawing, TEXT, MENTION).image == ""
    assert off.to_dict()["image"] == off.image
    assert "the picture: <b>off: a photo" in meta_html(off.to_dict())
    assert "the picture: off: a photo" in format_prediction(off)
    assert "&lt;script&gt;" in meta_html({"profile": "p", "mapper": "m", "image": "<script>"})
