"""Synthetic captions for the image corpus: captions where only the picture decides, and ordinary ones.

- **Ambiguous captions** (:data:`AMBIGUOUS_TEMPLATES`): the mention is a surface name that several KB entities
  share (``Apple`` = the fruit or Apple Inc.; ``Cricket`` = the insect or the sport) and the rest of the text
  says nothing about which: a text-only linker can only guess.
- **Ordinary captions** (:data:`ORDINARY_TEMPLATES`): the mention with words from the entity's own KB
  description, so the text decides as in everyday data.
- **Same-caption groups** (:func:`same_caption_groups`): one ambiguous caption with 2–3 pictures of different
  entities sharing the mention, taken from the corpus test split only (held-out styles, pictures or
  entities). A text-only linker gives one answer per caption, so it gets at most one member per group right.
- **Flags** (:func:`flag_set`): a country from its flag drawn in an art style never trained on.
- **Recurring split** (:func:`recurring_split`): entities with pictures in several styles, each picture with its
  own caption naming nothing, and pairs of entities sharing captions: the learning curve of corrections.
- **Hidden captions** (``captions(..., hidden=share)``): "This is the thing in the picture." and the like; the
  text names nothing, only the picture decides (training data for the mapper, dev data for the image fit).

Surface names that entities share come from the KB (titles without their "(...)" qualifier: ``Mole (animal)``
/ ``Mole (unit)``) and from the corpus (a logo named ``Apple`` linked to ``Apple Inc.``):
:func:`shared_surfaces`; the groups also take a reviewed table of names people use for either of several
entities (``hockey``: ``Field hockey`` or ``Ice hockey``), :data:`SHARED_NAMES`.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from gemel.kb.entities import KnowledgeBase
from gemel.text import without_qualifier
from gemel.training.corpus import Corpus, CorpusError, CorpusItem, norm

SHARED_NAMES = Path(__file__).resolve().parents[2] / "assets" / "corpus" / "shared_names.tsv"

# {m} is the mention; nothing else in the sentence hints at a sense.
AMBIGUOUS_TEMPLATES = (
    "Look at this {m}.",
    "Here is {m} again.",
    "{m}, as shown in the picture.",
    "I took this picture of {m} yesterday.",
    "Everyone kept talking about {m}.",
    "This is what {m} looks like.",
    "Another picture of {m}.",
    "{m} is on the left side of the page.",
    "She pointed at {m} and smiled.",
    "We saw {m} on the way home.",
)
# {m} mention, {d} the entity's KB description (lower-cased first letter): the text decides.
ORDINARY_TEMPLATES = (
    "{m}, the {d}, in a picture.",
    "A drawing of {m} ({d}).",
    "The picture shows {m}, that is the {d}.",
    "{m} is known as the {d}.",
)
FLAG_TEMPLATES = ("The flag of {m}.", "{m} flies this flag.", "A flag seen in {m}.")
# Hidden captions: the text names no entity at all, only the picture says which (flags / everything else).
HIDDEN_FLAG = ("This is the flag of the country.", "the country")
HIDDEN_THING = ("This is the thing in the picture.", "the thing")


@dataclass(frozen=True)
class Caption:
    """One synthetic linking example (the fields of :class:`gemel.types.Example` plus bookkeeping)."""

    id: str
    text: str
    mention: str
    entity: str
    image: str  # path relative to the corpus folder
    kind: str  # "ambiguous", "ordinary", "flag"
    split: str  # the picture's corpus split
    group: str = ""  # same-caption group id ("" = none)

    def to_example_dict(self, image_root: Path | None = None) -> dict:
        d = asdict(self)
        if image_root is not None:
            d["image"] = str(Path(image_root) / self.image)
        return d


@dataclass
class Group:
    """One caption, several pictures, one entity per picture (all entities distinct)."""

    id: str
    text: str
    mention: str
    members: list[Caption] = field(default_factory=list)


def surface_of(title: str) -> str:
    """The name a caption writes for the title: the title without its qualifier."""
    return without_qualifier(title)


def shared_surfaces(kb: KnowledgeBase, items: Iterable[CorpusItem] = ()) -> dict[str, set[str]]:
    """Lower-cased surface name -> the KB titles it may name, for names with several titles.

    A title names its own surface; a corpus picture's names also name its entity (a logo ``Apple`` ->
    ``Apple Inc.``), but only names of one or two words, which a caption can use as a mention."""
    names: dict[str, set[str]] = defaultdict(set)
    for e in kb:
        names[norm(e.surface)].add(e.title)
    for it in items:
        for n in it.names:
            if 0 < len(n.split()) <= 2 and ":" not in n:
                names[norm(n)].add(it.entity)
    return {k: v for k, v in names.items() if len(v) > 1}


def mention_for(surface: str, items: Sequence[CorpusItem]) -> str:
    """The mention as written: the KB title's own capitalisation when a title has this surface."""
    for it in items:
        for cand in (surface_of(it.entity), *it.names):
            if norm(cand) == surface:
                return cand if cand[:1].isupper() else cand[:1].upper() + cand[1:]
    return surface.capitalize()


def read_pairs(path: str | Path, shape: str) -> list[tuple[str, str]]:
    """The rows of a reviewed two-column table (``shape`` names the columns, e.g. "name<TAB>KB title"), '#' lines
    and blank lines skipped; a malformed line raises :class:`CorpusError` naming the file, line and shape."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise CorpusError(f"{path}:{n}: expected '{shape}', got {line!r}")
        rows.append((parts[0].strip(), parts[1].strip()))
    return rows


def read_shared_names(path: str | Path = SHARED_NAMES) -> dict[str, set[str]]:
    """The reviewed table of shared names: lower-cased name -> the KB titles it may name (``name<TAB>title``
    lines, ``#`` comments)."""
    names: dict[str, set[str]] = defaultdict(set)
    for name, title in read_pairs(path, "name<TAB>KB title"):
        names[norm(name)].add(title)
    return dict(names)


def same_caption_groups(corpus: Corpus, kb: KnowledgeBase, split: str = "test", max_pictures: int = 3,
                        captions_per_surface: int = 2, seed: int = 0,
                        reviewed: dict[str, set[str]] | None = None) -> list[Group]:
    """Groups of one ambiguous caption and 2..max_pictures pictures of distinct entities from ``split``: for
    the names entities share (:func:`shared_surfaces`), then for the ``reviewed`` table's names (default
    :func:`read_shared_names`; drawn with their own random stream, so the first groups stay as they were)."""
    pool = [it for it in corpus.items if it.split == split]
    by_entity: dict[str, list[CorpusItem]] = defaultdict(list)
    for it in pool:
        by_entity[it.entity].append(it)
    shared = shared_surfaces(kb, corpus.items)
    reviewed = read_shared_names() if reviewed is None else reviewed
    extra = {name: titles for name, titles in reviewed.items() if name not in shared}
    groups = _groups(shared, by_entity, random.Random(seed), max_pictures, captions_per_surface)
    return groups + _groups(extra, by_entity, random.Random(seed + 1), max_pictures, captions_per_surface)


def _groups(names: dict[str, set[str]], by_entity: dict[str, list[CorpusItem]], rng: random.Random,
            max_pictures: int, captions_per_surface: int) -> list[Group]:
    groups = []
    for surface, titles in sorted(names.items()):
        present = sorted(t for t in titles if t in by_entity)
        if len(present) < 2:
            continue
        mention = mention_for(surface, [x for t in present for x in by_entity[t]])
        templates = rng.sample(AMBIGUOUS_TEMPLATES, captions_per_surface)
        for n, template in enumerate(templates):
            chosen = rng.sample(present, min(max_pictures, len(present)))
            text = template.format(m=mention)
            group = Group(f"group-{surface.replace(' ', '_')}-{n}", text, mention)
            for title in chosen:
                item = rng.choice(by_entity[title])
                group.members.append(Caption(f"{group.id}/{item.id}", text, mention, title, item.image,
                                             "ambiguous", item.split, group.id))
            groups.append(group)
    return groups


def flag_set(corpus: Corpus, heldout: str = "style") -> list[CorpusItem]:
    """Test flags in the held-out art style of countries whose flag was trained on in another style."""
    trained = {it.entity for it in corpus.items if it.kind == "flag" and it.split == "train"}
    return [it for it in corpus.items
            if it.kind == "flag" and it.split == "test" and it.heldout == heldout and it.entity in trained]


def recurring_split(corpus: Corpus, split: str = "test", entities: int = 24, per_entity: int = 3,
                    seed: int = 0) -> list[Caption]:
    """A split for the learning curve of corrections: recurring entities and same-caption traps.

    Entities of ``split`` with pictures in two or more art styles (``entities`` of them, drawn at random); each
    gets up to ``per_entity`` pictures in distinct styles, each with a *different* caption whose text names no
    entity (:data:`AMBIGUOUS_TEMPLATES` with "the thing"), so a correction of one picture can
    teach the others only through the picture. Entities are paired, and the i-th picture of both members of a pair
    gets the *same* caption: a trap, where a correction copied by caption turns the other answer wrong."""
    rng = random.Random(seed)
    by_entity: dict[str, dict[str, CorpusItem]] = defaultdict(dict)
    for it in sorted(corpus.items, key=lambda it: it.id):
        if it.split == split:
            by_entity[it.entity].setdefault(it.style, it)
    recurring = sorted(e for e, styles in by_entity.items() if len(styles) >= 2)
    chosen = rng.sample(recurring, min(entities - entities % 2, len(recurring) - len(recurring) % 2))
    out = []
    for pair, (a, b) in enumerate(zip(chosen[::2], chosen[1::2])):
        templates = rng.sample(AMBIGUOUS_TEMPLATES, per_entity)
        for entity in (a, b):
            styles = sorted(by_entity[entity])
            for n, style in enumerate(rng.sample(styles, min(per_entity, len(styles)))):
                it = by_entity[entity][style]
                mention = HIDDEN_THING[1].capitalize() if templates[n].startswith("{m}") else HIDDEN_THING[1]
                out.append(Caption(f"{it.id}#r", templates[n].format(m=mention), mention, entity, it.image,
                                   "recurring", it.split, f"pair-{pair}-{n}"))
    return out


def mismatched(rows: Sequence[Caption], limit: int = 150, seed: int = 0) -> list[Caption]:
    """Captions that name their entity, each shown with a picture of *another* entity: the picture beside a news
    caption often shows something else than the mention (a flag beside a country's leader, a fruit beside a
    company), and a mention that names an entity must not lose to a confident picture of another. Up to
    ``limit`` of the captions that name their entity (not the hidden ones), pictures drawn among the others'."""
    rng = random.Random(seed)
    named = [c for c in rows if c.kind != "hidden"]
    named = rng.sample(named, min(limit, len(named)))
    out = []
    for i, c in enumerate(named):
        other = next((named[(i + k) % len(named)] for k in range(1, len(named))
                      if named[(i + k) % len(named)].entity != c.entity), None)
        if other is not None:
            out.append(Caption(f"{c.id}#x", c.text, c.mention, c.entity, other.image, "mismatched", c.split))
    return out


def captions(corpus: Corpus, kb: KnowledgeBase, split: str = "train", per_picture: int = 1,
             seed: int = 0, hidden: float = 0.0) -> list[Caption]:
    """Training/dev captions for the pictures of one split: ambiguous ones when the entity shares its
    surface name with another entity, else ordinary (description) or flag captions; with ``hidden`` > 0, that
    share of the captions (drawn at random) is a hidden one instead (:data:`HIDDEN_FLAG`, :data:`HIDDEN_THING`:
    the text names nothing, so a model trained on them must read the picture)."""
    if not 0.0 <= hidden <= 1.0:
        raise ValueError(f"hidden={hidden} must be a share in [0, 1]")
    rng = random.Random(seed)
    shared = shared_surfaces(kb, corpus.items)
    ambiguous_by_entity: dict[str, str] = {}
    for surface, titles in shared.items():
        for t in titles:
            ambiguous_by_entity.setdefault(t, surface)
    out = []
    for it in corpus.items:
        if it.split != split:
            continue
        for n in range(per_picture):
            caption = _caption_for(it, kb, ambiguous_by_entity, rng, n)
            out.append(_hidden(caption, it) if hidden and rng.random() < hidden else caption)
    return out


def _hidden(caption: Caption, it: CorpusItem) -> Caption:
    text, mention = HIDDEN_FLAG if it.kind == "flag" else HIDDEN_THING
    return Caption(caption.id, text, mention, caption.entity, caption.image, "hidden", caption.split)


def _caption_for(it: CorpusItem, kb: KnowledgeBase, ambiguous: dict[str, str], rng: random.Random,
                 n: int) -> Caption:
    entity = kb.get(it.entity)
    if it.entity in ambiguous:
        mention = mention_for(ambiguous[it.entity], [it])
        return Caption(f"{it.id}#{n}", rng.choice(AMBIGUOUS_TEMPLATES).format(m=mention), mention, it.entity,
                       it.image, "ambiguous", it.split)
    mention = surface_of(it.entity)
    if it.kind == "flag":
        return Caption(f"{it.id}#{n}", rng.choice(FLAG_TEMPLATES).format(m=mention), mention, it.entity,
                       it.image, "flag", it.split)
    desc = (entity.description if entity else "") or "thing in the picture"
    d = desc[:1].lower() + desc[1:]
    return Caption(f"{it.id}#{n}", rng.choice(ORDINARY_TEMPLATES).format(m=mention, d=d.rstrip(".")), mention,
                   it.entity, it.image, "ordinary", it.split)


def write_jsonl(rows: Iterable[dict], path: str | Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def text_only_upper_bound(groups: Sequence[Group]) -> float:
    """The best share of group members a text-only linker can get right (one answer per caption)."""
    total = sum(len(g.members) for g in groups)
    return len(groups) / total if total else 0.0
