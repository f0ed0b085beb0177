"""Mention suggestions (capitalised word runs) and the caption segments the Link tab highlights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demo.mentions import STOPWORDS, MentionError, highlight_segments, resolve_mention, suggest_mentions

ROOT = Path(__file__).resolve().parent.parent


def surfaces(text: str) -> list[str]:
    return [s.surface for s in suggest_mentions(text)]


@pytest.mark.parametrize("text, expected", [
    ("Grace Hopper joined the U.S. Navy in 1943.", ["Grace Hopper", "U.S. Navy"]),
    ("The Beatles came from Liverpool.", ["Beatles", "Liverpool"]),
    ("He said The Beatles were great.", ["The Beatles"]),  # mid-sentence "The" is part of the name
    ("Mercury orbits the Sun.", ["Mercury", "Sun"]),
    ("She works at the Bank of America in Charlotte.", ["Bank of America", "Charlotte"]),
    ("Jobs and Wozniak founded Apple.", ["Jobs", "Wozniak", "Apple"]),
    ("An apple a day keeps the doctor away.", []),
    ("it was O'Neill's play, not AT&T's.", ["O'Neill's", "AT&T's"]),
    ("", []),
])
def test_examples(text, expected):
    assert surfaces(text) == expected


def test_finds_most_capitalised_gold_mentions_of_the_shipped_examples():
    lines = (ROOT / "gemel" / "assets" / "seed" / "examples.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    capitalised = [r for r in records if r["mention"][:1].isupper() and " " not in r["mention"]]
    found = [r for r in capitalised if r["mention"] in surfaces(r["text"])
             or any(r["mention"] in s for s in surfaces(r["text"]))]
    assert len(found) >= 0.8 * len(capitalised)


def test_limit():
    text = " ".join(f"Name{i} x" for i in range(50))
    assert len(suggest_mentions(text, max_spans=7)) == 7


def test_refuses_non_text():
    with pytest.raises(TypeError, match="must be a str"):
        suggest_mentions(None)  # type: ignore[arg-type]


text_strategy = st.lists(st.sampled_from(list("AaBbTtHe U.S'-,.!?\n") + ["The ", "of ", "An ", "Jo", "IBM"]),
                         max_size=40).map("".join)


@given(text_strategy)
def test_spans_are_exact_ordered_and_disjoint(text):
    spans = suggest_mentions(text)
    for s in spans:
        assert text[s.start:s.end] == s.surface and s.surface[:1].isupper()
        assert s.surface not in STOPWORDS and s.surface == s.surface.strip()
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))


@given(text_strategy, st.integers(0, 10), st.integers(0, 10))
def test_segments_rebuild_the_text_and_mark_the_mention(text, i, n):
    mention = text[i:i + n].strip()
    segments = highlight_segments(text, mention)
    assert "".join(seg for seg, _ in segments) == text
    assert all(label in (None, "mention", "suggestion") for _, label in segments)
    marked = [seg for seg, label in segments if label == "mention"]
    assert marked == ([mention] if mention and mention in text else [])
    assert all(seg for seg, _ in segments)  # no empty segment


# ---------------------------------------------------------------------------------------------- typed mentions
@pytest.mark.parametrize("text, mention, expected", [
    ("I love paris in spring", "paris", "paris"),  # verbatim: as typed
    ("I love paris in spring", "Paris", "paris"),  # one span ignoring case: the caption's spelling
    ("paris, then paris again", "PARIS", "paris"),  # two spans, one spelling: still unambiguous
    ("Grace Hopper joined the U.S. Navy.", "u.s. navy", "U.S. Navy"),
    ("", "Paris", "Paris"),  # blank caption or mention: left to the linker's own sentence
    ("I love paris", "  ", "  "),
])
def test_resolve_mention(text, mention, expected):
    assert resolve_mention(text, mention) == expected


@pytest.mark.parametrize("text, mention, suggestion", [
    ("Paris is not PARIS", "paris", "'Paris'"),  # two spellings: the first is offered, nothing is guessed
    ("I love paris in spring", "Pariss", "'paris'"),  # a typo: the closest words
    ("Grace Hopper joined the Navy.", "Grace Hoper", "'Grace Hopper'"),
])
def test_a_mention_not_in_the_caption_gets_one_suggestion(text, mention, suggestion):
    with pytest.raises(MentionError) as err:
        resolve_mention(text, mention)
    message = str(err.value)
    assert message.count("did you mean") == 1 and message.endswith(f"did you mean {suggestion}?")
    assert repr(mention) in message
    assert ("(case matters)" in message) == (suggestion.strip("'").lower() == mention.lower())


def test_a_mention_unlike_any_words_gets_no_suggestion():
    with pytest.raises(MentionError, match=r"mention 'Turing' does not occur in the caption 'Hopper .*click a "
                                           r"highlighted span") as err:
        resolve_mention("Hopper wrote the first compiler.", "Turing")
    assert "did you mean" not in str(err.value)


@given(text_strategy, st.integers(0, 10), st.integers(1, 10))
def test_resolved_mentions_are_spans_of_the_caption(text, i, n):
    mention = text[i:i + n].swapcase()
    try:
        resolved = resolve_mention(text, mention)
    except MentionError as e:
        assert "did you mean" in str(e) or "click a highlighted span" in str(e)
        return
    assert resolved in text or not text.strip() or not mention.strip()
    assert resolved.lower() == mention.lower()
