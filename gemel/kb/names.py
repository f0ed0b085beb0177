"""KB names as the LLM spells them and as a mention names them: the token ids of a built KB's titles, made on
first use, with the reverse map from token ids to rows; and the alias of an entity that a mention is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gemel.kb.entities import Entity
from gemel.kb.store import StoredKB
from gemel.text import match_key, mention_keys

if TYPE_CHECKING:
    from gemel.models.llm import LanguageModel


def named_as(mention: str | None, entity: Entity) -> str:
    """The entity's alias that is the ``mention`` in one of its forms (:func:`gemel.text.mention_keys`: up to
    case, spaces, a plural and "the" before a capitalised name), else its title: the name
    :func:`gemel.text.names_sense` compares with the mention, so that an alias names its entity as the title does."""
    keys = mention_keys(mention or "")
    return next((a for a in entity.aliases if match_key(a) in keys), entity.title)


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
