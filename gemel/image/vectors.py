"""Row-wise vector helpers of the image scorer: unit rows, chunked dot products over memory-mapped KB
vectors, and the normalisation of scores across one query's candidates."""

from __future__ import annotations

import numpy as np
import torch


def normalise_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row scaled to unit length (float32)."""
    return torch.nn.functional.normalize(x.float(), dim=-1)


def dot_rows(queries: np.ndarray, rows: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(B, N) ``queries @ rows.T`` in float32, ``rows`` converted a chunk at a time: a built KB's float16,
    memory-mapped vectors (1M x 384) are never copied whole (1.5 GB in float32) for one picture."""
    out = np.empty((len(queries), len(rows)), dtype=np.float32)
    for lo in range(0, len(rows), chunk):
        out[:, lo:lo + chunk] = queries @ np.asarray(rows[lo:lo + chunk], dtype=np.float32).T
    return out


def normalise(scores: np.ndarray, how: str = "zscore") -> np.ndarray:
    """Normalise (..., N) scores across the last axis (the candidates of one query)."""
    s = np.asarray(scores, dtype=np.float64)
    if how == "none" or s.shape[-1] == 0:
        return s
    if how == "softmax":
        return softmax(s / 0.05)
    std = s.std(-1, keepdims=True)
    return (s - s.mean(-1, keepdims=True)) / np.where(std > 1e-9, std, 1.0)


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] == 0:
        return x
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


