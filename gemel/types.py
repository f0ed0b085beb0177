"""Plain data records shared by every part of GEMEL Studio.

An `Example` is one linked mention (the unit of a demonstration pool, a training set and an
evaluation set); a `Prediction` is what `Linker.link` returns: the chosen entity, the ranked
candidates of the constrained search, and the demonstrations that were put in the prompt, so that
a person can see *why* the model chose what it chose.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """One mention in an image+caption pair, with its gold entity when known."""

    text: str  # the caption / sentence the mention occurs in
    mention: str  # surface form in `text` (a data set's may not be verbatim: see gemel.data.readers)
    entity: str | None = None  # KB title; None = unknown (a query) or NIL
    image: str | None = None  # path or reference of the image; None = text-only
    id: str | None = None  # stable identifier within its source (file line, db row ...)
    source: str = ""  # where it comes from: "seed", "kb", "annotations", a dataset name
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Example":
        known = {k: d[k] for k in ("text", "mention", "entity", "image", "id", "source") if k in d}
        meta = {k: v for k, v in d.items() if k not in known and k != "meta"}
        meta.update(d.get("meta") or {})
        return cls(**known, meta=meta)


@dataclass(frozen=True)
class Candidate:
    """One ranked entity of the constrained search, with every part of its score."""

    name: str  # KB title
    score: float  # the ranker's logit (its probability is the softmax of these over the mention's candidates)
    llm_logprob: float  # log-probability of the name's tokens + EOS, / tokens ** decode.length_penalty
    retrieval_sim: float  # cosine similarity of the query to the KB entry ("title: description")
    description: str = ""  # the KB's short description
    image_score: float | None = None  # the image scorer's score of the query picture, z over the KB (None = no
    # image signal)
    sense_prior: float | None = None  # the sense's centred log-probability under the bare mention (None: the
    # mention names fewer than two candidates; gemel/image/sense_prior.py)
    features: dict[str, float] | None = None  # the ranker's features of this candidate (gemel/rank/features.py)
    probability: float | None = None  # the ranker's probability among the mention's candidates (None: no ranker)
    contributions: dict[str, float] | None = None  # what each feature adds to the score: the ranker's w_j x z_j
    # (the trees': its exact path contribution); they add up to ``score``

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Candidate":
        """From `to_dict` output; dicts written before ``image_score``, ``sense_prior``, ``features``,
        ``probability`` or ``contributions`` existed load with None."""
        return cls(d["name"], float(d["score"]), float(d["llm_logprob"]), float(d["retrieval_sim"]),
                   d.get("description", ""), d.get("image_score"), d.get("sense_prior"), d.get("features"),
                   d.get("probability"), d.get("contributions"))


@dataclass(frozen=True)
class Demonstration:
    """One in-context example as it was placed in the prompt."""

    text: str
    mention: str
    entity: str
    image: str | None  # image reference, None for text-only demonstrations
    similarity: float  # retrieval similarity to the query's mention embedding
    source: str = ""  # "seed", "kb", "annotations", ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Prediction:
    """The linker's answer for one query."""

    entity: str | None  # chosen KB title, None when the best score is below the NIL threshold
    candidates: list[Candidate]  # ranked best first
    demonstrations: list[Demonstration]  # in prompt order (most similar last)
    profile: str = ""  # profile name the linker was loaded with
    mapper: str = "untrained"  # mapper version, "untrained" or "none" (text-only profile)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, and "total"
    prompt_tokens: int = 0  # length of the prefilled prompt (demonstrations, visual prefixes, query)
    source: str = "model"  # "model", or "correction": a person decided this exact item (caption, mention, image)
    corrected_by: str | None = None  # with source "correction": the annotator whose decision it is
    precision: str = ""  # the LLM's precision (float32, bfloat16, float16, int8); "" = not recorded
    image: str = ""  # how the picture took part: "weighed by the ranker, as a drawing|a photo", "shown, not
    # weighed: ...", "off: <why>", "" (no picture)
    image_scorer: str = ""  # the version of the image scorer that scored the picture ("" = none)
    why: dict[str, Any] = field(default_factory=dict)  # the model's answer explained in words
    # (gemel.rank.reasons.Explanation.to_dict: "sentence", "reasons", "against", "picture_unknown", "parts")

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "candidates": [c.to_dict() for c in self.candidates],
            "demonstrations": [d.to_dict() for d in self.demonstrations],
            "profile": self.profile,
            "mapper": self.mapper,
            "timings": dict(self.timings),
            "precision": self.precision,
            "image": self.image,
            "prompt_tokens": self.prompt_tokens,
            "source": self.source,
            "corrected_by": self.corrected_by,
            "image_scorer": self.image_scorer,
            "why": dict(self.why),
        }
