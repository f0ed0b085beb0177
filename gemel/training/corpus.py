"""An offline image–entity corpus: named pictures from packages, linked to KB titles, split for honest tests.

Pictures come from the readers of :mod:`gemel.training.corpus_sources` (emoji in three art styles, brand logos, clip
art). Their names are linked to KB titles by rules tried in order (:class:`NameLinker`):

1. ``table``: a reviewed table (``assets/corpus/links.tsv``: name, source or ``*``, title or ``-`` = never);
2. ``exact``: a name equals a KB title, and no other title shares its surface form;
3. ``surface``: a name (or its singular) equals the one KB title whose surface form is that name
   (``Mole (animal)`` has the surface ``Mole``);
4. ``embedder``: several titles share the surface (``Apple`` / ``Apple Inc.`` for a logo), or only the
   name's head noun matches (``red apple`` -> ``Apple``): the KB's own "title: description" embedding that
   is most similar to the picture's names, keywords and kind wins, above a threshold.

:func:`build_corpus` writes ``<cache>/corpus/<kb>-<key>/``: ``images/<source>/<id>.png`` (RGBA, as read),
``corpus.jsonl`` (one :class:`CorpusItem` per line), ``report.json`` (counts per source and rule) and
``manifest.sha256``. Images already written are reused, so an interrupted build resumes.

Splits (:func:`assign_split`) keep evaluation on pictures *and* entities the trained parts never saw:
entities are hashed into train / dev / test (held-out entities), one art style (``openmoji``) is held out
whole, and a share of the remaining concepts is held out too in every style (unseen picture, seen entity:
"in-pool"). Finally a held-out picture whose entity kept no training picture is marked out-of-pool
(``heldout="entity"``), so ``style`` and ``picture`` always mean "entity seen in training".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from gemel.errors import GemelError
from gemel.kb.entities import Entity, KnowledgeBase
from gemel.sources import cache_dir
from gemel.text import name_key, without_qualifier
from gemel.training.corpus_sources import READERS, Picture, SourceUnavailable

log = logging.getLogger(__name__)

CORPUS_FORMAT = "gemel-corpus/1"
DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "assets" / "corpus" / "links.tsv"
_COMPANY = (" Inc.", " (company)", " Corporation", " Company", " (brand)", " (software)",
            " (programming language)", " (operating system)", " (website)")
# a logo links only to an entity whose KB description names an organisation, a brand or a product like these
ORGANISATION = re.compile(
    r"\b(compan(y|ies)|corporation|manufacturer|brand|organi[sz]ation|agency|network|website|software|"
    r"operating systems?|programming language|service|airline|league|broadcaster|franchise|newspaper|"
    r"magazine|platform|search engine|social media|retailer|conglomerate|automaker|video game|console|union|"
    r"federation|committee|association|channel|studio|encyclopedia|browser|chain|bank|club|team)\b", re.I)
KIND_HINT = {"emoji": "", "flag": "flag of a country", "logo": "logo of a brand, company or software",
             "clipart": "a drawing"}


class CorpusError(GemelError):
    """The corpus cannot be built or read; the message says what is missing."""


@dataclass(frozen=True)
class SplitConfig:
    """How items are held out; a pure function of entity title, picture key and style."""

    heldout_styles: tuple[str, ...] = ("openmoji",)  # art styles never trained on (test)
    entity_test: float = 0.10  # share of entities held out whole for test (out-of-pool)
    entity_dev: float = 0.10  # share of entities held out whole for dev
    picture_test: float = 0.10  # share of other pictures of training entities kept for test (in-pool)
    picture_dev: float = 0.10  # ... and for dev
    seed: str = "gemel-corpus"  # salt of the hashes

    def __post_init__(self) -> None:
        for name in ("entity_test", "entity_dev", "picture_test", "picture_dev"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise CorpusError(f"split {name}={getattr(self, name)} must be in [0, 1)")
        if self.entity_test + self.entity_dev >= 1 or self.picture_test + self.picture_dev >= 1:
            raise CorpusError("split shares must leave something to train on (sum < 1)")


@dataclass(frozen=True)
class LinkConfig:
    """Name -> KB title linking (see the module docstring for the rules)."""

    min_similarity: float = 0.45  # embedder rule: least cosine between the picture's text and the title's
    head_min_similarity: float = 0.50  # stricter when only the head noun matched
    max_per_entity: int = 8  # pictures kept per (entity, source): "... face" emoji must not all become Face
    table: str = str(DEFAULT_TABLE)  # reviewed table (TSV: name, source or *, title or -); "" = none


@dataclass(frozen=True)
class CorpusItem:
    """One manifest line."""

    id: str  # "<source>/<key>" (unique)
    image: str  # path of the PNG relative to the corpus folder
    entity: str  # KB title
    names: tuple[str, ...]  # surface names the picture is known by (first = most specific)
    source: str
    style: str
    licence: str
    kind: str  # "emoji", "flag", "logo", "clipart"
    concept: str  # same thing across styles (for splits: all styles of one concept share an entity)
    rule: str  # linking rule that chose the entity
    split: str = ""  # "train", "dev" or "test"
    heldout: str = ""  # why it is not train: "entity", "style", "picture" ("" for train)

    @classmethod
    def from_dict(cls, d: dict) -> "CorpusItem":
        return cls(**{**d, "names": tuple(d["names"])})


# ---- linking -------------------------------------------------------------------------------------
def singular(word: str) -> str:
    """A crude English singular, enough for picture titles: "frogs" -> "frog", "cherries" -> "cherry"."""
    w = word
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def norm(text: str) -> str:
    """A picture's or a title's name as the linker compares them: `gemel.text.name_key`, "_" read as a space."""
    return name_key(text.replace("_", " "))


@dataclass
class LinkResult:
    title: str | None
    rule: str  # "table", "exact", "surface", "embedder", or why not: "none", "rejected", "below-threshold"
    similarity: float = float("nan")


@dataclass
class NameLinker:
    """Links a picture's names to one KB title (rules in the module docstring)."""

    kb: KnowledgeBase
    embedder: object | None = None  # TextEmbedder (or anything with encode(texts) -> (N, D) normalised)
    config: LinkConfig = field(default_factory=LinkConfig)
    entity_vectors: np.ndarray | None = None  # (N, D) "title: description" embeddings, KB order

    def __post_init__(self) -> None:
        self.by_title = {norm(e.title): e.title for e in self.kb}
        self.by_surface: dict[str, list[str]] = defaultdict(list)
        for e in self.kb:
            self.by_surface[norm(e.surface)].append(e.title)
        self.table = read_table(self.config.table) if self.config.table else {}
        self._cache: dict[tuple, LinkResult] = {}
        self._vectors: dict[str, np.ndarray] = {}

    def prime(self, pictures: Sequence[Picture], batch: int = 256) -> None:
        """Embed the texts of many pictures in batches (one call per picture would be ~20x slower)."""
        if self.embedder is None:
            return
        texts = list(dict.fromkeys(t for t in map(picture_text, pictures) if t not in self._vectors))
        for start in range(0, len(texts), batch):
            chunk = texts[start:start + batch]
            self._vectors.update(zip(chunk, self.embedder.encode(chunk)))

    def link(self, pic: Picture) -> LinkResult:
        key = (pic.source, pic.kind, pic.names, pic.keywords)
        if key not in self._cache:
            self._cache[key] = self._link(pic)
        return self._cache[key]

    def _link(self, pic: Picture) -> LinkResult:
        for name in pic.names:
            for src in (pic.source, "*"):
                if (norm(name), src) in self.table:
                    title = self.table[(norm(name), src)]
                    return LinkResult(title, "table") if title else LinkResult(None, "rejected")
        for name in pic.names:
            found = self._by_name(pic, name)
            if found is not None:
                return found
        return self._by_head(pic)

    def _by_name(self, pic: Picture, name: str) -> LinkResult | None:
        n = norm(without_qualifier(name))
        candidates = list(dict.fromkeys(self.by_surface.get(n, []) + self.by_surface.get(singular(n), [])))
        if pic.kind == "logo":  # a brand's name is often a common word ("Sky", "Square", "Swift")
            candidates += [t for s in _COMPANY if (t := self.by_title.get(norm(name + s)))]
            candidates = [t for t in dict.fromkeys(candidates) if ORGANISATION.search(self._description(t))]
            if len(candidates) == 1:
                return LinkResult(candidates[0], "exact" if candidates[0] == self.by_title.get(n) else "surface")
            return self._choose(pic, candidates, self.config.min_similarity) if candidates else None
        if len(candidates) == 1 and candidates[0] == self.by_title.get(n):
            return LinkResult(candidates[0], "exact")
        if len(candidates) == 1 and "(" not in candidates[0]:
            return LinkResult(candidates[0], "surface")  # a plural or a differently written name
        if candidates:  # several senses, or one qualified sense ("Ring (mathematics)") that may not be it
            return self._choose(pic, candidates, self.config.min_similarity)
        return None

    def _description(self, title: str) -> str:
        entity = self.kb.get(title)
        return entity.description if entity else ""

    def _by_head(self, pic: Picture) -> LinkResult:
        """Only a head noun (last one or two words) of a name matches: the embedder must agree."""
        candidates: list[str] = []
        for name in pic.names:
            words = re.findall(r"[a-z][a-z'-]*", norm(name))
            for tail in (words[-2:], words[-1:]):
                if len(tail) and len(tail) < len(words):
                    phrase = " ".join(tail[:-1] + [singular(tail[-1])])
                    candidates += self.by_surface.get(phrase, []) + self.by_surface.get(" ".join(tail), [])
        candidates = list(dict.fromkeys(candidates))
        if not candidates:
            return LinkResult(None, "none")
        return self._choose(pic, candidates, self.config.head_min_similarity)

    def _choose(self, pic: Picture, titles: Sequence[str], threshold: float) -> LinkResult:
        if self.embedder is None or self.entity_vectors is None:
            return LinkResult(None, "ambiguous")
        text = picture_text(pic)
        query = self._vectors.get(text)
        if query is None:
            query = self._vectors[text] = self.embedder.encode([text])[0]  # (D,)
        sims = self.entity_vectors[[self.kb.index(t) for t in titles]] @ query  # (C,)
        best = int(np.argmax(sims))
        if sims[best] < threshold:
            return LinkResult(None, "below-threshold", float(sims[best]))
        return LinkResult(titles[best], "embedder", float(sims[best]))


def picture_text(pic: Picture) -> str:
    """What the embedder compares with "title: description": names, a hint of the kind, a few keywords."""
    hint = KIND_HINT.get(pic.kind, "")
    words = ", ".join(pic.keywords[:8])
    return "; ".join(x for x in (", ".join(pic.names), hint, words) if x)


def read_table(path: str | Path) -> dict[tuple[str, str], str]:
    """Reviewed links: (normalised name, source or "*") -> title ("" = never link this name)."""
    path = Path(path)
    if not path.exists():
        return {}
    table = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise CorpusError(f"{path}:{n}: expected 3 tab-separated columns (name, source or *, title or -)")
        name, source, title = (p.strip() for p in parts)
        table[(norm(name), source)] = "" if title == "-" else title
    return table


# ---- splits --------------------------------------------------------------------------------------
def _unit(text: str, salt: str) -> float:
    """A stable number in [0, 1) from a string."""
    return int(hashlib.sha1(f"{salt}|{text}".encode()).hexdigest()[:12], 16) / 16 ** 12


def entity_split(entity: str, config: SplitConfig) -> str:
    u = _unit(entity, config.seed + "/entity")
    return "test" if u < config.entity_test else "dev" if u < config.entity_test + config.entity_dev else "train"


def assign_split(entity: str, concept: str, style: str, config: SplitConfig) -> tuple[str, str]:
    """(split, why held out) of one picture; see the module docstring."""
    by_entity = entity_split(entity, config)
    if by_entity != "train":
        return by_entity, "entity"
    if style in config.heldout_styles:
        return "test", "style"
    u = _unit(concept, config.seed + "/picture")
    if u < config.picture_test:
        return "test", "picture"
    if u < config.picture_test + config.picture_dev:
        return "dev", "picture"
    return "train", ""


# ---- building ------------------------------------------------------------------------------------
@dataclass
class BuildReport:
    """Counts of a build: pictures read, linked per rule, per source; entities; items per split."""

    read: Counter = field(default_factory=Counter)  # source -> pictures read
    rules: Counter = field(default_factory=Counter)  # "source/rule" -> pictures
    splits: Counter = field(default_factory=Counter)  # "split/heldout" -> items
    entities: int = 0
    items: int = 0
    unavailable: dict = field(default_factory=dict)  # source -> why it was skipped
    manifest_sha256: str = ""

    def linked(self, source: str) -> int:
        return sum(v for k, v in self.rules.items() if k.startswith(source + "/") and k.split("/")[1] in
                   ("table", "exact", "surface", "embedder")) - self.rules.get(f"{source}/over-cap", 0) \
            - self.rules.get(f"{source}/unreadable", 0)

    def to_dict(self) -> dict:
        d = {"read": dict(self.read), "rules": dict(self.rules), "splits": dict(self.splits),
             "entities": self.entities, "items": self.items, "unavailable": dict(self.unavailable),
             "manifest_sha256": self.manifest_sha256}
        d["linked"] = {s: self.linked(s) for s in self.read}
        return d

    def lines(self) -> list[str]:
        out = [f"{s:13s} read {self.read[s]:5d}  linked {self.linked(s):5d}  " +
               " ".join(f"{k.split('/')[1]}={v}" for k, v in sorted(self.rules.items()) if k.startswith(s + "/"))
               for s in self.read]
        out += [f"{s:13s} skipped: {why}" for s, why in self.unavailable.items()]
        out.append(f"{self.items} items, {self.entities} entities; splits: " +
                   ", ".join(f"{k}={v}" for k, v in sorted(self.splits.items())))
        return out


def relabel_out_of_pool(items: list[CorpusItem]) -> list[CorpusItem]:
    """A held-out picture whose entity has no training picture at all is out-of-pool: ``heldout="entity"``.

    (A picture held out by style or by picture is in-pool only if its entity kept another training picture.)"""
    trained = {it.entity for it in items if it.split == "train"}
    return [replace(it, heldout="entity") if it.split != "train" and it.entity not in trained else it
            for it in items]


def corpus_dir(kb_name: str, sources: Sequence[str], limit: int | None = None) -> Path:
    tag = "-".join(sorted(sources)) + (f"-limit{limit}" if limit else "")
    digest = hashlib.sha1(tag.encode()).hexdigest()[:8]
    return cache_dir("corpus", f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', kb_name)}-{digest}")


def build_corpus(kb: KnowledgeBase, linker: NameLinker, out: Path, sources: Sequence[str] = tuple(READERS),
                 limit: int | None = None, split: SplitConfig = SplitConfig(), progress: bool = True,
                 readers: dict | None = None) -> BuildReport:
    """Read, link, render and split; write ``out/corpus.jsonl`` and friends; return the counts."""
    readers = readers or READERS
    unknown = [s for s in sources if s not in readers]
    if unknown:
        raise CorpusError(f"unknown source(s) {unknown}; known: {sorted(readers)}")
    out = Path(out)
    report = BuildReport()
    items: list[CorpusItem] = []
    for source in sources:
        try:
            pictures = list(readers[source]())
        except SourceUnavailable as e:
            report.unavailable[source] = str(e)
            log.warning("source %s skipped: %s", source, e)
            continue
        items += _link_source(pictures[:limit] if limit else pictures, linker, out, report, split, progress)
    items = relabel_out_of_pool(sorted(items, key=lambda it: it.id))
    report.items, report.entities = len(items), len({it.entity for it in items})
    report.splits.update(f"{it.split}/{it.heldout or '-'}" for it in items)
    report.manifest_sha256 = write_manifest(out, items)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=1, sort_keys=True))
    return report


def _link_source(pictures: list[Picture], linker: NameLinker, out: Path, report: BuildReport,
                 split: SplitConfig, progress: bool) -> Iterator[CorpusItem]:
    from tqdm.auto import tqdm

    source = pictures[0].source if pictures else ""
    report.read[source] += len(pictures)
    seen: set[str] = set()
    per_entity: Counter = Counter()
    linker.prime(pictures)
    for pic in tqdm(pictures, desc=f"corpus {source}", disable=not progress, unit="pic"):
        result = linker.link(pic)
        report.rules[f"{pic.source}/{result.rule}"] += 1
        item_id = f"{pic.source}/{safe_name(pic.key)}"
        if result.title is None or item_id in seen:
            continue
        if per_entity[result.title] >= linker.config.max_per_entity:
            report.rules[f"{pic.source}/over-cap"] += 1
            continue
        seen.add(item_id)
        rel = f"images/{item_id}.png"
        if not _write_image(pic, out / rel):
            report.rules[f"{pic.source}/unreadable"] += 1
            continue
        per_entity[result.title] += 1
        split_name, why = assign_split(result.title, pic.concept, pic.style, split)
        yield CorpusItem(item_id, rel, result.title, pic.names, pic.source, pic.style, pic.licence, pic.kind,
                         pic.concept, result.rule, split_name, why)


def safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)


def _write_image(pic: Picture, path: Path) -> bool:
    """Render once (resumable): an existing file is kept. False if the picture cannot be decoded."""
    if path.exists() and path.stat().st_size > 0:
        return True
    try:
        im = pic.load()
    except (OSError, ValueError, SyntaxError) as e:
        log.warning("%s/%s cannot be read: %s", pic.source, pic.key, e)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.png")
    im.save(tmp, optimize=False)
    tmp.replace(path)
    return True


def manifest_text(items: Iterable[CorpusItem]) -> str:
    """corpus.jsonl's text: one item per line; its sha256 is the corpus's identity."""
    return "".join(json.dumps(asdict(it), ensure_ascii=False, sort_keys=True) + "\n" for it in items)


def write_manifest(out: Path, items: Iterable[CorpusItem]) -> str:
    """Write corpus.jsonl and manifest.sha256; return the hash (what a trained artifact records)."""
    out.mkdir(parents=True, exist_ok=True)
    text = manifest_text(items)
    digest = hashlib.sha256(text.encode()).hexdigest()
    (out / "corpus.jsonl").write_text(text, encoding="utf-8")
    (out / "manifest.sha256").write_text(digest + "\n")
    return digest


# ---- reading -------------------------------------------------------------------------------------
@dataclass
class Corpus:
    """A built corpus folder: items, their images, the manifest hash."""

    folder: Path
    items: list[CorpusItem]
    manifest_sha256: str

    @classmethod
    def load(cls, folder: str | Path) -> "Corpus":
        folder = Path(folder)
        path = folder / "corpus.jsonl"
        if not path.exists():
            raise CorpusError(f"{folder} holds no corpus.jsonl: build one with `gemel corpus build`")
        text = path.read_text(encoding="utf-8")
        items = [CorpusItem.from_dict(json.loads(line)) for line in text.splitlines() if line.strip()]
        return cls(folder, items, hashlib.sha256(text.encode()).hexdigest())

    def split(self, name: str, **where: str) -> list[CorpusItem]:
        """Items of one split, optionally filtered by fields: ``corpus.split("test", heldout="style")``."""
        return [it for it in self.items if it.split == name and all(getattr(it, k) == v for k, v in where.items())]

    def path(self, item: CorpusItem) -> Path:
        return self.folder / item.image

    def entities(self, split: str | None = None) -> list[str]:
        return sorted({it.entity for it in self.items if split is None or it.split == split})

    def holding_out_style(self, style: str) -> "Corpus":
        """This corpus with the training pictures of one more art style moved to dev (``heldout="style"``).

        A scorer trained on it has never seen that style, so its scores on those pictures behave as the shipped
        scorer's do on the test split's held-out style (OpenMoji): what a ranker fitted on them learns about an
        unfamiliar style is learned on dev, not on test."""
        styles = sorted({it.style for it in self.split("train")})
        if style not in styles:
            raise CorpusError(f"style {style!r} has no training pictures in {self.folder}: choose one of {styles}")
        items = [replace(it, split="dev", heldout="style") if it.split == "train" and it.style == style else it
                 for it in self.items]
        items = relabel_out_of_pool(items)
        return Corpus(self.folder, items, hashlib.sha256(manifest_text(items).encode()).hexdigest())


def link_entity_texts(kb: KnowledgeBase) -> list[str]:
    """The text each entity is embedded as (the same as candidate retrieval's)."""
    return [e.index_text() for e in kb]


def kb_entities(titles: Iterable[str], kb: KnowledgeBase) -> list[Entity]:
    return [kb.entities[kb.index(t)] for t in titles]
