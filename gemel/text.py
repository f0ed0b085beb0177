"""How names are compared, one rule everywhere: a name's key is its case-folded text with whitespace
collapsed ("New  York" and "new york" are one name), and a title's qualifier is its trailing "(...)"
("Mole (animal)" is the animal sense of the name "Mole"); and whether a mention names a title exactly or as the
last words of a compound (the senses of a shared name). A mention may name a title in either of its
:func:`name_forms`: as written, or without a "the" before a capitalised name ("the Moon" names ``Moon``)."""

from __future__ import annotations

import re

QUALIFIER = re.compile(r"\s*\([^)]*\)\s*$")  # a title's trailing "(...)", with the spaces around it
# words that make the rest of a title a phrase about a name, not a compound naming a kind of it: "Republic of
# the Congo" is not a kind of Congo, "Computer mouse" is a kind of mouse
NOT_A_MODIFIER = frozenset("of the a an and in on at for to by de du des la le les del della di da von van der den "
                           "ibn bin al el y et und &".split())


def name_key(name: str) -> str:
    """How names are compared for look-ups and the name rules: case-folded, whitespace collapsed."""
    return " ".join(name.casefold().split())


# English plurals no ending rule undoes (a "-ves" plural may come from "-f", "-fe" or "-ve": wolves, knives, waves)
IRREGULAR_PLURALS: dict[str, str] = {
    "calves": "calf", "elves": "elf", "halves": "half", "hooves": "hoof", "knives": "knife", "leaves": "leaf",
    "lives": "life", "loaves": "loaf", "scarves": "scarf", "sheaves": "sheaf", "shelves": "shelf",
    "thieves": "thief", "wives": "wife", "wolves": "wolf", "children": "child", "feet": "foot", "geese": "goose",
    "lice": "louse", "men": "man", "mice": "mouse", "oxen": "ox", "teeth": "tooth", "women": "woman",
}


def singular(word: str) -> str:
    """An English plural's singular by its ending, for name look-ups ("galaxies" -> "galaxy", "birds" ->
    "bird", "grasses" -> "grass", "churches" -> "church"), or by :data:`IRREGULAR_PLURALS` ("wolves" -> "wolf",
    "mice" -> "mouse"); words ending in "ss", "us", "is" and words of under four letters stay. It only has to map
    a plural and its singular to one key."""
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if len(word) < 4 or word.endswith(("ss", "us", "is")) or not word.endswith("s"):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    return word[:-1]


def match_key(name: str) -> str:
    """How a mention is matched to a name (title, surface name, alias): :func:`name_key` with its last word
    made singular, so that "Birds" names ``Bird`` and "grass" the alias "grasses"."""
    words = name_key(name).split()
    return " ".join(words[:-1] + [singular(words[-1])]) if words else ""


def without_qualifier(title: str) -> str:
    """The title without its "(...)" qualifier ("Mole (animal)" -> "Mole"); a title that is nothing but a
    qualifier stays as it is."""
    return QUALIFIER.sub("", title) or title


def name_forms(mention: str) -> tuple[str, ...]:
    """The forms in which a mention may name a title: as written, and, when it is "the" before a capitalised
    word, without that article ("the Moon" names ``Moon``, "the Beatles" still names ``The Beatles``). Before a
    lowercase word the article stays: "the country" is a description, not a name, and names no title."""
    words = mention.split()
    if len(words) > 1 and words[0].casefold() == "the" and words[1][:1].isupper():
        return mention, " ".join(words[1:])
    return (mention,)


def mention_keys(mention: str) -> tuple[str, ...]:
    """The :func:`match_key` of each of the mention's :func:`name_forms` (the empty key left out)."""
    return tuple(k for k in dict.fromkeys(map(match_key, name_forms(mention))) if k)


def names_exactly(mention: str, title: str) -> bool:
    """Whether the mention is the title, or the title without its "(...)" qualifier, up to case and spaces
    ("Japan" names ``Japan``; "Nut" names both ``Nut (fruit)`` and ``Nut (hardware)``; "the country" names no
    title: articles are kept, so a description is not taken for a name; "the Moon" names ``Moon``:
    :func:`name_forms`), a plural as its singular ("Birds" names ``Bird``: :func:`match_key`)."""
    keys = (match_key(title), match_key(without_qualifier(title)))
    return any(m in keys for m in mention_keys(mention))


def names_as_head(mention: str, title: str) -> bool:
    """Whether the title is a compound ending in the mention, its "(...)" qualifier dropped, up to case and
    spaces: English compounds name their kind last, so "mouse" names ``Computer mouse`` (and ``Mickey Mouse``),
    "hockey" ``Ice hockey``, "nut" ``Brazil nut``, "Jordan" ``Michael Jordan``. A phrase about the mention is no
    compound: "Japan" does not name ``Empire of Japan``, nor "Congo" ``Republic of the Congo``, nor "France"
    ``Tour de France`` (:data:`NOT_A_MODIFIER`); and "war" does not name ``World War II``, nor "Congo"
    ``Congo River``. Either of the mention's :func:`name_forms` may be the head."""
    t = match_key(without_qualifier(title)).split()
    return any(0 < len(m) < len(t) and t[-len(m):] == m and t[-len(m) - 1] not in NOT_A_MODIFIER
               for m in (key.split() for key in mention_keys(mention)))


def names_sense(mention: str, title: str) -> bool:
    """Whether the title is one of the senses the mention names: exactly (:func:`names_exactly`) or as its last
    words (:func:`names_as_head`)."""
    return names_exactly(mention, title) or names_as_head(mention, title)
