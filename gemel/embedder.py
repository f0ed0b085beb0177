"""Sentence embedder for retrieval: demonstrations by mention similarity (GEMEL) and KB candidates (beyond it).

GEMEL retrieves in-context examples by the similarity of mention embeddings; we embed the mention in its
context (``"{mention} | {text}"``) and the KB entries as ``"title: description"``. Embeddings are L2-normalised
float32, so inner product = cosine similarity. Large embedding sets are cached on disk by content key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .config import EmbedderConfig
from .sources import cache_dir, resolve

log = logging.getLogger(__name__)


def mention_in_context(text: str, mention: str) -> str:
    """What is embedded for a mention in context: the mention first, so it dominates the embedding."""
    return f"{mention} | {text}"


class TextEmbedder:
    """``encode(texts) -> (N, D)`` L2-normalised float32 embeddings."""

    def __init__(self, model, config: EmbedderConfig, name: str) -> None:  # model: SentenceTransformer
        self.model = model
        self.config = config
        self.name = name
        self.dim = int(model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
                       else model.get_sentence_embedding_dimension())

    @classmethod
    def load(cls, config: EmbedderConfig, base_dir: str | Path = "") -> "TextEmbedder":
        from sentence_transformers import SentenceTransformer

        path = resolve(config.source, base_dir)
        model = SentenceTransformer(str(path) if path else config.source, device="cpu")
        return cls(model, config, name=config.source)

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(list(texts), batch_size=self.config.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=progress)
        return np.ascontiguousarray(out, dtype=np.float32)

    def encode_cached(self, texts: Sequence[str], label: str) -> np.ndarray:
        """Encode a large, stable list once; later calls read ``<cache>/embeddings/<key>.npy``."""
        key = hashlib.sha1(("\n".join(texts) + "\x00" + self.name).encode()).hexdigest()[:16]
        path = cache_dir("embeddings") / f"{label}-{key}.npy"
        if path.exists():
            arr = np.load(path)
            if arr.shape == (len(texts), self.dim):
                return arr
        log.info("embedding %d texts for %s (cached in %s)", len(texts), label, path)
        arr = self.encode(texts, progress=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp.npy")  # one per writer
        np.save(tmp, arr)
        tmp.replace(path)
        return arr
