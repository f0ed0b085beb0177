"""KB names as the LLM spells them and as a mention names them: the token ids of a built KB's titles, made on
first use, with the reverse map from token ids to rows; the alias of an entity that a mention is; and whether a
mention names a title exactly or as the last words of a compound (the senses of a shared name)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gemel.kb.entities import Entity
from gemel.kb.store import StoredKB
from gemel.text import NOT_A_MODIFIER, name_key, without_qualifier

if TYPE_CHECKING:
    from gemel.models.llm import LanguageModel


def named_as(mention: str | None, entity: Entity) -> str:
    """The entity's alias that is the ``mention`` (up to case and spaces), else its title: the name
    :func:`names_sense` compares with the mention, so that an alias names its entity as the title does."""
    key = name_key(mention or "")
    return next((a for a in entity.aliases if key and name_key(a) == key), entity.title)


def names_exactly(mention: str, title: str) -> bool:
    """Whether the mention is the title, or the title without its "(...)" qualifier, up to case and spaces
    ("Japan" names ``Japan``; "Nut" names both ``Nut (fruit)`` and ``Nut (hardware)``; "the country" names no
    title: articles are kept, so a description is not taken for a name)."""
    m, t = name_key(mention), name_key(title)
    return bool(m) and (m == t or m == without_qualifier(t))


def names_as_head(mention: str, title: str) -> bool:
    """Whether the title is a compound ending in the mention, its "(...)" qualifier dropped, up to case and
    spaces: English compounds name their kind last, so "mouse" names ``Computer mouse`` (and ``Mickey Mouse``),
    "hockey" ``Ice hockey``, "nut" ``Brazil nut``, "Jordan" ``Michael Jordan``. A phrase about the mention is no
    compound: "Japan" does not name ``Empire of Japan``, nor "Congo" ``Republic of the Congo``, nor "France"
    ``Tour de France`` (:data:`NOT_A_MODIFIER`); and "war" does not name ``World War II``, nor "Congo"
    ``Congo River``."""
    m = name_key(mention).split()
    t = without_qualifier(name_key(title)).split()
    return 0 < len(m) < len(t) and t[-len(m):] == m and t[-len(m) - 1] not in NOT_A_MODIFIER


def names_sense(mention: str, title: str) -> bool:
    """Whether the title is one of the senses the mention names: exactly (:func:`names_exactly`) or as its last
    words (:func:`names_as_head`)."""
    return names_exactly(mention, title) or names_as_head(mention, title)


class LazyNames(Sequence):
    """The token ids of a built KB's names, made on first use (a query's candidates, not the whole KB at load);
    also the reverse map ``get(tokens) -> row`` of the names made so far, and, for a name not made yet (a full-KB
    beam search), of the decoded title."""

    def __init__(self, lm: LanguageModel, kb: StoredKB) -> None:
        self.lm, self.kb = lm, kb
        self._tokens: dict[int, tuple[int, ...]] = {}
        self._rows: dict[tuple[int, ...], int] = {}

    def __len__(self) -> int:
        return len(self.kb)

    def __getitem__(self, row):  # type: ignore[override]
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = int(row)
        if row not in self._tokens:
            toks = self.lm.answer_tokens(self.kb.titles[row])
            self._tokens[row], self._rows[toks] = toks, row
        return self._tokens[row]

    def get(self, tokens: tuple[int, ...], default: int | None = None) -> int | None:
        if tokens not in self._rows:
            title = self.lm.tokenizer.decode([t for t in tokens if t != self.lm.eos_id])
            if title in self.kb and self[self.kb.index(title)] == tuple(tokens):
                return self.kb.index(title)
        return self._rows.get(tokens, default)
