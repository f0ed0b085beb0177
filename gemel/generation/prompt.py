"""GEMEL's in-context prompt: interleaved visual prefixes and text, demonstrations first, the query last.

Each demonstration is ``[visual prefix][Text]{text}\\n[Question]What does {mention} mentioned in the text refer
to?\\n[Answer]{entity}\\n`` (Shi et al. 2024, Fig. 2); the n demonstrations are ordered least similar first, so
the most similar one sits next to the query, which ends in ``[Answer]``. Text-only demonstrations (KB-derived,
or examples without an image) simply have no prefix. The prompt is returned as ``inputs_embeds`` so any causal
LM can take the visual prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from gemel.errors import InputError
from gemel.models.llm import LanguageModel

QUESTION = "[Question]What does {mention} mentioned in the text refer to?\n"


def demo_text(text: str, mention: str, entity: str) -> str:
    return f"[Text]{text}\n" + QUESTION.format(mention=mention) + f"[Answer]{entity}\n"


def query_text(text: str, mention: str) -> str:
    return f"[Text]{text}\n" + QUESTION.format(mention=mention) + "[Answer]"


@dataclass
class Segment:
    """One example of the prompt: its optional visual prefix (k, H) and its text."""

    text: str
    prefix: torch.Tensor | None = None  # (k, H)


class PromptBuilder:
    """Turns segments into ``inputs_embeds``; caches token ids of texts seen before (demonstrations recur)."""

    def __init__(self, lm: LanguageModel, max_tokens: int = 2048, cache_size: int = 65536, bos: bool = True) -> None:
        self.lm = lm
        self.max_tokens = max_tokens
        self.bos_ids = lm.bos_ids if bos else []  # the official GEMEL prompt starts with no BOS
        self._encode = lru_cache(maxsize=cache_size)(lambda s: tuple(lm.encode(s)))

    def length(self, seg: Segment) -> int:
        return len(self._encode(seg.text)) + (0 if seg.prefix is None else seg.prefix.shape[0])

    def fit(self, demos: list[Segment], query: Segment) -> list[Segment]:
        """Drop demonstrations from the front (least similar) until the prompt fits ``max_tokens``."""
        budget = self.max_tokens - self.length(query) - len(self.bos_ids)
        if budget < 0:
            raise InputError(f"the query alone is {self.length(query)} tokens, over llm.max_prompt_tokens="
                             f"{self.max_tokens}: shorten the caption")
        lengths = [self.length(d) for d in demos]
        start = 0
        while sum(lengths[start:]) > budget:
            start += 1
        return demos[start:]

    def token_ids(self, segments: list[Segment]) -> list[int | None]:
        """The prompt as token ids, ``None`` standing for each visual prefix slot (what `embed` embeds)."""
        ids: list[int | None] = list(self.bos_ids)
        for seg in segments:
            ids += [None] * (0 if seg.prefix is None else seg.prefix.shape[0])
            ids += list(self._encode(seg.text))
        return ids

    def embed(self, segments: list[Segment]) -> torch.Tensor:
        """(1, T, H) prompt embeddings: BOS?, then each segment's prefix and text embeddings in order."""
        table = self.lm.model.get_input_embeddings()
        pieces: list[torch.Tensor] = []
        if self.bos_ids:
            pieces.append(self.lm.embed(self.bos_ids))
        for seg in segments:
            if seg.prefix is not None:
                pieces.append(seg.prefix.to(table.weight.dtype))
            pieces.append(self.lm.embed(list(self._encode(seg.text))))
        return torch.cat(pieces, dim=0)[None]  # (1, T, H)
