"""Every per-candidate feature the ranker decides on, defined here and only here: its name, its meaning in one
line and its unit (:data:`FEATURES`), and how one link's evidence becomes a (candidates x features) matrix
(:func:`candidate_features`).

A conditional logit compares the candidates of one mention, so a value shared by all of them (the picture's
flatness, whether there is a picture at all) cannot matter on its own: such facts enter as interactions with
per-candidate evidence (the image score on a drawing, the image score on a photo), and the flatness itself
(``picture_flatness``) mixes the ranker's two weight vectors, one for drawings, one for photos
(:class:`gemel.rank.model.Ranker`), whether the mention names any candidate gives the search's similarity a
weight of its own (``retrieval_named``: where a caption names nothing the search finds generic entries), and
whether it names two senses or more gives the picture one (``image_sense``). For the same reason a margin
to the best candidate (``llm_sum`` minus the best's) would add nothing to ``llm_sum`` itself: which candidate is
the best (``llm_best``, ``retrieval_best``) does.

What people labelled enters relative to other pictures, never as a raw similarity: two unrelated drawings in one art
style are as alike (0.3 to 0.5) as two styles of one entity, so a raw ``memory_sim`` or a stored decision's picture
or caption similarity copied a stored decision of another entity to a picture that merely shared its style or its
caption template (measured on the style fold's recurring split, docs/RANKER.md). ``memory_lead`` compares the
nearest labelled picture with those of other labelled entities, ``memory_excess`` and ``decision_excess`` with the
reference pictures (:mod:`gemel.image.reference`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from gemel.text import match_key, name_forms, name_key, names_as_head, without_qualifier


@dataclass(frozen=True)
class Feature:
    name: str
    meaning: str  # one line a newcomer can read
    unit: str


FEATURES: tuple[Feature, ...] = (
    Feature("llm_sum", "log-probability of the name (with EOS) after the prompt", "nats"),
    Feature("llm_mean", "llm_sum divided by the name's token count", "nats per token"),
    Feature("llm_best", "the LLM prefers this candidate to every other (highest llm_sum)", "0/1"),
    Feature("retrieval_sim", "cosine of the mention in context with the entry's 'title: description'", "cosine"),
    Feature("retrieval_best", "retrieval ranks this candidate first (highest retrieval_sim)", "0/1"),
    Feature("retrieval_named", "retrieval_sim when the mention names some candidate (exact, base or head), else 0",
            "cosine"),
    Feature("name_exact", "the mention (or it without 'the' before a capital) is the title or an alias, up to case, "
            "spaces and a plural", "0/1"),
    Feature("name_base", "the mention is the title without its '(...)' qualifier, up to case, spaces and a plural",
            "0/1"),
    Feature("name_head", "the title ends in the mention's words, a compound naming a kind of it", "0/1"),
    Feature("name_overlap", "share of words the mention and the title (qualifier dropped) have in common",
            "Jaccard, 0..1"),
    Feature("has_qualifier", "the title has a '(...)' qualifier (one sense of a shared name)", "0/1"),
    Feature("sense_prior", "log-probability under the bare mention, centred over the senses it names (else 0)",
            "nats"),
    Feature("image_drawing", "the image score (z over the KB) x the picture's flatness (drawing-like: 1)", "z"),
    Feature("image_photo", "the image score (z over the KB) x (1 - flatness) (photo-like: 1)", "z"),
    Feature("image_top", "1 / (1 + rank of the entity among all KB entities by image score)", "0..1"),
    Feature("image_prob", "the image scorer's own probability of this entity (its softmax over the KB): high only"
            " when the scorer is sure", "0..1"),
    Feature("image_known", "the image scorer has exemplar pictures of this entity (and there is a picture)", "0/1"),
    Feature("image_sense", "image_top of a sense the mention names, when it names two or more (else 0)", "0..1"),
    Feature("image_class", "probability the encoder's ImageNet classifier gives the classes that name this entity"
            " (its top 10)", "0..1 (0 without a classifier)"),
    Feature("memory_lead", "how much nearer than any other entity's labelled picture its nearest one is (0 unless"
            " it is the nearest of all)", "difference of the memory's similarity, >= 0"),
    Feature("memory_excess", "how much nearer its nearest labelled picture is than the nearest reference picture"
            " of another entity", "difference of the memory's similarity, >= 0 (0 without a reference)"),
    Feature("decision_excess", "how much nearer the nearest stored decision's picture is than the nearest"
            " reference picture of another entity", "difference of cosines, >= 0 (0 without a reference)"),
    Feature("picture_flatness", "the picture's flatness (same for every candidate): the ranker mixes its drawing and"
            " photo weights by it", "0 (a photo, or no picture) .. 1 (a flat drawing)"),
)
NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
# the features the query picture makes (the image scorer's, the picture memory's, a stored decision's picture): a
# ranker fitted with them at 0 (`gemel fit-ranker --without-picture`) decides from the text alone, with any scorer
PICTURE: frozenset[str] = frozenset({"image_drawing", "image_photo", "image_top", "image_prob", "image_known",
                                     "image_sense", "memory_lead", "memory_excess", "decision_excess",
                                     "picture_flatness"})


@dataclass
class PictureEvidence:
    """What the query picture says about every KB entity (absent: no picture or no image scorer)."""

    scores: np.ndarray  # (N_kb,) the image scorer's fused score of the picture against every KB entity
    flatness: float  # 0 (photo) .. 1 (flat drawing): gemel.image.style.flatness
    known: frozenset[str] = frozenset()  # titles the scorer has exemplar pictures of
    probabilities: np.ndarray | None = None  # (N_kb,) the scorer's softmax of scores with its fitted temperature
    # KB row -> probability of the encoder's ImageNet classes naming it (gemel.image.classes); {} without a classifier
    classes: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = np.asarray(self.scores, dtype=np.float64)
        std = s.std()
        self.z = (s - s.mean()) / (std if std > 1e-9 else 1.0)  # (N_kb,)
        self.order = np.argsort(np.argsort(-s, kind="stable"), kind="stable")  # (N_kb,) rank, 0 = best


@dataclass
class Evidence:
    """One link's evidence for its candidates, gathered by the linker once."""

    mention: str
    titles: Sequence[str]  # the candidates' KB titles
    aliases: Sequence[Sequence[str]]  # each candidate's aliases
    rows: Sequence[int]  # the candidates' KB rows
    llm_sum: Sequence[float]
    tokens: Sequence[int]  # each name's token count (EOS included)
    retrieval_sim: Sequence[float]
    sense_prior: Mapping[int, float] = field(default_factory=dict)  # row -> centred prior (senses only)
    picture: PictureEvidence | None = None
    memory: Mapping[str, float] = field(default_factory=dict)  # title -> nearest labelled picture's similarity
    decisions: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # title -> (caption, picture)
    # title -> the query's (memory similarity, cosine) to the nearest reference picture of another entity
    # (gemel.image.reference); empty without a reference for the encoder
    levels: Mapping[str, tuple[float, float]] = field(default_factory=dict)


def candidate_features(ev: Evidence) -> np.ndarray:
    """(C, F) features of the candidates, columns in :data:`NAMES` order."""
    llm = np.asarray(ev.llm_sum, dtype=np.float64)
    sim = np.asarray(ev.retrieval_sim, dtype=np.float64)
    out = np.zeros((len(ev.titles), len(NAMES)), dtype=np.float64)
    col = {n: i for i, n in enumerate(NAMES)}
    if len(ev.titles) == 0:
        return out
    out[:, col["llm_sum"]] = llm
    out[:, col["llm_mean"]] = llm / np.maximum(1, np.asarray(ev.tokens, dtype=np.float64))
    out[int(np.argmax(llm)), col["llm_best"]] = 1.0
    out[:, col["retrieval_sim"]] = sim
    out[int(np.argmax(sim)), col["retrieval_best"]] = 1.0
    out[:, col["picture_flatness"]] = ev.picture.flatness if ev.picture is not None else 0.0
    for i, (title, aliases, row) in enumerate(zip(ev.titles, ev.aliases, ev.rows)):
        names = name_features(ev.mention, title, aliases)
        for name, value in names.items():
            out[i, col[name]] = value
        out[i, col["sense_prior"]] = ev.sense_prior.get(row, 0.0)
        if ev.picture is not None:
            p = ev.picture
            out[i, col["image_drawing"]] = p.z[row] * p.flatness
            out[i, col["image_photo"]] = p.z[row] * (1.0 - p.flatness)
            out[i, col["image_top"]] = 1.0 / (1.0 + p.order[row])
            out[i, col["image_known"]] = float(title in p.known)
            out[i, col["image_prob"]] = p.probabilities[row] if p.probabilities is not None else 0.0
            out[i, col["image_class"]] = p.classes.get(row, 0.0)
            out[i, col["image_sense"]] = out[i, col["image_top"]] if row in ev.sense_prior else 0.0
        out[i, col["memory_lead"]] = memory_lead(ev.memory, title)
        picture = ev.decisions.get(title, (0.0, 0.0))[1]
        if title in ev.levels:
            level_sim, level_cos = ev.levels[title]
            out[i, col["memory_excess"]] = max(0.0, ev.memory[title] - level_sim) if title in ev.memory else 0.0
            out[i, col["decision_excess"]] = max(0.0, picture - level_cos) if picture != 0.0 else 0.0
    named = out[:, [col["name_exact"], col["name_base"], col["name_head"]]].any()
    out[:, col["retrieval_named"]] = sim if named else 0.0
    return out


def memory_lead(memory: Mapping[str, float], title: str) -> float:
    """How far the nearest labelled picture of ``title`` leads the nearest of every other labelled entity (0 when
    another entity's is nearer, or none is labelled as it). A drawing of another entity in the same art style can
    be near too: what tells a labelled picture of this entity apart is that it is nearer than all of those. With
    a single labelled entity the lead is its similarity itself."""
    own = memory.get(title)
    if own is None:
        return 0.0
    others = max((s for t, s in memory.items() if t != title), default=0.0)
    return max(0.0, own - others)


def name_features(mention: str, title: str, aliases: Sequence[str] = ()) -> dict[str, float]:
    """The name features of one candidate: exact, base, head, overlap, has_qualifier; each the largest over
    the mention's :func:`gemel.text.name_forms` ("the Moon" is `Moon`'s exact name)."""
    forms = [_name_features(form, title, aliases) for form in name_forms(mention)]
    return {k: max(f[k] for f in forms) for k in forms[0]}


def _name_features(mention: str, title: str, aliases: Sequence[str]) -> dict[str, float]:
    m = match_key(mention)
    t = name_key(title)
    base = without_qualifier(t)
    base_key = match_key(base)
    m_words, base_words = m.split(), base_key.split()
    union = set(m_words) | set(base_words)
    return {
        "name_exact": float(bool(m) and (m == match_key(t) or any(m == match_key(a) for a in aliases))),
        "name_base": float(bool(m) and m == base_key and base != t),
        "name_head": float(names_as_head(mention, title)),
        "name_overlap": len(set(m_words) & set(base_words)) / len(union) if union else 0.0,
        "has_qualifier": float(base != t),
    }
