"""Inter-annotator agreement: percent agreement, Cohen's kappa and Fleiss' kappa.

A *label* is what a decision says about an input: the entity for accept / candidate / search, and
the markers `NIL_LABEL` / `MORE_CONTEXT_LABEL` otherwise, so two annotators agree when they end on
the same entity, however they got there.

- Percent agreement of an item rated by n annotators is the share of agreeing annotator pairs,
  sum_j n_j (n_j - 1) / (n (n - 1)); with two annotators it is 1 when they agree, else 0. The store
  reports its mean over items, times 100.
- Cohen's kappa (Cohen 1960) compares two annotators on the items both rated.
- Fleiss' kappa (Fleiss 1971) assumes the same number of ratings n for every item. Real annotation
  rarely has it, so we use the usual generalisation to unequal counts (Fleiss, Levin & Paik,
  *Statistical Methods for Rates and Proportions*, 2003, sec. 18.1; Gwet's `fleiss.raw`): items
  rated by fewer than 2 annotators are left out, P_i uses each item's own n_i, P-bar is the mean of
  P_i, and the category shares p_j are pooled over all ratings, p_j = sum_i n_ij / sum_i n_i.
  With equal n_i this is exactly Fleiss' formula.

A kappa is `None` when it is undefined: no items, or chance agreement 1 (every rating in a single
category, where percent agreement already says 100%).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

NIL_LABEL = "<NIL>"
MORE_CONTEXT_LABEL = "<MORE_CONTEXT>"


def label_of(decision: str, entity: str | None) -> str:
    """The label a decision votes for (entity, `NIL_LABEL` or `MORE_CONTEXT_LABEL`)."""
    if decision == "nil":
        return NIL_LABEL
    if decision == "more_context":
        return MORE_CONTEXT_LABEL
    return entity or NIL_LABEL


def item_agreement(labels: Sequence[str]) -> float:
    """Share of agreeing pairs among the n >= 2 labels of one item."""
    n = len(labels)
    if n < 2:
        raise ValueError(f"an item needs at least 2 labels to measure agreement, got {n}")
    return sum(c * (c - 1) for c in Counter(labels).values()) / (n * (n - 1))


def percent_agreement(items: Iterable[Sequence[str]]) -> float | None:
    """Mean pairwise agreement over items with >= 2 labels, in percent (None without such items)."""
    scores = [item_agreement(labels) for labels in items if len(labels) >= 2]
    return 100.0 * sum(scores) / len(scores) if scores else None


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two annotators from their (label_a, label_b) per item."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    count_a = Counter(a for a, _ in pairs)
    count_b = Counter(b for _, b in pairs)
    expected = sum(count_a[k] * count_b[k] for k in count_a) / (n * n)
    return _kappa(observed, expected)


def fleiss_kappa_counts(table: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from a table of counts: `table[i][j]` = raters putting item i in category j.

    Rows with fewer than 2 ratings are ignored; rows may have different totals (see module doc).
    """
    rows = [list(r) for r in table if sum(r) >= 2]
    if not rows:
        return None
    if any(c < 0 for r in rows for c in r):
        raise ValueError("counts in a Fleiss table must be >= 0")
    p_bar = sum(_row_agreement(r) for r in rows) / len(rows)
    total = sum(sum(r) for r in rows)
    shares = [sum(r[j] for r in rows) / total for j in range(max(len(r) for r in rows))]
    return _kappa(p_bar, sum(p * p for p in shares))


def fleiss_kappa(items: Iterable[Sequence[str]]) -> float | None:
    """Fleiss' kappa from the labels of each item (items with < 2 labels are ignored)."""
    items = [list(labels) for labels in items if len(labels) >= 2]
    categories = sorted({label for labels in items for label in labels})
    table = [[labels.count(c) for c in categories] for labels in items]
    return fleiss_kappa_counts(table)


def _row_agreement(row: Sequence[int]) -> float:
    n = sum(row)
    return sum(c * (c - 1) for c in row) / (n * (n - 1))


def _kappa(observed: float, expected: float) -> float | None:
    if expected >= 1.0 - 1e-12:
        return None
    return (observed - expected) / (1.0 - expected)


def summarize(decisions: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Agreement over current decisions, each a mapping with `input_id`, `annotator`, `label`.

    Returns items (inputs decided by >= 2 annotators), annotators, percent_agreement,
    fleiss_kappa, cohen_kappa (only when exactly two annotators share items, else None),
    pairwise (Cohen's kappa per annotator pair) and disagreements (the item's decisions, for
    adjudication; extra keys of the mappings are kept).
    """
    by_item: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for d in decisions:
        by_item[d["input_id"]].append(d)
    shared = {k: v for k, v in by_item.items() if len({d["annotator"] for d in v}) >= 2}
    labels = [[d["label"] for d in v] for v in shared.values()]
    pairwise = _pairwise(shared)
    return {
        "items": len(shared),
        "annotators": sorted({d["annotator"] for v in shared.values() for d in v}),
        "percent_agreement": percent_agreement(labels),
        "fleiss_kappa": fleiss_kappa(labels),
        "cohen_kappa": pairwise[0]["kappa"] if len(pairwise) == 1 else None,
        "pairwise": pairwise,
        "disagreements": [
            {"input_id": k, "decisions": [dict(d) for d in v]}
            for k, v in shared.items()
            if len({d["label"] for d in v}) > 1
        ],
    }


def _pairwise(shared: Mapping[Any, list[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for decisions in shared.values():
        label = {d["annotator"]: d["label"] for d in decisions}
        for a, b in combinations(sorted(label), 2):
            pairs[(a, b)].append((label[a], label[b]))
    return [
        {
            "annotators": [a, b],
            "items": len(p),
            "percent_agreement": 100.0 * sum(x == y for x, y in p) / len(p),
            "kappa": cohen_kappa(p),
        }
        for (a, b), p in sorted(pairs.items())
    ]
