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

from .embedder import TextEmbedder, mention_in_context
from .kb import KnowledgeBase
from .retrieval import IndexConfig, VectorIndex
from .types import Example

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retrieved:
    example: Example
    similarity: float


class DemonstrationPool:
    """Examples with a vector index over ``mention_in_context(text, mention)`` embeddings.

    An example with an ``id`` is *keyed* by it: adding another example with the same id replaces it (an
    annotator who re-decides an input leaves one live label, not two). Examples without an id are
    de-duplicated by content. Retrieval never returns two demonstrations with the same content (two
    annotators who agree give one demonstration, and it stays live while either label does).
    """

    def __init__(self, embedder: TextEmbedder, name: str = "pool", index_config: IndexConfig | None = None) -> None:
        self.embedder = embedder
        self.name = name
        self.index_config = index_config
        self.examples: list[Example] = []
        self.index = VectorIndex(embedder.dim, index_config)
        self._vectors: list[np.ndarray] = []  # (D,) per row, to copy the pool without re-embedding
        self._live: dict[object, int] = {}  # id (or content key for examples without one) -> row
        self._removed: set[int] = set()  # rows withdrawn (undone or superseded); skipped at retrieval

    def __len__(self) -> int:
        return len(self.examples) - len(self._removed)

    def live(self) -> list[Example]:
        """The examples retrieval may return, in insertion order."""
        return [ex for i, ex in enumerate(self.examples) if i not in self._removed]

    def remove(self, ids: Sequence[str]) -> int:
        """Withdraw the examples with these ids (tombstones: the index is not rebuilt); returns how many."""
        rows = [self._live.pop(i) for i in set(ids) if i in self._live]
        self._removed.update(rows)
        return len(rows)

    def add(self, examples: Iterable[Example], embeddings: np.ndarray | None = None) -> int:
        """Add labelled examples; returns how many rows were added. An example whose id is live replaces
        that row unless its content is the same; NIL examples (no entity) teach nothing and are skipped."""
        fresh, rows = [], []
        for i, ex in enumerate(examples):
            if not ex.entity:
                continue
            key = _key(ex)
            row = self._live.get(key)
            if row is not None and _content(self.examples[row]) == _content(ex):
                continue
            if row is not None:
                self._removed.add(row)
            self._live[key] = len(self.examples) + len(fresh)
            fresh.append(ex)
            rows.append(i)
        if not fresh:
            return 0
        if embeddings is None:
            vecs = self.embedder.encode([mention_in_context(e.text, e.mention) for e in fresh])
        else:
            vecs = np.asarray(embeddings)[rows]
        self.index.add(vecs)
        self._vectors.extend(np.asarray(vecs, dtype=np.float32))
        self.examples.extend(fresh)
        return len(fresh)

    def with_examples(self, examples: Iterable[Example] = (), name: str | None = None) -> "DemonstrationPool":
        """A new pool holding this pool's live examples plus ``examples``; this pool is left unchanged."""
        keep = [i for i in range(len(self.examples)) if i not in self._removed]
        pool = DemonstrationPool(self.embedder, name or self.name, self.index_config)
        if keep:
            pool.add([self.examples[i] for i in keep], np.stack([self._vectors[i] for i in keep]))
        pool.add(examples)
        return pool

    def retrieve(self, query: np.ndarray, n: int, exclude: Sequence[str] = ()) -> list[Retrieved]:
        """The n most similar examples, best first, without repeated content. An example is skipped when
        its id, or the input it labels (``meta["input_key"]``), is in ``exclude``."""
        if n <= 0 or not len(self):
            return []
        excluded = set(exclude)
        k = min(len(self.examples), 2 * n + len(excluded) + len(self._removed))
        while True:
            out = self._top(query, n, k, excluded)
            if len(out) == n or k >= len(self.examples):
                return out
            k = min(len(self.examples), 2 * k)

    def _top(self, query: np.ndarray, n: int, k: int, excluded: set[str]) -> list[Retrieved]:
        sims, ids = self.index.search(query, k)
        out: list[Retrieved] = []
        seen: set[tuple] = set()
        for sim, i in zip(sims[0], ids[0]):
            if i < 0 or int(i) in self._removed:
                continue
            ex = self.examples[int(i)]
            if ex.id in excluded or ex.meta.get("input_key") in excluded or _content(ex) in seen:
                continue
            seen.add(_content(ex))
            out.append(Retrieved(ex, float(sim)))
            if len(out) == n:
                break
        return out


def _content(ex: Example) -> tuple:
    return (ex.text, ex.mention, ex.entity, ex.image)


def _key(ex: Example) -> object:
    return ex.id if ex.id is not None else _content(ex)


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
