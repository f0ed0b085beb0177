"""Mentions that are not verbatim in their text: where they are (`locate_mention`), what to link
(`linkable_mention`) and what the readers record of them (`mention_meta`).

2.9% of WikiMEL's mentions are not verbatim in their text (e.g. "Hermann Beckerath" in "Hermann von
Beckerath."; WikiDiverse has "HDTB" at the offsets of "HDTV"); the readers read them as given: the official GEMEL
prompt uses the mention as given and never looks for it in the text. Such an example has ``meta["verbatim"] =
False`` and ``meta["mention_span"] = [start, end]``, the closest span of the text (`locate_mention`), which
`linkable_mention` returns; `gemel eval` and `gemel train` prompt such a mention as given (the official code's
way, `Linker.link(..., verbatim=False)`); the check for people's queries stays strict. Each file's count is
logged (`gemel.data.formats.records`); `gemel.data.readers.summarize` gives the counts `gemel eval` and `gemel
train` print.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from gemel.data.formats.errors import DatasetFormatError
from gemel.types import Example

_WORD_RE = re.compile(r"\w+")


def locate_mention(text: str, mention: str) -> tuple[int, int]:
    """The character span of ``mention`` in ``text``: where it occurs, else where it occurs ignoring case, else
    the shortest run of words from the mention's first word to its last (ignoring case, at most twice its words
    and two more), else the run of words most similar to it (difflib's ratio, ignoring case). "Hermann
    Beckerath" in "Hermann von Beckerath." gives the span of "Hermann von Beckerath"; a text without any word
    gives its whole span."""
    start = text.find(mention)
    if start >= 0:
        return start, start + len(mention)
    found = re.search(re.escape(mention), text, re.IGNORECASE)
    if found:
        return found.span()
    words = [m.span() for m in _WORD_RE.finditer(text)]
    if not words:
        return 0, len(text)
    return _first_to_last_word(text, words, mention) or _closest_words(text, words, mention)


def _first_to_last_word(text: str, words: list[tuple[int, int]], mention: str) -> tuple[int, int] | None:
    """The run of words from the mention's first word to its last (2+ words) holding most of its words, then
    the shortest: "John Fletcher Moulton, Baron Moulton" for "John Fletcher Moulton Baron Moulton"."""
    wanted = [w.lower() for w in _WORD_RE.findall(mention)]
    if len(wanted) < 2:
        return None
    lowered = [text[a:b].lower() for a, b in words]
    runs = [(-len(set(wanted) & set(lowered[i:j + 1])), j - i, i, j) for i, w in enumerate(lowered)
            if w == wanted[0] for j in range(i + 1, min(len(words), i + 2 * len(wanted) + 2))
            if lowered[j] == wanted[-1]]
    if not runs:
        return None
    *_, i, j = min(runs)
    return words[i][0], words[j][1]


def _closest_words(text: str, words: list[tuple[int, int]], mention: str) -> tuple[int, int]:
    n = max(1, len(_WORD_RE.findall(mention)))
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(mention.lower())
    best, best_score = (words[0][0], words[0][1]), -1.0
    for size in range(max(1, n - 1), min(len(words), n + 2) + 1):
        for i in range(len(words) - size + 1):
            span = (words[i][0], words[i + size - 1][1])
            matcher.set_seq1(text[span[0]:span[1]].lower())
            if matcher.real_quick_ratio() > best_score and matcher.quick_ratio() > best_score:
                score = matcher.ratio()
                if score > best_score:
                    best, best_score = span, score
    return best


def linkable_mention(example: Example) -> str:
    """The words of ``example.text`` to give `Linker.link`: the mention when it occurs in the text, else the
    text at ``meta["mention_span"]`` (the closest span; located now when the example does not carry it)."""
    if example.mention in example.text:
        return example.mention
    start, end = example.meta.get("mention_span") or locate_mention(example.text, example.mention)
    return example.text[start:end]


def mention_meta(path: Path, where: str, text: str, mention: str,
                  offsets: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """``{}`` for a mention verbatim in the text (at its offsets, when given); else ``verbatim: False`` and the
    ``mention_span`` (the offsets, or the closest span). Offsets that do not fit the text are an error."""
    if offsets is not None:
        start, end = offsets
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in offsets) and 0 <= start < end <= len(text)
        if not ok:
            raise DatasetFormatError(path, where, f"offsets (start, end)={tuple(offsets)!r} of mention {mention!r} "
                                                  f"do not fit a text of {len(text)} characters; fix or drop them")
        return {} if text[start:end] == mention else {"verbatim": False, "mention_span": [start, end]}
    if mention in text:
        return {}
    return {"verbatim": False, "mention_span": list(locate_mention(text, mention))}
