"""How names are compared, one rule everywhere: a name's key is its case-folded text with whitespace
collapsed ("New  York" and "new york" are one name), and a title's qualifier is its trailing "(...)"
("Mole (animal)" is the animal sense of the name "Mole")."""

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


def without_qualifier(title: str) -> str:
    """The title without its "(...)" qualifier ("Mole (animal)" -> "Mole"); a title that is nothing but a
    qualifier stays as it is."""
    return QUALIFIER.sub("", title) or title
