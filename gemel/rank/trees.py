"""The learned decision rule as a small ensemble of regression trees, with additive reasons.

A gradient-boosted classifier scores each candidate on its features and on how they compare with the other
candidates of the same mention (each feature minus the mention's best and minus its mean), so it can learn what
a linear rule cannot: that a picture scorer's first choice is to be trusted when the scorer knows the entity and
the picture is a drawing, not otherwise. The candidates' probabilities are a softmax of the scores over the
mention, like the conditional logit's (:mod:`gemel.rank.model`).

The reasons stay additive: each tree's output is split along the path the candidate took, every split
crediting the change of the node's value to the feature it tested (path contributions, Saabas 2014); the three
comparisons of one feature are credited to that feature. A candidate's score is then the ensemble's base
value plus the sum of its per-feature contributions, exactly, and the why reads them as it reads the logit's.

The artifact is JSON (format ``gemel-ranker-trees/1``): the trees as arrays, the NIL threshold, and the same
manifest as the logit's. Fitting is :func:`gemel.training.ranker.fit_trees` (scikit-learn); serving needs numpy
alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gemel.rank.features import NAMES
from gemel.rank.model import RankerError, RecordsScorer, softmax

FORMAT = "gemel-ranker-trees/1"
VIEWS = ("value", "minus_best", "minus_mean")  # the columns a tree sees per feature, in this order


def views(x: np.ndarray) -> np.ndarray:
    """(C, 3F) what the trees see of one mention's (C, F) features: each value, its difference to the best
    candidate's value, and to the candidates' mean (:data:`VIEWS`)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return np.zeros((0, 3 * x.shape[1]))
    return np.hstack([x, x - x.max(0), x - x.mean(0)])


@dataclass
class Tree:
    """One regression tree as arrays over its nodes (node 0 the root; a leaf has ``left == -1``)."""

    left: np.ndarray  # (N,) index of the child for ``x[feature] <= threshold``, -1 at a leaf
    right: np.ndarray  # (N,) the other child, -1 at a leaf
    feature: np.ndarray  # (N,) the view column a split tests (-1 at a leaf)
    threshold: np.ndarray  # (N,) the split value
    value: np.ndarray  # (N,) the node's output (scaled by the learning rate); a leaf's is the tree's answer

    def __post_init__(self) -> None:
        self.left, self.right, self.feature = (np.asarray(a, dtype=np.int64) for a in
                                               (self.left, self.right, self.feature))
        self.threshold, self.value = (np.asarray(a, dtype=np.float64) for a in (self.threshold, self.value))

    def path(self, row: np.ndarray) -> list[int]:
        """The nodes one row of views (3F,) passes through, root first, leaf last."""
        nodes = [0]
        while self.left[nodes[-1]] >= 0:
            n = nodes[-1]
            nodes.append(self.left[n] if row[self.feature[n]] <= self.threshold[n] else self.right[n])
        return nodes

    def leaf(self, row: np.ndarray) -> int:
        return self.path(row)[-1]

    def explain(self, v: np.ndarray, into: np.ndarray) -> None:
        """Add each split's change of value along the path of every row of ``v`` (C, 3F) to ``into`` (C, 3F);
        the sum of a row's credits is its leaf value minus the root's."""
        for c in range(len(v)):
            nodes = self.path(v[c])
            for node, nxt in zip(nodes, nodes[1:]):
                into[c, self.feature[node]] += self.value[nxt] - self.value[node]

    def to_dict(self) -> dict[str, list]:
        return {"left": self.left.tolist(), "right": self.right.tolist(), "feature": self.feature.tolist(),
                "threshold": np.round(self.threshold, 9).tolist(), "value": np.round(self.value, 9).tolist()}


@dataclass
class TreeRanker(RecordsScorer):
    """Boosted regression trees over each candidate's :func:`views`; score = ``base`` + the trees' outputs."""

    trees: list[Tree]
    base: float  # the ensemble's starting log-odds (shared by every candidate: no effect on the ranking)
    nil_below: float = 0.0  # answer NIL when the best candidate's probability is below this
    params: dict[str, Any] = field(default_factory=dict)  # depth, rounds, learning rate, leaf size it was fitted with
    manifest: dict[str, Any] = field(default_factory=dict)  # data files and sha256, counts, CV accuracy

    @property
    def version(self) -> str:
        """A short name of this ensemble ("trees-" + 8 hex digits of its hash): what a refit changes."""
        blob = json.dumps([[t.to_dict() for t in self.trees], self.base, self.nil_below]).encode()
        return "trees-" + hashlib.sha256(blob).hexdigest()[:8]

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(C, F) what each feature adds to each candidate's score (its three views together); the row sums are
        the scores minus ``base`` and the roots' values."""
        v = views(x)
        credit = np.zeros_like(v)
        for tree in self.trees:
            tree.explain(v, credit)
        f = len(NAMES)
        return credit[:, :f] + credit[:, f:2 * f] + credit[:, 2 * f:]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(C,) log-odds of each candidate being the right one."""
        roots = self.base + sum(float(t.value[0]) for t in self.trees)
        return roots + self.contributions(x).sum(axis=1)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(C,) softmax of the scores over the mention's candidates."""
        return softmax(self.scores(x))

    # ---- artifact ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "features": list(NAMES), "views": list(VIEWS), "base": self.base,
                "nil_below": self.nil_below, "params": self.params, "trees": [t.to_dict() for t in self.trees],
                "manifest": self.manifest}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict()) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> "TreeRanker":
        names = d.get("features")
        if not isinstance(names, list) or any(n not in NAMES for n in names) or d.get("views") != list(VIEWS):
            raise RankerError(f"ranker {where!r} was fitted on features this code does not compute ({names}); it "
                              f"computes {list(NAMES)}: refit it with `gemel fit-ranker`")
        try:
            trees = [Tree(**t) for t in d["trees"]]
        except (KeyError, TypeError) as e:
            raise RankerError(f"ranker {where!r} has a malformed tree ({e}): refit it with `gemel fit-ranker`") from e
        for t in trees:  # a feature added since the fit is tested by no split: renumber the columns
            t.feature = np.where(t.feature < 0, -1, _column_map(names)[np.maximum(t.feature, 0)])
        return cls(trees, float(d.get("base", 0.0)), float(d.get("nil_below", 0.0)), d.get("params", {}),
                   d.get("manifest", {}))


def _column_map(names: list[str]) -> np.ndarray:
    """Old view column -> the column of the same view and feature among today's :data:`NAMES`."""
    f_old, f_new = len(names), len(NAMES)
    return np.array([v * f_new + NAMES.index(names[j]) for v in range(len(VIEWS)) for j in range(f_old)],
                    dtype=np.int64)
