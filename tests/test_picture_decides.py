"""The product's first promise on the real offline default: with a caption that leaves the sense open, the
picture decides. One caption, several pictures, a different right answer for each; a text-only linker gives one
answer for all of them. The shipped learned ranker decides.

The pictures are drawn here (flat stripes and a disc, as a user's screenshot of a flag would be; an acorn), so no picture of the scorer's corpus or of the seed pool is involved; the captions name no country, and
"Nut" names both of its senses.
"""

from __future__ import annotations

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
