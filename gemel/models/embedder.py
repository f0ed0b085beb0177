"""Sentence embedder for retrieval: demonstrations by mention similarity (GEMEL) and KB candidates (beyond it).

GEMEL retrieves in-context examples by the similarity of mention embeddings; we embed the mention in its
context (``"{mention} | {text}"``) and the KB entries as ``"title: description"``. Embeddings are L2-normalised
float32, so inner product = cosine similarity. Large embedding sets are cached on disk by content key.

A local sentence-transformers folder laid out as Transformer -> mean Pooling (-> Normalize), as the offline
default's MiniLM is, runs on transformers alone (`MeanPooledEncoder`): importing ``sentence_transformers``
costs ~115 MB of serving RSS (it imports scikit-learn) for nothing the linker uses. Anything else (hub ids,
other pooling, prompts, extra modules) is loaded by sentence-transformers itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from gemel.config import EmbedderConfig
from gemel.memory import trim_heap
from gemel.sources import cache_dir, resolve

log = logging.getLogger(__name__)

_ST_CONFIG_KEYS = {"max_seq_length", "do_lower_case", "transformer_task", "modality_config", "module_output_name"}


def _module_kind(entry: dict) -> str:
    """'Transformer', 'Pooling', 'Normalize', ... for a modules.json entry of sentence-transformers' own classes
    (old names ``sentence_transformers.models.X``, new ones ``sentence_transformers.<...>.x.X``), else ''."""
    kind = str(entry.get("type", ""))
    return kind.rsplit(".", 1)[-1] if kind.startswith("sentence_transformers.") else ""


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
        path = resolve(config.source, base_dir)
        if path is not None and MeanPooledEncoder.fits(path):
            return cls(MeanPooledEncoder(path), config, name=config.source)
        from sentence_transformers import SentenceTransformer

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


def _plain_transformer(cfg: dict) -> bool:
    """A Transformer module's ``sentence_bert_config.json`` that only truncates: no lower-casing, the last
    hidden states of a plain forward pass as token embeddings (old and new sentence-transformers formats)."""
    text = (cfg.get("modality_config") or {}).get("text", {})
    return (not set(cfg) - _ST_CONFIG_KEYS and not cfg.get("do_lower_case")
            and cfg.get("transformer_task", "feature-extraction") == "feature-extraction"
            and cfg.get("module_output_name", "token_embeddings") == "token_embeddings"
            and not set(cfg.get("modality_config") or {}) - {"text"}
            and text.get("method", "forward") == "forward"
            and text.get("method_output_name", "last_hidden_state") == "last_hidden_state")


def _read_json(path: Path) -> dict | list | None:
    return json.loads(path.read_text()) if path.is_file() else None


class MeanPooledEncoder:
    """A sentence-transformers folder of Transformer -> mean Pooling (-> Normalize), run with transformers
    only, computing what ``SentenceTransformer.encode`` computes: texts sorted by length into batches, padded
    and truncated to ``max_seq_length``, the mean of the last hidden states over the attention mask."""

    def __init__(self, folder: str | Path) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval().requires_grad_(False)
        st_config = _read_json(folder / "sentence_bert_config.json") or {}
        self.max_length = st_config.get("max_seq_length") or min(self.model.config.max_position_embeddings,
                                                                 self.tokenizer.model_max_length)
        self._torch = torch

    @staticmethod
    def fits(folder: Path) -> bool:
        """True for a local folder whose modules are exactly Transformer (at the root, feature extraction, no
        lower-casing), mean Pooling and an optional Normalize, with no non-empty prompt: the layout this class
        reproduces."""
        modules = _read_json(folder / "modules.json") if folder.is_dir() else None
        if not isinstance(modules, list) or len(modules) not in (2, 3):
            return False
        kinds = [_module_kind(m) for m in modules]
        if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]) or modules[0].get("path"):
            return False
        pooling = _read_json(folder / modules[1].get("path", "") / "config.json") or {}
        modes = {k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True}
        if modes != {"pooling_mode_mean_tokens"} and pooling.get("pooling_mode") != "mean":
            return False
        if not _plain_transformer(_read_json(folder / "sentence_bert_config.json") or {}):
            return False
        st_config = _read_json(folder / "config_sentence_transformers.json") or {}
        return not any((st_config.get("prompts") or {}).values()) and not st_config.get("default_prompt_name")

    def get_embedding_dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], batch_size: int = 32, convert_to_numpy: bool = True,
               normalize_embeddings: bool = True, show_progress_bar: bool = False) -> np.ndarray:
        """(N, D) float32 mean-pooled embeddings, L2-normalised when asked; longest texts batched first.
        Bulk encodes hand each batch's freed activations back to the system (`gemel.memory.trim_heap`): the
        heap otherwise grows batch after batch (embedding 2,048 KB demonstration texts: peak 782 -> 654 MB
        anonymous, same time)."""
        torch = self._torch
        order = np.argsort([-len(t) for t in texts])
        out = np.zeros((len(texts), self.get_embedding_dimension()), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                rows = order[start: start + batch_size]
                batch = [texts[i] for i in rows]
                features = self.tokenizer(batch, padding=True, truncation="longest_first",
                                          max_length=self.max_length, return_tensors="pt")
                tokens = self.model(**features).last_hidden_state
                mask = features["attention_mask"].unsqueeze(-1).expand(tokens.size()).to(tokens.dtype)
                pooled = torch.sum(tokens * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)
                if normalize_embeddings:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[rows] = pooled.float().numpy()
                if len(texts) > batch_size:
                    del tokens, mask, pooled, features
                    trim_heap()  # each batch's activations go back: a bulk encode's peak stays one batch's
        return out
