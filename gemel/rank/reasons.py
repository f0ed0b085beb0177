"""Why an answer won, in a reader's words: the same explanation on Link, Review, the API and ``gemel link``.

Every candidate carries ``contributions``: what each part adds to its score (the ranker's ``w_j * z_j`` per
feature, :mod:`gemel.rank.model`; in answers saved before the ranker replaced the fused score, that score's terms:
language model, retrieval, picture, the sense prior taken out). The explanation compares the answer with the runner-up part by part: the differences add up
exactly to the gap between their scores, the largest in the answer's favour are the reasons it won and the largest
against it are what the runner-up had. Each part has one phrase for "the answer has more of it" and one for "less",
so a feature with a negative weight still reads the right way round. No profile key appears in a phrase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# part -> (phrase when the subject has more of it, phrase when it has less); "it" is the subject
PHRASES: dict[str, tuple[str, str]] = {
    # the terms of the fused score, in answers saved before the ranker replaced it
    "llm": ("the language model finds its name likelier after the caption and the examples",
            "the language model finds the other name likelier"),
    "prior": ("its name is not simply the usual sense of the word (that habit is set aside)",
              "the other is the usual sense of the word, and that habit is set aside"),
    "retrieval": ("its description matches the caption better", "the other's description matches the caption better"),
    "image": ("the picture looks like it", "the picture looks more like the other"),
    # the ranker's features (gemel.rank.features)
    "llm_sum": ("the language model finds its name likelier after the caption and the examples",
                "the language model finds the other name likelier"),
    "llm_mean": ("the language model finds each word of its name likelier",
                 "the language model finds each word of the other name likelier"),
    "llm_best": ("it is the language model's first choice", "the language model's first choice is another"),
    "retrieval_sim": ("its description matches the caption better",
                      "the other's description matches the caption better"),
    "retrieval_best": ("it is the best match of the search", "the best match of the search is another"),
    "retrieval_named": ("its description matches the caption better, and the caption names a candidate",
                        "the other's description matches the caption better, and the caption names a candidate"),
    "name_exact": ("the caption names it exactly", "the caption names the other exactly"),
    "name_base": ("the mention is its name without the part in brackets",
                  "the mention is the other's name without the part in brackets"),
    "name_head": ("its name ends in the mention's words", "the other's name ends in the mention's words"),
    "name_overlap": ("its name shares more words with the mention", "the other's name shares more words with the mention"),
    "has_qualifier": ("its name has a part in brackets (one sense of a shared name)",
                      "its name has no part in brackets"),
    "sense_prior": ("it is the usual sense of the bare word", "the other is the usual sense of the bare word"),
    "image_drawing": ("the drawing looks like it", "the drawing looks more like the other"),
    "image_photo": ("the photo looks like it", "the photo looks more like the other"),
    "image_top": ("the picture matches it best among all entities", "the picture matches another entity better"),
    "image_prob": ("the picture scorer is sure it is this one", "the picture scorer is sure it is the other"),
    "image_known": ("the picture scorer has seen pictures of it", "the picture scorer has never seen a picture of it"),
    "image_sense": ("of the senses the name may mean, the picture matches it best",
                    "of the senses the name may mean, the picture matches the other better"),
    "image_class": ("the photo classifier sees a kind of thing that bears its name",
                    "the photo classifier sees a kind of thing that bears the other's name"),
    "memory_lead": ("a picture people labelled as it is nearer this one than any labelled picture of another",
                    "a picture people labelled as the other is the nearest of all labelled pictures"),
    "memory_excess": ("a picture people labelled as it is nearer this one than unrelated pictures are",
                      "a picture people labelled as the other is nearer this one than unrelated pictures are"),
    "decision_excess": ("a saved decision for it has a picture nearer this one than unrelated pictures are",
                        "a saved decision for the other has a picture nearer this one than unrelated pictures are"),
    # the same for every candidate (it sets how the others weigh), so it never tells two candidates apart
    "picture_flatness": ("the picture is more like a drawing", "the picture is more like a photo"),
    # features of answers saved before the ranker read labelled pictures only against others (store history)
    "memory_sim": ("a picture people labelled as it looks like this one",
                   "a picture people labelled as the other looks like this one"),
    "decision_caption": ("a saved decision for it has a similar caption",
                         "a saved decision for the other has a similar caption"),
    "decision_picture": ("a saved decision for it has a similar picture",
                         "a saved decision for the other has a similar picture"),
}
# part -> a short label for tables of numbers
LABELS: dict[str, str] = {
    "llm": "language model", "prior": "usual sense set aside", "retrieval": "description match", "image": "picture",
    "llm_sum": "language model", "llm_mean": "language model, per word", "llm_best": "language model's first",
    "retrieval_sim": "description match", "retrieval_best": "search's first",
    "retrieval_named": "description match, a name given", "name_exact": "named exactly",
    "name_base": "name without brackets", "name_head": "name ends in the mention", "name_overlap": "words shared",
    "has_qualifier": "a sense in brackets", "sense_prior": "usual sense", "image_drawing": "drawing alike",
    "image_photo": "photo alike", "image_top": "picture's best match", "image_prob": "picture scorer sure",
    "image_known": "scorer knows its pictures", "image_class": "photo classifier names it",
    "image_sense": "picture's sense among the name's",
    "memory_sim": "a labelled picture alike", "memory_lead": "nearest labelled picture",
    "decision_caption": "saved decision: caption",
    "decision_picture": "saved decision: picture",
    "memory_excess": "labelled picture, nearer than unrelated", "decision_excess": "saved decision, nearer than unrelated",
    "picture_flatness": "drawing-like picture",
}
TOP = 3  # reasons shown for the answer
AGAINST = 2  # reasons shown for the runner-up


@dataclass(frozen=True)
class Reason:
    part: str  # a key of PHRASES (feature or score term)
    text: str  # the phrase, about the candidate it favours
    value: float  # what it adds to the answer's lead over the runner-up (score units; negative: against)


@dataclass(frozen=True)
class Explanation:
    answer: str | None  # the model's answer (None: NIL or no candidates)
    runner_up: str | None
    gap: float  # the answer's score minus the runner-up's: the sum of every part's value
    reasons: list[Reason] = field(default_factory=list)  # why the answer won, largest first
    against: list[Reason] = field(default_factory=list)  # what the runner-up had, largest first
    picture_unknown: list[str] = field(default_factory=list)  # candidates the picture scorer never saw
    parts: dict[str, float] = field(default_factory=dict)  # every part's value (adds up to ``gap``)

    def sentence(self) -> str:
        """One paragraph: the answer over the runner-up, why, and what the runner-up had."""
        if self.answer is None:
            return (f"Not in the knowledge base: the best candidate, {self.runner_up}, is too unlikely."
                    if self.runner_up else "No candidate: nothing in the knowledge base fits the mention.")
        if self.runner_up is None:
            return f"{self.answer} is the only candidate."
        won = "; ".join(f"{r.text} ({r.value:+.2f})" for r in self.reasons) or "nothing stands out"
        out = f"{self.answer} over {self.runner_up}: {won}."
        if self.against:
            out += f" For {self.runner_up}: " + "; ".join(f"{r.text} ({-r.value:+.2f})" for r in self.against) + "."
        if self.picture_unknown:
            out += (" The picture took part only among what its scorer knows; it has never seen "
                    + ", ".join(self.picture_unknown[:3]) + (" and others" if len(self.picture_unknown) > 3 else "")
                    + ".")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sentence": self.sentence()}


def explain(candidates: Sequence[Mapping[str, Any]], answer: str | None) -> Explanation:
    """The explanation of ``answer`` among ``candidates`` (their ``to_dict`` form, best first)."""
    by_name = {c["name"]: c for c in candidates}
    if answer not in by_name:  # NIL: the best candidate was not likely enough
        best = candidates[0]["name"] if candidates else None
        return Explanation(None, best, 0.0, picture_unknown=_picture_unknown(candidates))
    top, other = by_name[answer], next((c for c in candidates if c["name"] != answer), None)
    if other is None:
        return Explanation(answer, None, 0.0, picture_unknown=_picture_unknown(candidates))
    a, b = top.get("contributions") or {}, other.get("contributions") or {}
    parts = {k: float(a.get(k, 0.0)) - float(b.get(k, 0.0)) for k in {*a, *b}}
    fa, fb = top.get("features") or {}, other.get("features") or {}
    ranked = sorted(((k, v) for k, v in parts.items() if abs(v) > 5e-3 and k in PHRASES), key=lambda kv: -abs(kv[1]))
    reasons = [_reason(k, v, fa, fb) for k, v in ranked if v > 0][:TOP]
    against = [_reason(k, v, fb, fa) for k, v in ranked if v < 0][:AGAINST]
    gap = float(top.get("score", 0.0)) - float(other.get("score", 0.0))
    return Explanation(answer, other["name"], gap, reasons, against, _picture_unknown(candidates), parts)


def _reason(part: str, value: float, subject: Mapping[str, float], rival: Mapping[str, float]) -> Reason:
    """The phrase about the candidate the part favours (``subject``), by whether it has more of the feature."""
    more, less = PHRASES[part]
    has_less = part in subject and float(subject[part]) < float(rival.get(part, 0.0))
    return Reason(part, less if has_less else more, value)


# what the picture adds
PICTURE_PARTS = ("image", "image_drawing", "image_photo", "image_top", "image_known", "image_class", "image_sense")


def _picture_unknown(candidates: Sequence[Mapping[str, Any]]) -> list[str]:
    """Candidates the picture scorer has no picture of, when the picture took part in the scores (it did not
    without a picture, or under a ranker that reads no picture feature) and the scorer knows some of the others."""
    feats = [c.get("features") or {} for c in candidates]
    took_part = any(abs(float((c.get("contributions") or {}).get(k, 0.0))) > 1e-9
                    for c in candidates for k in PICTURE_PARTS)
    if not took_part or not any(f.get("image_known", 0.0) for f in feats):
        return []
    return [c["name"] for c, f in zip(candidates, feats) if not f.get("image_known", 0.0)]
