"""Mention suggestions: the spans of a caption a person is likely to want linked.

Named entities in English captions are mostly runs of capitalised words ("Grace Hopper", "U.S. Navy",
"Bank of America"), the cue that classic NER baselines and the WikiDiverse / WikiMEL annotation guides rely
on. A regex over capitalised word runs (joined by a few lowercase connectors such as "of" and "de") finds
them; sentence-initial function words ("The", "An", "In" ...) are dropped. The UI highlights the spans and a
click on one fills the mention box. A typed mention is checked against the caption before the linker sees it
(`resolve_mention`): the linker wants the caption's exact spelling, people type "Paris" for "paris". Pure
functions, no UI imports.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

_WORD = r"[A-Z][\w'’.&-]*"  # a capitalised word, possibly "U.S." or "O'Neill" or "AT&T"
_CONNECTOR = r"(?:of|the|de|du|des|von|van|der|den|la|le|del|della|da|di|al|bin|ibn)"
_SPAN = re.compile(rf"(?<![\w'’])({_WORD}(?:\s+(?:{_CONNECTOR}\s+)*{_WORD})*)")

# Capitalised only because they start a sentence: never suggested on their own.
STOPWORDS = frozenset("""
A An The This That These Those It Its He She His Her They Their Them We Our You Your I My Me
In On At By For From With Without Into Onto Of To As And But Or Nor So Yet If When While Where Why How What
Who Whom Whose Which There Here Then Than After Before During Since Until Upon About Above Below Under Over
Between Among Through Across Some Many Most Much More Few All Any Each Every Both No Not One Two Three
Is Are Was Were Be Been Has Have Had Do Does Did Can Could Will Would Shall Should May Might Must
""".split())


@dataclass(frozen=True)
class Span:
    """A suggested mention: ``text[start:end] == surface``."""

    start: int
    end: int
    surface: str


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop a trailing sentence period ("Sun." -> "Sun") but keep abbreviations ("U.S.")."""
    if text[end - 1] == "." and "." not in text[start:end - 1]:
        end -= 1
    return start, end


def _drop_leading_stopwords(text: str, start: int, end: int) -> tuple[int, int]:
    """"The Beatles" stays whole only when "The" is mid-sentence; at a sentence start it is dropped."""
    while True:
        word_end = text.find(" ", start, end)
        if word_end < 0:
            return start, end
        first = text[start:word_end]
        if first not in STOPWORDS or not _sentence_start(text, start):
            return start, end
        start = word_end + 1
        while start < end and text[start].isspace():
            start += 1


def _sentence_start(text: str, i: int) -> bool:
    before = text[:i].rstrip()
    return not before or before[-1] in ".!?:;\"“(«"


def suggest_mentions(text: str, max_spans: int = 20) -> list[Span]:
    """Capitalised word runs of ``text``, left to right, non-overlapping, without lone sentence-initial
    function words; at most ``max_spans``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    spans: list[Span] = []
    for m in _SPAN.finditer(text):
        start, end = _trim(text, *m.span(1))
        start, end = _drop_leading_stopwords(text, start, end)
        surface = text[start:end]
        if surface in STOPWORDS or not surface[:1].isupper():
            continue
        spans.append(Span(start, end, surface))
        if len(spans) == max_spans:
            break
    return spans


def highlight_segments(text: str, mention: str = "", max_spans: int = 20) -> list[tuple[str, str | None]]:
    """``text`` cut into (segment, label) pairs for ``gr.HighlightedText``: label "mention" for the current
    mention's first occurrence, "suggestion" for suggested spans, None for the rest. Joining the segments
    gives back ``text``."""
    marks: list[tuple[int, int, str]] = []
    pos = text.find(mention) if mention else -1
    if pos >= 0:
        marks.append((pos, pos + len(mention), "mention"))
    for s in suggest_mentions(text, max_spans):
        if all(s.end <= a or s.start >= b for a, b, _ in marks):
            marks.append((s.start, s.end, "suggestion"))
    out: list[tuple[str, str | None]] = []
    cursor = 0
    for start, end, label in sorted(marks):
        if start > cursor:
            out.append((text[cursor:start], None))
        out.append((text[start:end], label))
        cursor = end
    if cursor < len(text):
        out.append((text[cursor:], None))
    return out


class MentionError(ValueError):
    """A typed mention is not a span of the caption; the message offers the closest span when there is one."""


_WORDS = re.compile(r"\w[\w'’.&-]*")
MIN_SIMILARITY = 0.75  # difflib ratio (ignoring case) below which a span is no typo of the mention ("Turing" and
# "spring" score 0.67, "Pariss" and "paris" 0.91)


def case_insensitive_spans(text: str, mention: str) -> list[str]:
    """The caption's spellings of ``mention`` ignoring case, left to right ("paris" in "I love paris")."""
    return [m.group(0) for m in re.finditer(re.escape(mention), text, re.IGNORECASE)] if mention else []


def closest_span(text: str, mention: str) -> str | None:
    """The run of caption words (as many as the mention has) most like ``mention`` ignoring case, or None when
    none reaches `MIN_SIMILARITY` ("Pariss" -> "paris"; "Turing" in a caption about Hopper -> None)."""
    words = [m.span() for m in _WORDS.finditer(text)]
    n = max(1, len(_WORDS.findall(mention)))
    runs = [text[words[i][0]:words[i + n - 1][1]] for i in range(len(words) - n + 1)]
    scored = [(difflib.SequenceMatcher(None, mention.lower(), r.lower()).ratio(), -i, r) for i, r in enumerate(runs)]
    best = max(scored, default=None)
    return best[2] if best is not None and best[0] >= MIN_SIMILARITY else None


def resolve_mention(text: str, mention: str) -> str:
    """The mention as the caption spells it, for the linker (which wants an exact, case-sensitive substring):
    ``mention`` itself when it occurs verbatim; the caption's spelling when ignoring case finds one spelling
    ("Paris" in "I love paris in spring" -> "paris"); else `MentionError` offering one suggestion ("did you
    mean 'paris'?"). A blank caption or mention is returned as given: the linker's check names those."""
    if not text.strip() or not mention.strip() or mention in text:
        return mention
    spellings = case_insensitive_spans(text, mention)
    if len(set(spellings)) == 1:
        return spellings[0]
    suggestion = spellings[0] if spellings else closest_span(text, mention)
    if suggestion is not None:
        case = " (case matters)" if suggestion.lower() == mention.lower() else ""
        raise MentionError(f"mention {mention!r} does not occur in the caption as typed{case}; "
                           f"did you mean {suggestion!r}?")
    raise MentionError(f"mention {mention!r} does not occur in the caption {text[:80]!r}: type words of the "
                       "caption as it spells them, or click a highlighted span")
