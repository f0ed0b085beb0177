"""The product's first promise on the real offline default: with a caption that leaves the sense open, the
picture decides. One caption, several pictures, a different right answer for each; a text-only linker gives one
answer for all of them. Under the fused-score rule with its gates (the default), whose own mechanics the later
tests check, and under the shipped learned ranker.

The pictures are drawn here (flat stripes and a disc, as a user's screenshot of a flag would be; a hex nut and an
acorn), so no picture of the scorer's corpus or of the seed pool is involved; the captions name no country, and
"Nut" names both of its senses.
"""

from __future__ import annotations

import math

import pytest
from PIL import Image, ImageDraw

pytestmark = pytest.mark.offline_model
CAPTION, MENTION = "This is the flag of the country.", "the country"


def _stripes(colours, vertical=True, size=(300, 200)) -> Image.Image:
    im = Image.new("RGB", size)
    draw, n = ImageDraw.Draw(im), len(colours)
    for i, c in enumerate(colours):
        box = [i * size[0] // n, 0, (i + 1) * size[0] // n, size[1]] if vertical else \
            [0, i * size[1] // n, size[0], (i + 1) * size[1] // n]
        draw.rectangle(box, fill=c)
    return im


def _disc() -> Image.Image:
    im = Image.new("RGBA", (300, 200), (255, 255, 255, 255))
    ImageDraw.Draw(im).ellipse([90, 40, 210, 160], fill=(188, 0, 45, 255))
    return im


def _hex_nut() -> Image.Image:
    im = Image.new("RGB", (256, 256), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    corners = [(128 + 100 * math.cos(math.pi / 3 * k), 128 + 100 * math.sin(math.pi / 3 * k)) for k in range(6)]
    draw.polygon(corners, fill=(150, 150, 160), outline=(60, 60, 70))
    draw.ellipse([78, 78, 178, 178], fill=(255, 255, 255), outline=(60, 60, 70))
    return im


def _acorn() -> Image.Image:
    im = Image.new("RGB", (256, 256), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    draw.ellipse([70, 90, 186, 230], fill=(190, 120, 50))
    draw.pieslice([60, 50, 196, 150], 180, 360, fill=(110, 70, 30))
    draw.rectangle([122, 30, 134, 60], fill=(90, 60, 20))
    return im


FLAGS = {
    "France": _stripes([(0, 35, 149), (255, 255, 255), (237, 41, 57)]),
    "Italy": _stripes([(0, 146, 70), (255, 255, 255), (206, 43, 55)]),
    "Germany": _stripes([(0, 0, 0), (221, 0, 0), (255, 206, 0)], vertical=False),
    "Japan": _disc(),
}


PICTURE_FEATURES = {"image_drawing", "image_prob", "image_top"}  # what the image scorer says of a candidate


@pytest.fixture(scope="module")
def rule(offline_rule):
    """The fused score with its gates (``[rank] model = ""``)."""
    assert offline_rule.ranker is None
    return offline_rule


@pytest.fixture(scope="module")
def ranked(offline_linker):
    """The offline default: the shipped learned ranker decides."""
    assert offline_linker.config.rank.model == "../assets/models/ranker.json"
    return offline_linker


def test_the_ranker_links_the_same_caption_with_different_flags_to_different_countries(ranked):
    assert ranked.ranker is not None
    text_only = ranked.link(None, CAPTION, MENTION).entity
    answers = {country: ranked.link(flag, CAPTION, MENTION) for country, flag in FLAGS.items()}
    assert {c: p.entity for c, p in answers.items()} == {c: c for c in FLAGS}
    assert text_only not in FLAGS
    for country, pred in answers.items():
        top = pred.candidates[0]
        assert top.probability > 0.5 and max(top.contributions, key=top.contributions.get) in PICTURE_FEATURES
        assert pred.image == "weighed by the ranker, as a drawing"


def test_the_ranker_keeps_a_named_mention_and_reads_the_acorn(ranked):
    named = ranked.link(FLAGS["France"], "The flag of Japan was adopted in 1870.", "Japan")
    assert named.entity == "Japan"
    assert ranked.link(_acorn(), "We saw Nut on the way home.", "Nut").entity == "Nut (fruit)"


def test_the_same_caption_with_different_flags_links_to_different_countries(rule):
    text_only = rule.link(None, CAPTION, MENTION).entity
    answers = {country: rule.link(flag, CAPTION, MENTION) for country, flag in FLAGS.items()}
    assert {c: p.entity for c, p in answers.items()} == {c: c for c in FLAGS}
    assert text_only not in FLAGS  # the text alone cannot know (it says "National flag" today)
    for country, pred in answers.items():
        top = pred.candidates[0]
        assert top.name == country and top.image_score is not None and top.image_score > 3.0
        assert pred.image.startswith("on: how much the picture looks like")


def test_a_photo_gets_no_image_share_and_a_named_mention_is_not_overruled(rule):
    from matplotlib import cbook

    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    assert rule.image_scores(photo) is None  # a photo: the scorer, trained on drawings, stays out
    named = rule.link(FLAGS["France"], "The flag of Japan was adopted in 1870.", "Japan")
    assert named.entity == "Japan"  # the text has decided; the French flag in the picture does not overrule it
    assert named.image.startswith("off: the text decided")
    assert rule.link(photo, "Hopper led the team.", "Hopper").image.startswith("off: a photo")


def test_the_picture_picks_the_sense_of_a_shared_name(rule):
    caption, mention = "We saw Nut on the way home.", "Nut"
    assert rule.link(None, caption, mention).entity == "Nut (fruit)"  # the words favour the fruit
    nut = rule.link(_hex_nut(), caption, mention)
    assert nut.entity == "Nut (hardware)" and "among the senses the mention names" in nut.image
    assert rule.link(_acorn(), caption, mention).entity == "Nut (fruit)"
    # the senses: the two titles named "Nut", and the kind of nut the compound names
    assert {c.name for c in nut.candidates if c.image_score is not None} == {"Nut (fruit)", "Nut (hardware)",
                                                                            "Brazil nut"}
    without_rule = rule.replace(config=rule.config.replace(image={"choose_sense": False}))
    assert without_rule.link(_hex_nut(), caption, mention).entity == "Nut (fruit)"  # the text's margin kept it out


def test_the_name_s_prior_is_removed_before_the_picture_picks_the_sense(rule):
    """The LLM's ~10-nat preference for the fruit is the bare name's, not the caption's; the profile's share of
    it is taken out, and the fused scores move by exactly that."""
    caption, mention = "We saw Nut on the way home.", "Nut"
    share = rule.config.image.remove_sense_prior
    assert 0 < share <= 1
    nut = rule.link(_hex_nut(), caption, mention)
    by = {c.name: c for c in nut.candidates}
    fruit, hardware = by["Nut (fruit)"], by["Nut (hardware)"]
    name_prefers_fruit = (fruit.sense_prior - hardware.sense_prior) / share
    assert name_prefers_fruit > 5  # the bare "Nut" prefers the fruit ...
    assert abs((fruit.llm_logprob - hardware.llm_logprob) - name_prefers_fruit) < 3  # ... as much as the caption
    assert by["Brazil nut"].sense_prior is not None
    assert sum(c.sense_prior for c in nut.candidates if c.sense_prior is not None) == pytest.approx(0, abs=1e-6)
    assert nut.image.endswith("(the word's usual sense set aside)")
    plain = rule.replace(config=rule.config.replace(image={"remove_sense_prior": 0.0}))
    before = {c.name: c.score for c in plain.link(_hex_nut(), caption, mention).candidates}
    assert all(c.sense_prior is None for c in plain.link(_hex_nut(), caption, mention).candidates)
    for c in nut.candidates:
        assert c.score == pytest.approx(before[c.name] - (c.sense_prior or 0.0), abs=1e-3)
    assert all(c.sense_prior is None for c in rule.link(None, caption, mention).candidates)  # no picture
