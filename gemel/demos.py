"""Demonstration pools: the labelled examples GEMEL retrieves for in-context learning.

GEMEL retrieves the n training examples whose mention embeddings are most similar to the query's. Our pools:

- a *labelled* pool: the shipped seed examples (real photos), and every accepted or corrected annotation, added
  incrementally (one ``add`` per correction, no index rebuild) so a correction helps the very next link;
- a *KB* pool of text-only demonstrations derived from the knowledge base (an entry's first extract sentence,
  its surface name as mention, its title as answer), for the many entities no labelled example covers yet.

:func:`merge` interleaves both by similarity, capping the KB share, and orders them least similar first so the
most similar demonstration sits next to the query, as in the paper.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .embedder import TextEmbedder, query_text
from .kb import KnowledgeBase
from .retrieval import IndexConfig, VectorIndex
from .types import Example

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retrieved:
    example: Example
    similarity: float


class DemonstrationPool:
    """Examples with a vector index over ``query_text(text, mention)`` embeddings."""

    def __init__(self, embedder: TextEmbedder, name: str = "pool", index_config: IndexConfig | None = None) -> None:
        self.embedder = embedder
        self.name = name
        self.examples: list[Example] = []
        self.index = VectorIndex(embedder.dim, index_config)
        self._keys: set[tuple[str, str, str | None, str | None]] = set()
        self._removed: set[int] = set()  # rows withdrawn (an undone correction); skipped at retrieval

    def __len__(self) -> int:
        return len(self.examples) - len(self._removed)

    def remove(self, ids: Sequence[str]) -> int:
        """Withdraw the examples with these ids (tombstones: the index is not rebuilt); returns how many."""
        wanted = set(ids)
        rows = [i for i, ex in enumerate(self.examples) if ex.id in wanted and i not in self._removed]
        for i in rows:
            ex = self.examples[i]
            self._removed.add(i)
            self._keys.discard((ex.text, ex.mention, ex.entity, ex.image))
        return len(rows)

    def add(self, examples: Iterable[Example], embeddings: np.ndarray | None = None) -> int:
        """Add labelled examples (duplicates of text+mention+entity+image are skipped); returns how many."""
        fresh, rows = [], []
        for i, ex in enumerate(examples):
            if not ex.entity:
                continue  # NIL / undecided examples teach nothing as demonstrations
            key = (ex.text, ex.mention, ex.entity, ex.image)
            if key in self._keys:
                continue
            self._keys.add(key)
            fresh.append(ex)
            rows.append(i)
        if not fresh:
            return 0
        if embeddings is None:
            vecs = self.embedder.encode([query_text(e.text, e.mention) for e in fresh])
        else:
            vecs = embeddings[rows]
        self.index.add(vecs)
        self.examples.extend(fresh)
        return len(fresh)

    def retrieve(self, query: np.ndarray, n: int, exclude: Sequence[str] = ()) -> list[Retrieved]:
        """The n most similar examples, best first; examples whose id is in ``exclude`` are skipped."""
        if n <= 0 or not self.examples:
            return []
        excluded = set(exclude)
        k = min(len(self.examples), n + len(excluded) + len(self._removed))
        sims, ids = self.index.search(query, k)
        out = []
        for sim, i in zip(sims[0], ids[0]):
            if i < 0 or int(i) in self._removed:
                continue
            ex = self.examples[int(i)]
            if ex.id is not None and ex.id in excluded:
                continue
            out.append(Retrieved(ex, float(sim)))
            if len(out) == n:
                break
        return out


def load_jsonl_examples(path: str | Path, source: str) -> list[Example]:
    """Examples of a JSONL file (``image`` relative to the file's folder)."""
    path = Path(path)
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            d = json.loads(line)
            image = d.get("image")
            if image and not Path(image).is_absolute():
                image = str((path.parent / image).resolve())
                if not Path(image).exists():  # seed files keep images relative to assets/
                    image = str((path.parent.parent / d["image"]).resolve())
            out.append(Example(text=d["text"], mention=d["mention"], entity=d.get("entity"), image=image,
                               id=str(d.get("id", f"{path.stem}-{n}")), source=source))
    return out


def kb_examples(kb: KnowledgeBase) -> list[Example]:
    """One text-only demonstration per KB entry that has an extract: (first sentence, surface name, title)."""
    out = []
    for e in kb:
        sentence = e.first_sentence()
        if not sentence:
            continue
        text, mention = _kb_mention(sentence, e.surface)
        out.append(Example(text=text, mention=mention, entity=e.title, image=None, id=f"kb:{e.title}",
                           source="kb"))
    return out


def _kb_mention(sentence: str, surface: str) -> tuple[str, str]:
    """The name as the sentence writes it: full name, else its last word ("Grace Brewster Hopper" -> "Hopper"),
    else the sentence is prefixed with the name."""
    if surface in sentence:
        return sentence, surface
    last = surface.split()[-1]
    if len(last) > 2 and last in sentence:
        return sentence, last
    return f"{surface}: {sentence}", surface


def merge(labelled: list[Retrieved], kb: list[Retrieved], n: int, max_kb_share: float) -> list[Retrieved]:
    """Up to n demonstrations, at most ``max_kb_share * n`` from the KB, ordered least similar first."""
    kb_cap = int(round(n * max_kb_share)) if labelled else n
    chosen = sorted(labelled + kb[:kb_cap], key=lambda r: r.similarity, reverse=True)[:n]
    return sorted(chosen, key=lambda r: r.similarity)
