"""The LLM's prior over the senses of a shared name: the ranker's ``sense_prior`` feature.

Between the senses of one name ("Nut": ``Nut (fruit)``, ``Nut (hardware)``) the LLM's log-probability says
mostly how common each sense is, not what the caption says: under "We saw Nut on the way home." the offline
default prefers the fruit by ~10 nats, and it does the same when the caption is replaced by the bare word
"Nut". Each sense's log-probability under a *content-free* query, as in "calibrate before use" (Zhao et al.,
ICML 2021: the same demonstrations, the caption replaced by the bare mention, no picture), centred over the senses
(its mean is 0), is a feature: the ranker learns how much of the name's prior to set aside against the picture
and the caption. Candidates that are no sense of the mention get 0. It costs one short LLM pass (the
content-free query on top of the query's cached demonstrations, :func:`gemel.generation.decoding.refill`; ~0.5 s
on 2 cores), only for a mention that names two or more candidates; the priors are kept per (mention,
demonstrations, senses), so re-linking the same item reuses them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping

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
