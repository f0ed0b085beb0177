"""The learned decision rule: a conditional logit over one mention's candidates.

Each candidate's score is ``w . z(x)``, its features (:mod:`gemel.rank.features`) standardised with the
training data's means and scales; a softmax over the mention's candidates gives each one's probability. The
answer is the most probable candidate, or NIL when that probability is below ``nil_below`` (fitted with the
weights). A score is a sum of per-feature contributions ``w_j * z_j``: the reasons an answer won.

The artifact is a small JSON file that describes itself: the feature names, weights, standardisation, the NIL
threshold, the regularisation, and the manifest of the data it was fitted on (files and their sha256, counts,
cross-validated accuracy). Fitting lives in :mod:`gemel.training.ranker`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gemel.errors import GemelError
from gemel.rank.features import NAMES

FORMAT = "gemel-ranker/1"


class RankerError(GemelError):
    """A ranker artifact cannot be read or does not fit this code; the message names the file and the fix."""


@dataclass
class Ranker:
    """Weights of the conditional logit, over :data:`gemel.rank.features.NAMES` in that order."""

    weights: np.ndarray  # (F,) one per feature, on standardised features
    mean: np.ndarray  # (F,) training means, subtracted first
    scale: np.ndarray  # (F,) training standard deviations (1 where a feature was constant)
    nil_below: float = 0.0  # answer NIL when the best candidate's probability is below this
    l2: float = 1.0  # the L2 penalty it was fitted with (sum of squared weights x l2 / 2)
    manifest: dict[str, Any] = field(default_factory=dict)  # data files and sha256, counts, CV accuracy

    def __post_init__(self) -> None:
        self.weights, self.mean, self.scale = (np.asarray(a, dtype=np.float64) for a in
                                               (self.weights, self.mean, self.scale))
        if not self.weights.shape == self.mean.shape == self.scale.shape == (len(NAMES),):
            raise RankerError(f"a ranker needs {len(NAMES)} weights, means and scales (one per feature), got "
                              f"{self.weights.shape}, {self.mean.shape}, {self.scale.shape}")

    @property
    def version(self) -> str:
        """A short name of these weights ("ranker-" + 8 hex digits of their hash): what a refit changes."""
        blob = np.concatenate([self.weights, self.mean, self.scale, [self.nil_below]]).round(9).tobytes()
        return "ranker-" + hashlib.sha256(blob).hexdigest()[:8]

    @classmethod
    def uniform(cls) -> "Ranker":
        """All weights 0: every candidate equally likely. Linking with it gathers the learned rule's candidates
        and features without deciding anything (how fitting data is collected)."""
        n = len(NAMES)
        return cls(np.zeros(n), np.zeros(n), np.ones(n), nil_below=0.0, l2=0.0, manifest={"untrained": True})

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(C, F) ``w_j * z_j`` per candidate and feature: what each feature adds to each candidate's score."""
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale * self.weights

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(C,) logits of one mention's candidates."""
        return self.contributions(x).sum(axis=1)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(C,) softmax of the scores over the mention's candidates."""
        return softmax(self.scores(x))

    # ---- artifact ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(format=FORMAT, features=list(NAMES), weights=self.weights.tolist(), mean=self.mean.tolist(),
                 scale=self.scale.tolist())
        return d

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Ranker":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise RankerError(f"ranker {str(path)!r} does not exist: fit one with `gemel fit-ranker`") from e
        except (OSError, ValueError) as e:
            raise RankerError(f"ranker {str(path)!r} is not readable JSON ({e})") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise RankerError(f"{path} is not a GEMEL Studio ranker (format {FORMAT})")
        if d.get("features") != list(NAMES):
            raise RankerError(f"ranker {str(path)!r} was fitted on other features ({d.get('features')}); this code "
                              f"computes {list(NAMES)}: refit it with `gemel fit-ranker`")
        return cls(d["weights"], d["mean"], d["scale"], float(d.get("nil_below", 0.0)), float(d.get("l2", 1.0)),
                   d.get("manifest", {}))


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x
    e = np.exp(x - x.max())
    return e / e.sum()
