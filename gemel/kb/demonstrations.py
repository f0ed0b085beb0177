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
from PIL import Image

from gemel.images import ImageError, Picture, image_key, load_image
from gemel.kb.entities import Entity
from gemel.kb.retrieval import IndexConfig, VectorIndex
from gemel.models.embedder import TextEmbedder, mention_in_context
from gemel.sources import package_path
from gemel.types import Example

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

    People's decisions (``source == "annotations"``, NIL ones included) are also kept in an *exact memory*:
    :meth:`recall` returns the latest decision on the very same item (caption, mention and image content).
    """

    def __init__(self, embedder: TextEmbedder, name: str = "pool", index_config: IndexConfig | None = None) -> None:
        self.embedder = embedder
        self.name = name
        self.index_config = index_config
        self.examples: list[Example] = []
        self.index = VectorIndex(embedder.dim, index_config)
        self._live: dict[object, int] = {}  # id (or content key for examples without one) -> row
        self._removed: set[int] = set()  # rows withdrawn (undone or superseded); skipped at retrieval
        self._memory: dict[tuple, dict[str, tuple[int, Example]]] = {}  # (caption, mention) -> id -> decision
        self._memory_key: dict[str, tuple] = {}  # id -> (caption, mention)
        self._order = 0
        self._by_text: dict[str, list[int]] = {}  # caption -> rows

    def __len__(self) -> int:
        return len(self.examples) - len(self._removed)

    def live(self) -> list[Example]:
        """The examples retrieval may return, in insertion order."""
        return [ex for i, ex in enumerate(self.examples) if i not in self._removed]

    def remove(self, ids: Sequence[str]) -> int:
        """Withdraw the examples with these ids (tombstones: the index is not rebuilt); returns how many."""
        for i in set(ids):
            self._forget(i)
        rows = [self._live.pop(i) for i in set(ids) if i in self._live]
        self._removed.update(rows)
        return len(rows)

    def ids_with_text(self, text: str) -> list[str]:
        """Ids of the live examples whose caption is ``text`` (to keep them out of that caption's prompt)."""
        rows = self._by_text.get(text, ())
        return [self.examples[r].id for r in rows if r not in self._removed and self.examples[r].id is not None]

    def recall(self, text: str, mention: str, image: object, exclude: Sequence[str] = ()) -> Example | None:
        """The latest person's decision on this exact item (same caption, mention and image content), NIL
        decisions included (entity None), or None; ``exclude`` as in :meth:`retrieve`."""
        if not self._memory:
            return None
        found = self._memory.get((text, mention), {})
        excluded = set(exclude)
        live = [(order, ex) for order, ex in found.values()
                if ex.id not in excluded and ex.meta.get("input_key") not in excluded]
        same = [(order, ex) for order, ex in live if same_picture(image, ex.image)]
        return max(same, key=lambda x: x[0])[1] if same else None

    def _remember(self, ex: Example) -> None:
        if ex.source != "annotations" or ex.id is None:
            return
        self._forget(ex.id)
        key = (ex.text, ex.mention)
        self._order += 1
        self._memory.setdefault(key, {})[ex.id] = (self._order, ex)
        self._memory_key[ex.id] = key

    def _forget(self, example_id: str) -> None:
        key = self._memory_key.pop(example_id, None)
        if key is not None:
            self._memory[key].pop(example_id, None)
            if not self._memory[key]:
                del self._memory[key]

    def add(self, examples: Iterable[Example], embeddings: np.ndarray | None = None, *, remember: bool = True,
            stored: bool = False) -> int:
        """Add labelled examples; returns how many rows were added. An example whose id is live replaces
        that row unless its content is the same; NIL examples (no entity) teach nothing and are skipped.
        ``stored=True``: ``embeddings`` are rows of a pool's index as it stores them (`VectorIndex.stored`)."""
        fresh, rows = [], []
        for i, ex in enumerate(examples):
            if remember:
                self._remember(ex)
            if not ex.entity:
                if ex.id is not None and ex.id in self._live:  # a NIL re-decision withdraws the label
                    self._removed.add(self._live.pop(ex.id))
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
        self.index.add(vecs, stored=stored and embeddings is not None)  # the index is the pool's only copy
        for j, ex in enumerate(fresh, start=len(self.examples)):
            self._by_text.setdefault(ex.text, []).append(j)
        self.examples.extend(fresh)
        return len(fresh)

    def decisions(self, exclude: Sequence[str] = ()) -> list[tuple[Example, np.ndarray]]:
        """People's live decisions (``source == "annotations"``, with an entity) and their unit embeddings of
        the mention in context, but those excluded by id or input key (the item being evaluated)."""
        excluded = set(exclude)
        rows = [i for i, ex in enumerate(self.examples) if i not in self._removed and ex.source == "annotations"
                and ex.entity and ex.id not in excluded and ex.meta.get("input_key") not in excluded]
        return list(zip((self.examples[i] for i in rows), self.index.stored(rows))) if rows else []

    def with_examples(self, examples: Iterable[Example] = (), name: str | None = None) -> "DemonstrationPool":
        """A new pool holding this pool's live examples and memory plus ``examples``; this one is unchanged."""
        keep = [i for i in range(len(self.examples)) if i not in self._removed]
        pool = DemonstrationPool(self.embedder, name or self.name, self.index_config)
        if keep:
            pool.add([self.examples[i] for i in keep], self.index.stored(keep), remember=False, stored=True)
        pool._memory = {k: dict(v) for k, v in self._memory.items()}
        pool._memory_key, pool._order = dict(self._memory_key), self._order
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


class StoredKBPool:
    """The KB-derived demonstrations of a built KB (:class:`gemel.kb.store.StoredKB`): their vectors stay
    memory-mapped and searched by the KB's demonstration index; an `Example` is made (by :func:`kb_example`, the
    rule of the in-memory pool) only for the ones retrieved."""

    def __init__(self, kb) -> None:  # kb: StoredKB (not imported here: it imports this module)
        self.kb = kb
        self.name = "kb"
        self.index = kb.demo_index()

    def __len__(self) -> int:
        return len(self.kb.demo_rows)

    def retrieve(self, query: np.ndarray, n: int, exclude: Sequence[str] = ()) -> list[Retrieved]:
        """The n most similar demonstrations, best first, leaving out the ids in ``exclude``."""
        if n <= 0 or not len(self):
            return []
        excluded = set(exclude)
        k = min(len(self), n + len(excluded))
        while True:
            sims, ids = self.index.search(query, k)
            out = [Retrieved(ex, float(s)) for s, i in zip(sims[0], ids[0]) if i >= 0
                   for ex in [kb_example(self.kb.entity(int(self.kb.demo_rows[i])))]
                   if ex is not None and ex.id not in excluded][:n]
            if len(out) == n or k >= len(self):
                return out
            k = min(len(self), 2 * k)


def same_picture(a: object, b: object) -> bool:
    """Whether two images (paths, bytes, PIL images or None) are the same picture: the same file bytes, else
    the same pixels (a PIL image, or a lossless re-encoding). A file that can no longer be read matches
    nothing."""
    if a is None or b is None:
        return a is None and b is None
    a, b = (x.source if isinstance(x, Picture) else x for x in (a, b))  # a PIL image is compared by its pixels
    try:
        if not isinstance(a, Image.Image) and not isinstance(b, Image.Image) and image_key(a) == image_key(b):
            return True
        return _pixels_key(a) == _pixels_key(b)
    except ImageError:
        return False


def _pixels_key(image: object) -> str | None:
    return image_key(image if isinstance(image, Image.Image) else load_image(image))


def _content(ex: Example) -> tuple:
    return (ex.text, ex.mention, ex.entity, ex.image)


def _key(ex: Example) -> object:
    return ex.id if ex.id is not None else _content(ex)


def load_jsonl_examples(path: str | Path, source: str) -> list[Example]:
    """Examples of a JSONL file (``image`` relative to the file's folder, or ``package:NAME/path`` inside an
    installed package, as the out-of-pool photos of ``assets/eval/outpool.jsonl``)."""
    path = Path(path)
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            d = json.loads(line)
            image = d.get("image")
            if image and image.startswith("package:"):  # a picture shipped inside an installed package
                image = str(package_path(image))
            elif image and not Path(image).is_absolute():
                image = str((path.parent / image).resolve())
                if not Path(image).exists():  # seed files keep images relative to assets/
                    image = str((path.parent.parent / d["image"]).resolve())
            out.append(Example(text=d["text"], mention=d["mention"], entity=d.get("entity"), image=image,
                               id=str(d.get("id", f"{path.stem}-{n}")), source=source))
    return out


def kb_examples(kb: Iterable[Entity]) -> list[Example]:
    """One text-only demonstration per KB entry that has an extract: (first sentence, surface name, title)."""
    return [ex for ex in map(kb_example, kb) if ex is not None]


def kb_example(e: Entity) -> Example | None:
    """The KB-derived demonstration of one entry (its first extract sentence, its surface name as the mention,
    its title as the answer), or None when it has no extract; the one rule for in-memory and built KBs."""
    sentence = e.first_sentence()
    if not sentence:
        return None
    text, mention = _kb_mention(sentence, e.surface)
    return Example(text=text, mention=mention, entity=e.title, image=None, id=f"kb:{e.title}", source="kb")


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
