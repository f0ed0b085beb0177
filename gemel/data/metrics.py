"""Evaluation of entity-linking predictions: exact-match accuracy with Wilson intervals, and diagnostics.

The headline number is the GEMEL paper's metric (Shi et al., LREC-COLING 2024; ``calc_acc`` in
github.com/HITsz-TMG/GEMEL ``utils.py``): the share of queries whose generated entity name equals the gold
name as a string (surrounding spaces ignored). Here NIL is ``None`` on both sides, so a correct NIL counts.

Beside it: recall@k of the ranked candidate list (is the gold entity among the first k candidates of the
constrained beam search?), precision/recall/F1 of the NIL decision when the gold set has NIL mentions, and
accuracy per mention type (``Example.meta["type"]``, e.g. WikiDiverse's Person / Organization ...).
Evaluation sets in an annotation tool are small, so every accuracy carries a Wilson score interval
(Wilson 1927; Brown, Cai & DasGupta 2001 recommend it over the normal approximation for small n).
Two rules read on the same set are compared where they disagree (:func:`paired_comparison`, the exact McNemar
test): two accuracies of 0.81 and 0.85 on 52 items may come from 2 disagreements or from 20.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from gemel.errors import GemelError
from gemel.types import Example, Prediction


class MetricsError(GemelError):
    """Predictions and golds cannot be compared (lengths differ, a prediction has an unknown shape ...)."""


@dataclass(frozen=True)
class EvalConfig:
    ks: tuple[int, ...] = (1, 3, 5, 10, 16)  # recall@k cut-offs, reported when the candidate lists reach k
    confidence: float = 0.95  # level of the Wilson intervals

    def __post_init__(self) -> None:
        if not self.ks or any(not isinstance(k, int) or k < 1 for k in self.ks):
            raise MetricsError(f"ks={self.ks!r} must be a non-empty tuple of integers >= 1, e.g. (1, 3, 5)")
        if not 0.0 < self.confidence < 1.0:
            raise MetricsError(f"confidence={self.confidence} must be in (0, 1), e.g. 0.95")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) when n == 0."""
    if n < 0 or not 0 <= successes <= n:
        raise MetricsError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # guard rounding at p = 0 or 1


def exact_match(pred: str | None, gold: str | None) -> bool:
    """The paper's metric for one query: equal entity names (outer spaces ignored); None (NIL) equals None."""
    if pred is None or gold is None:
        return pred is None and gold is None
    return pred.strip() == gold.strip()


@dataclass(frozen=True)
class Score:
    """A proportion with its Wilson interval."""

    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float

    @classmethod
    def of(cls, correct: int, n: int, confidence: float) -> Score:
        low, high = wilson_interval(correct, n, confidence)
        return cls(n, correct, correct / n if n else 0.0, low, high)

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "correct": self.correct, "accuracy": self.accuracy,
                "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True)
class PairedComparison:
    """Two rules that answered the same items, compared where they disagree: the items only one of them got
    right, and the exact two-sided McNemar p-value (the sign test on those items: how often a split at least
    this uneven comes from two equally good rules). Accuracies of two rules on one small set differ by noise
    that their separate intervals overstate; what they disagree on is the evidence."""

    n: int  # items both rules answered
    only_first: int  # items the first rule got right and the second wrong
    only_second: int  # items the second rule got right and the first wrong
    p_value: float  # exact two-sided McNemar p-value; 1.0 when they never disagree

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "only_first": self.only_first, "only_second": self.only_second,
                "p_value": self.p_value}


def paired_comparison(first: Sequence[bool], second: Sequence[bool]) -> PairedComparison:
    """Compare two rules item by item (``first[i]``: the first rule is right on item i)."""
    if len(first) != len(second):
        raise MetricsError(f"paired comparison needs one answer per item from each rule, got {len(first)} "
                           f"and {len(second)} answers")
    only_first = sum(bool(a) and not bool(b) for a, b in zip(first, second))
    only_second = sum(bool(b) and not bool(a) for a, b in zip(first, second))
    disagree = only_first + only_second
    tail = sum(math.comb(disagree, k) for k in range(min(only_first, only_second) + 1)) / 2 ** disagree
    return PairedComparison(len(first), only_first, only_second, min(1.0, 2 * tail))


@dataclass(frozen=True)
class NilScores:
    """The NIL decision as a binary classifier whose positive class is NIL."""

    precision: float  # predicted NIL that are gold NIL (0 when nothing was predicted NIL)
    recall: float  # gold NIL predicted NIL
    f1: float
    gold_nil: int
    predicted_nil: int

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "gold_nil": self.gold_nil, "predicted_nil": self.predicted_nil}


@dataclass(frozen=True)
class EvalReport:
    overall: Score  # exact-match accuracy over every query (NIL included)
    recall_at_k: dict[int, float] = field(default_factory=dict)  # over gold non-NIL queries
    nil: NilScores | None = None  # only when the gold set has NIL mentions
    per_type: dict[str, Score] = field(default_factory=dict)  # by Example.meta["type"]
    per_pool: dict[str, Score] = field(default_factory=dict)  # by Example.meta["pool"]: "in-pool" / "out-of-pool"
    confidence: float = 0.95

    @property
    def n(self) -> int:
        return self.overall.n

    @property
    def accuracy(self) -> float:
        return self.overall.accuracy

    @property
    def ci(self) -> tuple[float, float]:
        return self.overall.ci_low, self.overall.ci_high

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "accuracy": self.accuracy, "ci_low": self.overall.ci_low,
                "ci_high": self.overall.ci_high, "correct": self.overall.correct, "confidence": self.confidence,
                "recall_at_k": {str(k): v for k, v in self.recall_at_k.items()},
                "nil": self.nil.to_dict() if self.nil else None,
                "per_type": {t: s.to_dict() for t, s in self.per_type.items()},
                "per_pool": {t: s.to_dict() for t, s in self.per_pool.items()}}

    def table(self) -> str:
        """A plain-text table of every figure, for logs and the CLI."""
        level = f"{round(self.confidence * 100)}% CI"
        rows: list[tuple[str, str, str]] = [("n", str(self.n), ""), _score_row("accuracy", self.overall)]
        rows += [(f"recall@{k}", f"{v:.4f}", "") for k, v in self.recall_at_k.items()]
        if self.nil:
            rows += [("NIL precision", f"{self.nil.precision:.4f}", ""), ("NIL recall", f"{self.nil.recall:.4f}", ""),
                     ("NIL F1", f"{self.nil.f1:.4f}", "")]
        rows += [_score_row(f"type {t} (n={s.n})", s) for t, s in self.per_type.items()]
        rows += [_score_row(f"{t} picture (n={s.n})", s) for t, s in self.per_pool.items()]
        width = max(len(r[0]) for r in rows + [("metric", "", "")])
        lines = [f"{'metric':<{width}}  {'value':>8}  {level}"]
        lines += [f"{name:<{width}}  {value:>8}  {ci}".rstrip() for name, value, ci in rows]
        return "\n".join(lines)


def _score_row(name: str, score: Score) -> tuple[str, str, str]:
    return name, f"{score.accuracy:.4f}", f"[{score.ci_low:.4f}, {score.ci_high:.4f}]"


def _entity_and_candidates(pred: Prediction | Mapping[str, Any] | str | None) -> tuple[str | None, list[str]]:
    if pred is None or isinstance(pred, str):
        return pred, []
    if isinstance(pred, Prediction):
        return pred.entity, [c.name for c in pred.candidates]
    if isinstance(pred, Mapping) and "entity" in pred:
        names = [c if isinstance(c, str) else c.get("name") if isinstance(c, Mapping) else getattr(c, "name", None)
                 for c in pred.get("candidates") or []]
        if any(not isinstance(n, str) for n in names):
            raise MetricsError(f"a candidate of {dict(pred)!r} has no name: give names or {{'name': ...}} dicts")
        return pred["entity"], [str(n) for n in names]
    raise MetricsError(f"prediction {pred!r} is not a Prediction, a dict with 'entity' (as Prediction.to_dict() "
                       "writes), a string or None")


def _recall_at_k(candidates: list[list[str]], golds: Sequence[Example], ks: tuple[int, ...]) -> dict[int, float]:
    longest = max((len(c) for c in candidates), default=0)
    linked = [(cands, g.entity) for cands, g in zip(candidates, golds) if g.entity is not None]
    if not linked or longest == 0:
        return {}
    return {k: sum(any(exact_match(c, gold) for c in cands[:k]) for cands, gold in linked) / len(linked)
            for k in sorted(set(ks)) if k <= longest}


def _nil_scores(entities: list[str | None], golds: Sequence[Example]) -> NilScores | None:
    gold_nil = sum(g.entity is None for g in golds)
    if gold_nil == 0:
        return None
    predicted_nil = sum(e is None for e in entities)
    hits = sum(e is None and g.entity is None for e, g in zip(entities, golds))
    precision = hits / predicted_nil if predicted_nil else 0.0
    recall = hits / gold_nil
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return NilScores(precision, recall, f1, gold_nil, predicted_nil)


def _per_meta(hits: list[bool], golds: Sequence[Example], key: str, confidence: float) -> dict[str, Score]:
    """Accuracy per value of ``Example.meta[key]`` (examples without it are left out)."""
    by_value: dict[str, list[bool]] = {}
    for hit, gold in zip(hits, golds):
        if gold.meta.get(key) is not None:
            by_value.setdefault(str(gold.meta[key]), []).append(hit)
    return {t: Score.of(sum(h), len(h), confidence) for t, h in sorted(by_value.items())}


def evaluate(predictions: Sequence[Prediction | Mapping[str, Any] | str | None], golds: Sequence[Example],
             config: EvalConfig | None = None) -> EvalReport:
    """Compare predictions with gold examples, position by position."""
    config = config or EvalConfig()
    if len(predictions) != len(golds):
        raise MetricsError(f"{len(predictions)} predictions for {len(golds)} gold examples: "
                           "pass one prediction per gold example, in the same order")
    pairs = [_entity_and_candidates(p) for p in predictions]
    entities, candidates = [e for e, _ in pairs], [c for _, c in pairs]
    hits = [exact_match(e, g.entity) for e, g in zip(entities, golds)]
    return EvalReport(overall=Score.of(sum(hits), len(hits), config.confidence),
                      recall_at_k=_recall_at_k(candidates, golds, config.ks),
                      nil=_nil_scores(entities, golds), per_type=_per_meta(hits, golds, "type", config.confidence),
                      per_pool=_per_meta(hits, golds, "pool", config.confidence), confidence=config.confidence)
