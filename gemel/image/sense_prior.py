"""The LLM's prior over the senses of a shared name, removed before the picture picks among them.

Between the senses of one name ("Nut": ``Nut (fruit)``, ``Nut (hardware)``) the LLM's log-probability says
mostly how common each sense is, not what the caption says: under "We saw Nut on the way home." the offline
default prefers the fruit by ~10 nats, and it does the same when the caption is replaced by the bare word
"Nut". With ``image.remove_sense_prior`` = s (and ``image.choose_sense``: the picture picks among the senses)
s x each sense's log-probability under a *content-free* query is subtracted, as in "calibrate before use"
(Zhao et al., ICML 2021; there s = 1): the same demonstrations, the caption replaced by the bare mention, no
picture. What is left is what the caption says beyond the name, plus (1 - s) of the name's prior: where the
picture cannot tell a monkey from a New World monkey, the common sense should still win.

The subtracted prior is centred over the senses (its mean is 0), so the senses as a group keep their level
against the other candidates; only their order among themselves loses the name's prior. Candidates that are
no sense of the mention are not touched. It costs one short LLM pass (the content-free query on top of the
query's cached demonstrations, :func:`gemel.generation.decoding.refill`; ~0.5 s on 2 cores), only for a picture that
passes the image gates and a mention that names two or more candidates; the priors are kept per (mention,
demonstrations, senses), so re-linking the same item reuses them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence

from gemel.generation.prompt import Segment, query_text


def neutral_segment(mention: str) -> Segment:
    """The content-free query: the caption is the bare mention, and there is no picture."""
    return Segment(query_text(mention, mention), None)


def centred(prior: Mapping[int, float]) -> dict[int, float]:
    """The priors minus their mean (an empty mapping stays empty)."""
    if not prior:
        return {}
    mean = sum(prior.values()) / len(prior)
    return {k: v - mean for k, v in prior.items()}


def calibrated(llm: Sequence[float], prior: Sequence[float | None], share: float = 1.0) -> list[float]:
    """Log-probabilities with ``share`` of the senses' centred prior removed (``prior[i]`` None: not a sense,
    kept)."""
    senses = {i: p for i, p in enumerate(prior) if p is not None}
    shift = centred(senses) if len(senses) >= 2 else {}
    return [v - share * shift.get(i, 0.0) for i, v in enumerate(llm)]


class SensePriorCache:
    """The last ``size`` priors, by (mention, demonstrations, sense rows)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, dict[int, float]] = OrderedDict()

    def get(self, key: Hashable) -> dict[int, float] | None:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key: Hashable, prior: dict[int, float]) -> None:
        self._items[key] = prior
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
