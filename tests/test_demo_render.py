"""HTML fragments: everything from people or the KB is escaped; bars, cards and tables say what they should."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demo import render
from gemel.kb.entities import Entity

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def no_markup_from(value: str, html: str) -> bool:
    """The raw value does not appear in the HTML, and no tag it carries survives."""
    return "<script" not in html and "<img src=x" not in html and (not re.search(r"[<>\"]", value) or value not in html)


@given(st.text(max_size=40), st.text(max_size=10))
def test_mention_html_escapes_everything(text, mention):
    html = render.mention_html(text, mention)
    stripped = html.replace('<mark class="gemel-mention">', "").replace("</mark>", "")
    assert "<" not in stripped and ">" not in stripped
    assert html.count("<mark") == (1 if mention and mention in text else 0)


@pytest.mark.parametrize("fragment", [
    lambda: render.entity_card(Entity(EVIL, EVIL, EVIL, (EVIL,)), EVIL),
    lambda: render.entity_card(None, EVIL),
    lambda: render.candidate_bars([{"name": EVIL, "score": 1.0, "description": EVIL}], EVIL),
    lambda: render.demonstrations_html([{"text": EVIL + " x", "mention": "x", "entity": EVIL, "image": None,
                                         "similarity": 0.5, "source": EVIL}]),
    lambda: render.meta_html({"profile": EVIL, "mapper": EVIL, "timings": {"total": 0.1}}),
    lambda: render.counts_table({EVIL: {"accept": 2}}),
    lambda: render.status_html(EVIL),
])
def test_fragments_escape_user_and_kb_text(fragment):
    html = fragment()
    assert no_markup_from(EVIL, html)
    assert "&lt;script&gt;" in html


def test_entity_card():
    e = Entity("Grace Hopper", "American computer scientist",
               "Grace Brewster Hopper was an American computer scientist. She was a pioneer. She led a team. More.")
    html = render.entity_card(e, "Grace Hopper")
    assert "Grace Hopper" in html and "American computer scientist" in html
    assert "She led a team." in html and "More." not in html  # the first three sentences
    assert 'href="https://en.wikipedia.org/wiki/Grace_Hopper"' in html and 'rel="noopener noreferrer"' in html
    assert "Also called" not in html
    html = render.entity_card(Entity("Candy", "Sweet confection", aliases=("sweets", "lollies")), "Candy")
    assert "Also called: sweets, lollies" in html  # why the mention "sweets" named it


def test_nil_card():
    assert render.NIL_TEXT in render.entity_card(None, None) and "not in the KB (below threshold)" == render.NIL_TEXT


@pytest.mark.parametrize("title, url", [
    ("Mercury (planet)", "https://en.wikipedia.org/wiki/Mercury_(planet)"),
    ('A"B<C>', "https://en.wikipedia.org/wiki/A%22B%3CC%3E"),
    ("Café", "https://en.wikipedia.org/wiki/Caf%C3%A9"),
])
def test_wiki_url(title, url):
    assert render.wiki_url(title) == url


def test_lead_cuts_long_extracts():
    text = "word " * 500
    out = render.lead(text, max_chars=100)
    assert len(out) <= 102 and out.endswith("…")


@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=9))
def test_bars_are_ordered_like_the_scores(scores):
    cands = [{"name": f"E{i}", "score": s, "llm_logprob": s / 2, "retrieval_sim": 0.5} for i, s in enumerate(scores)]
    html = render.candidate_bars(cands, "E0")
    widths = [float(w) for w in re.findall(r'style="width:([0-9.]+)%"', html)]
    assert len(widths) == len(scores)
    assert all(8.0 - 1e-6 <= w <= 100.0 + 1e-6 for w in widths)
    for (a, wa), (b, wb) in zip(zip(scores, widths), zip(scores[1:], widths[1:])):
        assert (a < b or wa >= wb) and (a > b or wa <= wb)  # a higher score never gets a shorter bar
    assert html.count("<kbd>") == len(scores)


def test_bars_show_the_score_as_the_sum_of_its_parts_in_words():
    html = render.candidate_bars([{"name": "A", "score": -1.5, "llm_logprob": -2.25, "retrieval_sim": 0.375,
                                   "contributions": {"llm": -2.25, "retrieval": 0.75, "prior": 0.0}}], "A")
    assert "score -1.50 = language model -2.25 · description match +0.75" in html and "gemel-chosen" in html
    assert "usual sense" not in html  # a part that adds nothing is not shown
    assert "No candidates" in render.candidate_bars([], None)


def test_bars_mark_candidates_the_picture_scorer_never_saw():
    cands = [{"name": "Jaguar", "score": 1.0, "contributions": {"image": 2.0}},
             {"name": "Jaguar Cars", "score": 0.5, "contributions": {"image": -1.0}}]
    html = render.candidate_bars(cands, "Jaguar", picture_unknown=["Jaguar Cars"])
    assert html.count("picture unknown</span>") == 1 and html.index("picture unknown") > html.index("Jaguar Cars")
    assert "never seen this entity" in html
    assert "picture unknown" not in render.candidate_bars(cands, "Jaguar")


def test_demonstrations_with_and_without_photos(tmp_path):
    from PIL import Image

    photo = tmp_path / "p.png"
    Image.new("RGB", (400, 300), (10, 200, 10)).save(photo)
    demos = [{"text": "Hopper wrote code.", "mention": "Hopper", "entity": "Grace Hopper", "image": str(photo),
              "similarity": 0.2, "source": "seed"},
             {"text": "The Moon rose.", "mention": "Moon", "entity": "Moon", "image": None, "similarity": 0.9,
              "source": "kb"},
             {"text": "Gone.", "mention": "Gone", "entity": "Moon", "image": str(tmp_path / "missing.png"),
              "similarity": 0.1}]
    html = render.demonstrations_html(demos)
    assert html.count('src="data:image/jpeg;base64,') == 1 and html.count("text only") == 2
    assert html.index("rose.") < html.index("wrote code.")  # most similar first
    assert str(tmp_path) not in html  # no server path reaches the page
    assert '<mark class="gemel-mention">Hopper</mark>' in html and "sim 0.900" in html


def test_thumbnail_is_small(tmp_path):
    import base64
    import io

    from PIL import Image

    photo = tmp_path / "big.png"
    Image.new("RGB", (1600, 900)).save(photo)
    uri = render.thumbnail_uri(str(photo), size=120)
    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert max(im.size) == 120
    assert render.thumbnail_uri(str(tmp_path / "nope.png")) is None
    bad = Path(tmp_path / "bad.png")
    bad.write_text("x")
    assert render.thumbnail_uri(str(bad)) is None


def test_progress_and_tables():
    html = render.progress_html({"total": 4, "done": 1, "skipped": 1, "left": 3})
    assert "<b>1</b> done / <b>4</b>" in html and "width:25.0%" in html
    assert "No decisions" in render.counts_table({})
    table = render.counts_table({"bob": {"nil": 1}, "alice": {"accept": 2, "search": 1}})
    assert table.index("alice") < table.index("bob") and "<b>3</b>" in table
    agree = render.agreement_html({"items": 2, "annotators": ["a", "b"], "percent_agreement": 50.0,
                                   "fleiss_kappa": None, "cohen_kappa": 0.25, "disagreements": 1})
    assert "50.0%" in agree and "Cohen κ <b>0.250</b>" in agree and "Fleiss κ <b>–</b>" in agree
    assert "two or more" in render.agreement_html({"items": 0})
    one = render.agreement_html({"items": 1, "annotators": ["a", "b"], "disagreements": 1})
    assert "1 shared input ·" in one and "2 annotators" in one and "1 disagreement<" in one


def test_ranker_candidates_show_probability_and_their_largest_contributions():
    from demo.render import candidate_bars

    cands = [{"name": "Japan", "score": 2.0, "probability": 0.8, "llm_logprob": -3.0, "retrieval_sim": 0.5,
              "contributions": {"name_exact": 1.5, "llm_sum": 0.4, "image_top": -0.1, "memory_sim": 0.0}},
             {"name": "Tokyo", "score": 0.6, "probability": 0.2, "llm_logprob": -2.0, "retrieval_sim": 0.6,
              "contributions": {"name_exact": -0.5, "llm_sum": 0.9, "image_top": 0.2}}]
    html = candidate_bars(cands, "Japan")
    assert "p 0.800 · named exactly +1.50 · language model +0.40 · picture&#x27;s best match -0.10" in html
    assert "width:80.0%" in html and "name_exact" not in html
