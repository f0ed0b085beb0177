"""The learned decision rule: a conditional logit over one mention's candidates.

Each candidate's score is ``w . z(x)``, its features (:mod:`gemel.rank.features`) standardised with the
training data's means and scales; a softmax over the mention's candidates gives each one's probability. The
answer is the most probable candidate, or NIL when that probability is below ``nil_below`` (fitted with the
weights). A score is a sum of per-feature contributions ``w_j * z_j``: the reasons an answer won.

The artifact is a small JSON file that describes itself: the feature names, weights, standardisation, the NIL
threshold, the regularisation, and the manifest of the data it was fitted on (files and their sha256, counts,
cross-validated accuracy) and of the image scorer whose scores it weighed (``manifest["scorer"]``: its version, a
hash of its weights or artifact, and its model's name). Image features mean what that scorer made them mean, so a
ranker recorded for another scorer is refused (:meth:`Ranker.check_scorer`); one fitted without the picture's
features (:data:`TEXT_RANKER`) fits every scorer. A profile that fits its own ranker at
its first start (``[rank] fit_at_start``) keeps it in the cache, one per scorer (:func:`fitted_path`). Fitting
lives in :mod:`gemel.training.ranker`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gemel.errors import GemelError
from gemel.rank.features import NAMES
from gemel.sources import cache_dir

if TYPE_CHECKING:
    from gemel.rank.trees import TreeRanker

FORMAT = "gemel-ranker/1"
NO_SCORER = "none"  # the scorer version recorded by a ranker fitted without an image scorer


# the shipped ranker that reads no picture feature (`gemel fit-ranker --without-picture`): what `[rank] model = ""`
# decides with, whatever the profile's image scorer
TEXT_RANKER = Path(__file__).resolve().parents[1] / "assets" / "models" / "ranker-text.json"


class RankerError(GemelError):
    """A ranker artifact cannot be read or does not fit this code; the message names the file and the fix."""


class RecordsScorer:
    """What every kind of ranker artifact knows of the image scorer it was fitted with (``manifest["scorer"]``)."""

    manifest: dict[str, Any]

    @property
    def reads_picture(self) -> bool:
        """Whether it weighs the picture's features (false: fitted without them, `fit-ranker --without-picture`)."""
        return self.manifest.get("picture", True) is not False

    @property
    def scorer(self) -> str | None:
        """The version of the image scorer it was fitted with (:func:`scorer_record`); None when not recorded (a
        ranker fitted before scorers were recorded: taken as fitted for the profile's own) or when it reads no
        picture feature (it fits every scorer)."""
        record = self.manifest.get("scorer")
        if not self.reads_picture:
            return None
        return str(record["version"]) if isinstance(record, dict) and "version" in record else None

    def check_scorer(self, version: str, where: str | Path = "the ranker") -> None:
        """Refuse this ranker for a profile whose image scorer is ``version`` when it records another one: its
        image features would mean something else."""
        if self.scorer is not None and self.scorer != version:
            record = self.manifest["scorer"]
            fitted = f"{record['version']} ({record['model']})" if record.get("model") else record["version"]
            raise RankerError(f"ranker {str(where)!r} was fitted on the scores of the image scorer {fitted}, this "
                              f"profile scores pictures with {version}: refit it with `gemel fit-ranker --profile ...`"
                              ", or decide with the shipped ranker that reads no picture feature: --set rank.model=\"\"")


FLATNESS = NAMES.index("picture_flatness")


def flatness_of(x: np.ndarray) -> float:
    """The flatness of one mention's picture from its (C, F) features (the same in every row), within 0..1."""
    return float(np.clip(np.asarray(x, dtype=np.float64)[0, FLATNESS], 0.0, 1.0))


@dataclass
class Ranker(RecordsScorer):
    """Weights of the conditional logit, over :data:`gemel.rank.features.NAMES` in that order. With
    ``photo_weights`` it holds two weight vectors, one for flat drawings and one for photos, mixed linearly by the
    picture's flatness: the image scorer, a labelled picture or the caption do not weigh the same on a photo as on
    a drawing, and the drawings, many more in the training data, would otherwise set the photos' weights too."""

    weights: np.ndarray  # (F,) one per feature, on standardised features: for a flat drawing (flatness 1) when
    # photo_weights is set, else for every picture
    mean: np.ndarray  # (F,) training means, subtracted first
    scale: np.ndarray  # (F,) training standard deviations (1 where a feature was constant)
    nil_below: float = 0.0  # answer NIL when the best candidate's probability is below this
    l2: float = 1.0  # the L2 penalty it was fitted with (sum of squared weights x l2 / 2)
    manifest: dict[str, Any] = field(default_factory=dict)  # data files and sha256, counts, CV accuracy
    photo_weights: np.ndarray | None = None  # (F,) for a photo or no picture (flatness 0); None: `weights` always

    def __post_init__(self) -> None:
        self.weights, self.mean, self.scale = (np.asarray(a, dtype=np.float64) for a in
                                               (self.weights, self.mean, self.scale))
        if self.photo_weights is not None:
            self.photo_weights = np.asarray(self.photo_weights, dtype=np.float64)
        photo = self.weights.shape if self.photo_weights is None else self.photo_weights.shape
        if not self.weights.shape == self.mean.shape == self.scale.shape == photo == (len(NAMES),):
            raise RankerError(f"a ranker needs {len(NAMES)} weights, means and scales (one per feature), got "
                              f"{self.weights.shape}, {self.mean.shape}, {self.scale.shape}, photo {photo}")

    @property
    def version(self) -> str:
        """A short name of these weights ("ranker-" + 8 hex digits of their hash): what a refit changes."""
        photo = [] if self.photo_weights is None else self.photo_weights
        blob = np.concatenate([self.weights, self.mean, self.scale, [self.nil_below], photo]).round(9).tobytes()
        return "ranker-" + hashlib.sha256(blob).hexdigest()[:8]

    def weights_for(self, x: np.ndarray) -> np.ndarray:
        """(F,) the weights one mention's candidates are scored with: ``weights`` and ``photo_weights`` mixed by
        its picture's flatness (the same in every row of ``x``)."""
        if self.photo_weights is None or len(x) == 0:
            return self.weights
        flat = flatness_of(x)
        return flat * self.weights + (1.0 - flat) * self.photo_weights

    @classmethod
    def uniform(cls) -> "Ranker":
        """All weights 0: every candidate equally likely. Linking with it gathers the learned rule's candidates
        and features without deciding anything (how fitting data is collected)."""
        n = len(NAMES)
        return cls(np.zeros(n), np.zeros(n), np.ones(n), nil_below=0.0, l2=0.0, manifest={"untrained": True})

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(C, F) ``w_j * z_j`` per candidate and feature: what each feature adds to each candidate's score."""
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale * self.weights_for(x)

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
                 scale=self.scale.tolist(),
                 photo_weights=None if self.photo_weights is None else self.photo_weights.tolist())
        return d

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Ranker":
        """A conditional logit's artifact (:func:`load_ranker` reads either kind)."""
        d = _read(path)
        if d.get("format") != FORMAT:
            raise RankerError(f"{path} is not a GEMEL Studio ranker of the conditional-logit kind (format {FORMAT}; load_ranker reads both kinds)")
        return cls.from_dict(d, str(path))

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str) -> "Ranker":
        names = d.get("features")
        unknown = [n for n in names or [] if n not in NAMES] if isinstance(names, list) else None
        if unknown is None or unknown or len(set(names)) != len(names):
            raise RankerError(f"ranker {str(path)!r} was fitted on features this code does not compute "
                              f"({unknown or names}); it computes {list(NAMES)}: refit it with `gemel fit-ranker`")
        weights, mean, scale = (_over_names(names, d[k], fill) for k, fill in
                                (("weights", 0.0), ("mean", 0.0), ("scale", 1.0)))
        photo = _over_names(names, d["photo_weights"], 0.0) if d.get("photo_weights") is not None else None
        return cls(weights, mean, scale, float(d.get("nil_below", 0.0)), float(d.get("l2", 1.0)),
                   d.get("manifest", {}), photo)


def load_ranker(path: str | Path) -> "Ranker | TreeRanker":
    """The ranker a profile names, whichever kind `gemel fit-ranker` chose: a conditional logit or trees."""
    from gemel.rank.trees import FORMAT as TREES
    from gemel.rank.trees import TreeRanker

    d = _read(path)
    if d.get("format") == TREES:
        return TreeRanker.from_dict(d, str(path))
    if d.get("format") == FORMAT:
        return Ranker.from_dict(d, str(path))
    raise RankerError(f"{path} is not a GEMEL Studio ranker (format {FORMAT} or {TREES})")


def _read(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RankerError(f"ranker {str(path)!r} does not exist: fit one with `gemel fit-ranker`") from e
    except (OSError, ValueError) as e:
        raise RankerError(f"ranker {str(path)!r} is not readable JSON ({e})") from e
    if not isinstance(d, dict):
        raise RankerError(f"{path} is not a GEMEL Studio ranker (a JSON object with format {FORMAT})")
    return d


def _over_names(names: list[str], values: list[float], fill: float) -> np.ndarray:
    """One value per feature of :data:`NAMES` from an artifact's: a feature added since it was fitted gets weight
    0 (and mean 0, scale 1), so an older ranker decides exactly as it did."""
    if len(values) != len(names):
        raise RankerError(f"a ranker artifact lists {len(names)} features but {len(values)} values")
    by_name = dict(zip(names, values))
    return np.array([by_name.get(n, fill) for n in NAMES], dtype=np.float64)


def scorer_version(scorer: Any) -> str:
    """The identity of an image scorer that a ranker records and is checked against: its ``version`` (CLIP's:
    ``clip-`` + a hash of the model's name and weights; the offline scorer's: ``image-scorer-`` + its artifact's
    content hash), or :data:`NO_SCORER`."""
    return str(scorer.version) if scorer is not None else NO_SCORER


def scorer_record(scorer: Any) -> dict[str, str]:
    """What a ranker's manifest records of the image scorer it was fitted with: its version, and its model's name
    where it has one (CLIP's ``hf-hub:org/name``)."""
    record = {"version": scorer_version(scorer)}
    model = getattr(getattr(scorer, "clip", None), "name", "")
    return {**record, "model": str(model)} if model else record


def fitted_path(scorer: str) -> Path:
    """Where the ranker fitted at a profile's first start for the image scorer ``scorer`` (a version) is cached:
    ``<cache>/rankers/<scorer>.json``, its gathered features beside it."""
    return cache_dir("rankers") / f"{scorer}.json"


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x
    e = np.exp(x - x.max())
    return e / e.sum()
