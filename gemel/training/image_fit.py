"""Fitting the image's part in linking (``image.weight``, ``image.candidates`` and the gates ``min_confidence``,
``min_flatness``, ``max_text_margin``, ``trust_exact_name``) on dev data, one linker pass.

Every part of a candidate's fused score (the LLM's log-probability, the retrieval similarity, the image score)
is independent of ``image.weight``, and the LLM scores each candidate name on its own (teacher forcing over one
shared prompt), so the linker runs once per example with the largest ``image.candidates`` of the grid
(:func:`collect_one`, every gate open) and every setting re-ranks the stored candidates (:func:`choose`): K_img
keeps the text top-K plus the picture's K_img best entities. :func:`fit` picks the setting with the best mean
accuracy over strata (e.g. corpus captions and real photos weigh alike), among those that lose no example of
the ``guard`` strata (the issue's "the image must lose nothing on real photos"), preferring fewer image
candidates (latency) and then the smaller weight on ties. ``bench/image_ablation.py --fit`` runs it on the dev splits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch

from gemel.errors import GemelError
from gemel.generation.decoding import prefill
from gemel.image.gates import confidence, names_exactly, names_sense, text_leaves_open, top_rows
from gemel.image.sense_prior import calibrated
from gemel.types import Example

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
IMAGE_CANDIDATES = (0, 1, 2, 4, 8)
# the gates' grid (bench/image_ablation.py --fit and gemel calibrate --image search all of it)
CONFIDENCES = (0.0, 0.03)
FLATNESSES = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
MARGINS = (math.inf, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
EXACT_NAMES = (False, True)


class ImageFitError(GemelError):
    """The image weight cannot be fitted as asked; the message names the value and the fix."""


@dataclass(frozen=True)
class ImageScored:
    """One example's candidates with every part of their scores, as the linker computed them once."""

    id: str
    gold: str | None
    names: tuple[str, ...]
    llm: tuple[float, ...]  # normalised LLM log-probability per candidate
    sim: tuple[float, ...]  # retrieval similarity
    image: tuple[float, ...] | None  # image score per candidate; None: no picture or the scorer abstained
    text: tuple[bool, ...]  # among the text top-K (else only there as one of the picture's top entities)
    image_rank: tuple[int, ...]  # rank of the candidate among the picture's top entities (-1: not among them)
    stratum: str = "all"
    confidence: float | None = None  # the scorer's confidence on the picture (None: not recorded)
    flatness: float | None = None  # the picture's flatness (gemel.image.style; None: not recorded or no picture)
    named: tuple[bool, ...] | None = None  # the mention is exactly this candidate's name (None: not recorded)
    senses: tuple[bool, ...] | None = None  # the mention names this candidate (image_link.names_sense; None: named)
    # each sense's log-probability under the content-free query (gemel/image/sense_prior.py), not centred; None for a
    # candidate that is no sense; the whole field None: not recorded (or fewer than two senses, or no image score)
    prior: tuple[float | None, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ImageScored":
        image = d.get("image")
        return cls(d["id"], d.get("gold"), tuple(d["names"]), tuple(d["llm"]), tuple(d["sim"]),
                   None if image is None else tuple(image), tuple(d["text"]), tuple(d["image_rank"]),
                   d.get("stratum", "all"), d.get("confidence"), d.get("flatness"),
                   None if d.get("named") is None else tuple(d["named"]),
                   None if d.get("senses") is None else tuple(d["senses"]),
                   None if d.get("prior") is None else tuple(d["prior"]))


def collect_one(linker: Any, ex: Example, stratum: str = "all") -> ImageScored:
    """Link one example (itself excluded from the demonstrations) with the linker's image config, keeping every
    score part and where each candidate came from. ``linker.config.image.candidates`` should be the grid's
    largest K_img."""
    with torch.no_grad():
        qp = linker.build_prompt(ex.image, ex.text, ex.mention, exclude=[ex.id] if ex.id else [], verbatim=False)
        pre = prefill(linker.lm.model, qp.embeds)
        hyps = linker.decode(pre, qp.candidate_ids)
    ranked = linker.rank(hyps, qp.query, qp.image_scores, mention=ex.mention)
    text_rows = set(linker.retrieve_candidates(qp.query))
    img_rank = {r: i for i, r in enumerate(top_rows(qp.image_scores, linker.config.image.candidates))} \
        if qp.image_scores is not None else {}
    rows = [linker.kb.index(c.name) for c in ranked]
    image = None if qp.image_scores is None else tuple(float(c.image_score) for c in ranked)
    senses = tuple(names_sense(ex.mention, c.name) for c in ranked)
    return ImageScored(str(ex.id), ex.entity, tuple(c.name for c in ranked), tuple(c.llm_logprob for c in ranked),
                       tuple(c.retrieval_sim for c in ranked), image, tuple(r in text_rows for r in rows),
                       tuple(img_rank.get(r, -1) for r in rows), stratum,
                       None if qp.image_scores is None else confidence(qp.image_scores, temperature(linker)),
                       picture_flatness(ex.image), tuple(names_exactly(ex.mention, c.name) for c in ranked),
                       senses, sense_priors(linker, qp, ex.mention, rows, senses, pre))


def sense_priors(linker: Any, qp: Any, mention: str, rows: Sequence[int], senses: Sequence[bool],
                 pre: Any = None) -> tuple[float | None, ...] | None:
    """Each sense candidate's prior (:meth:`gemel.linker.Linker.sense_prior`; ``pre``: the query's prefilled
    prompt, used up), None for the others; None when the picture has no image score or fewer than two
    candidates are senses (nothing to calibrate)."""
    if qp.image_scores is None or sum(senses) < 2:
        return None
    prior = linker.sense_prior(qp, mention, [r for r, s in zip(rows, senses) if s], pre)
    return tuple(prior[r] if s else None for r, s in zip(rows, senses))


def picture_flatness(image: Any) -> float | None:
    """The picture's flatness, or None when there is no readable picture."""
    from gemel.image.style import flatness
    from gemel.images import load_image

    try:
        picture = load_image(image)
    except GemelError:
        return None
    return None if picture is None else flatness(picture)


def temperature(linker: Any) -> float:
    return linker.image_scorer.fusion.temperature if linker.image_scorer is not None else 1.0


def choose(item: ImageScored, w_img: float, k_img: int, w_llm: float = 1.0, w_ret: float = 0.0,
           image_only: bool = False, min_confidence: float = 0.0, min_flatness: float = 0.0,
           max_text_margin: float = math.inf, trust_exact_name: bool = False,
           choose_sense: bool = False, remove_sense_prior: float = 0.0) -> str | None:
    """The entity this example gets with image weight ``w_img`` and ``k_img`` image candidates (``image_only``:
    the best image score among those candidates; None without image scores). The gates act as in the linker:
    below ``min_confidence`` or ``min_flatness``, or when the kept candidates' best two text scores are
    ``max_text_margin`` or more apart, or (``trust_exact_name``) the mention names exactly one kept candidate,
    the image score adds nothing (its candidates stay); with ``choose_sense``, where the mention names several
    kept candidates (``item.senses``), only they get the image score, whatever the text's margin, and
    ``remove_sense_prior`` x their recorded prior (``item.prior``), centred over the kept senses, is subtracted
    from their LLM scores first (:mod:`gemel.image.sense_prior`)."""
    if item.image is not None and (min_confidence > 0 and (item.confidence or 0.0) < min_confidence
                                   or min_flatness > 0 and (item.flatness or 0.0) < min_flatness):
        item = replace(item, image=None)
    k_img = k_img if item.image is not None else 0
    keep = [i for i in range(len(item.names)) if item.text[i] or 0 <= item.image_rank[i] < k_img]
    if not keep:
        return None
    if image_only:
        if item.image is None:
            return None
        return item.names[max(keep, key=lambda i: item.image[i])]
    text = [w_llm * item.llm[i] + w_ret * item.sim[i] for i in keep]
    n_named = sum(item.named[i] for i in keep) if item.named is not None else 0
    sense = item.senses if item.senses is not None else item.named
    senses = choose_sense and sense is not None and sum(sense[i] for i in keep) >= 2
    decided = trust_exact_name and n_named == 1 or not text_leaves_open(text, max_text_margin)
    if item.image is None or not senses and decided:
        return item.names[keep[int(np.argmax(text))]]
    if senses and remove_sense_prior > 0 and item.prior is not None:
        llm = calibrated([item.llm[i] for i in keep], [item.prior[i] for i in keep], remove_sense_prior)
        text = [w_llm * v + w_ret * item.sim[i] for v, i in zip(llm, keep)]
    score = [t + (w_img * item.image[i] if not senses or sense[i] else 0.0) for t, i in zip(text, keep)]
    return item.names[keep[int(np.argmax(score))]]


def correct(items: Sequence[ImageScored], w_img: float, k_img: int, w_ret: float, stratum: str, **gates: float) -> int:
    """How many examples of one stratum get their gold entity (``gates``: the image gates of :func:`choose`)."""
    return sum(choose(x, w_img, k_img, w_ret=w_ret, **gates) == x.gold for x in items if x.stratum == stratum)


def accuracy(items: Sequence[ImageScored], w_img: float, k_img: int, w_ret: float, **kw: Any) -> float:
    """Mean over strata of the share of examples whose chosen entity is the gold one."""
    strata = sorted({x.stratum for x in items})
    if not strata:
        raise ImageFitError("no examples to fit on: collect some first")
    per = [np.mean([choose(x, w_img, k_img, w_ret=w_ret, **kw) == x.gold for x in items if x.stratum == s])
           for s in strata]
    return float(np.mean(per))


GATES = ("min_confidence", "min_flatness", "max_text_margin", "trust_exact_name")


@dataclass(frozen=True)
class ImageFit:
    weight: float
    candidates: int
    min_confidence: float
    min_flatness: float
    max_text_margin: float
    trust_exact_name: bool
    accuracy: float  # mean accuracy over strata at the chosen values
    baseline: float  # the same with no image signal (w_img = 0, K_img = 0)
    grid: tuple[tuple[float, ...], ...]  # (w_img, K_img, *GATES, accuracy)

    def gates(self) -> dict[str, float]:
        return {g: getattr(self, g) for g in GATES}


def fit(items: Sequence[ImageScored], w_ret: float, weights: Sequence[float] = WEIGHTS,
        candidates: Sequence[int] = IMAGE_CANDIDATES, guard: Sequence[str] = (),
        confidences: Sequence[float] = (0.0,), flatnesses: Sequence[float] = (0.0,),
        margins: Sequence[float] = (math.inf,), exact_names: Sequence[bool] = (False,),
        choose_sense: bool = False, remove_sense_prior: float = 0.0) -> ImageFit:
    """The (w_img, K_img, min_confidence, min_flatness, max_text_margin, trust_exact_name) with the best mean
    accuracy over strata among those that lose no example of a ``guard`` stratum against no image (w_img = 0,
    K_img = 0, always allowed); ties: fewer candidates, the smaller weight, the higher confidence threshold,
    trusting exact names, the smaller text margin (the image overrules the text least), then the middle of the
    tied flatness thresholds (the gate furthest from both edges of the plateau the dev data allows; of two
    middles the higher, where the image overrules the text less). ``choose_sense`` (``image.choose_sense``) is
    not searched: it is the profile's rule, applied in every setting (dev data rarely holds a shared name); so is
    ``remove_sense_prior``."""
    if not weights or min(weights) < 0 or not candidates or min(candidates) < 0:
        raise ImageFitError(f"weights {list(weights)} and candidates {list(candidates)} must be non-empty and >= 0")
    unknown = set(guard) - {x.stratum for x in items}
    if unknown:
        raise ImageFitError(f"guard strata {sorted(unknown)} have no examples; strata: "
                            f"{sorted({x.stratum for x in items})}")
    floor = {s: correct(items, 0.0, 0, w_ret, s) for s in guard}
    rules = {"choose_sense": choose_sense, "remove_sense_prior": remove_sense_prior}
    settings = [(float(w), int(k), float(c), float(f), float(m), bool(t)) for k in sorted(candidates)
                for w in sorted(weights) for c in sorted(confidences) for f in sorted(flatnesses)
                for m in sorted(margins) for t in exact_names]
    grid = tuple((*g, accuracy(items, g[0], g[1], w_ret, **rules, **dict(zip(GATES, g[2:]))))
                 for g in settings)
    allowed = [g for g in grid
               if all(correct(items, g[0], g[1], w_ret, s, **rules, **dict(zip(GATES, g[2:6])))
                      >= floor[s] for s in guard)]
    allowed.append((0.0, 0, 0.0, 0.0, math.inf, False, accuracy(items, 0.0, 0, w_ret)))
    key = lambda g: (round(g[6], 9), -g[1], -g[0], g[2], g[5], -g[4])  # noqa: E731
    top = key(max(allowed, key=key))
    tied = sorted((g for g in allowed if key(g) == top), key=lambda g: g[3])
    best = tied[len(tied) // 2]  # an even plateau: the upper middle, where the image overrules the text less
    if best[0] == 0 and best[1] == 0:  # no image score and no image candidates: the gates mean nothing, open them
        best = (0.0, 0, 0.0, 0.0, math.inf, False, best[6])
    return ImageFit(*best, baseline=accuracy(items, 0.0, 0, w_ret), grid=grid)


def open_gates(linker: Any) -> Any:
    """A variant of ``linker`` for collecting fit records: the largest K_img, every gate open (the fit then
    re-ranks the stored parts for each setting)."""
    if linker.image_scorer is None:
        raise ImageFitError(f"profile {linker.config.name!r} has no image scorer to fit: set image.scorer (e.g. "
                            "gemel/assets/models/image_scorer.pt) in its [image] section")
    weight = linker.config.image.weight or 1.0
    return linker.replace(config=linker.config.replace(image={
        "weight": weight, "candidates": max(IMAGE_CANDIDATES), "min_confidence": 0.0, "min_flatness": 0.0,
        "max_text_margin": math.inf, "trust_exact_name": False, "choose_sense": False, "remove_sense_prior": 0.0}))


def calibrate_image(linker: Any, examples: Sequence[Example], w_ret: float, *, progress: bool = True) -> ImageFit:
    """Fit ``[image]`` (weight, candidates and the gates) on labelled held-out examples: one linker pass per
    example with every gate open (:func:`open_gates`, :func:`collect_one`), then the whole grid re-ranks the
    stored parts (:func:`fit`). No image is one of the settings, so the result is never worse on these examples
    than linking without the picture; ties go to the setting where the image overrules the text least."""
    from tqdm.auto import tqdm

    if not examples:
        raise ImageFitError("no examples to fit [image] on: give labelled held-out data")
    collector = open_gates(linker)
    items = [collect_one(collector, ex) for ex in tqdm(examples, desc="image fit", unit="mention",
                                                      disable=not progress)]
    return fit(items, w_ret, confidences=CONFIDENCES, flatnesses=FLATNESSES, margins=MARGINS,
               exact_names=EXACT_NAMES, choose_sense=linker.config.image.choose_sense,
               remove_sense_prior=linker.config.image.remove_sense_prior)
