"""Cosine-similarity vector index over faiss: exact when small, HNSW when large.

GEMEL (Shi et al., LREC-COLING 2024) picks its in-context demonstrations by the similarity of a
query's embedding to those of the training examples; GEMEL Studio also retrieves KB entries and
annotations the same way. Cosine similarity is the inner product of L2-normalised vectors, so the
index normalises a copy of everything it receives and uses faiss's inner-product indexes:

* below `IndexConfig.exact_threshold` vectors: `faiss.IndexFlatIP`, exact brute force;
* at or above it: `faiss.IndexHNSWFlat` with the inner-product metric (Malkov & Yashunin, 2018),
  approximate, logarithmic search time. The index switches once, when an `add` crosses the
  threshold (one rebuild, logged); ids stay 0..len-1 in insertion order.

Saved form (`save(folder)`): `index.faiss` (faiss.write_index) and `index.json` (format, dim,
kind, size and the `IndexConfig`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm.auto import tqdm

from gemel.errors import GemelError

logger = logging.getLogger(__name__)

FORMAT_NAME = "gemel-vector-index"
FORMAT_VERSION = 1
ADD_CHUNK = 65_536  # vectors normalised and added per faiss call (bounds the extra copy)


class IndexFormatError(GemelError):
    """A saved VectorIndex folder is missing, incomplete or inconsistent."""


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"IndexConfig.{name} must be an int >= {minimum}, got {value!r}")


@dataclass
class IndexConfig:
    """How a VectorIndex trades exactness for speed."""

    exact_threshold: int = 100_000  # below: exact IndexFlatIP; at/above: HNSW (0 = always HNSW)
    hnsw_m: int = 32  # HNSW graph degree (neighbours per node); memory ~ 8 * m bytes per vector
    ef_construction: int = 80  # HNSW build beam width: higher = better graph, slower build
    ef_search: int = 64  # HNSW search beam width (raised to k when k is larger): recall vs speed

    def __post_init__(self) -> None:
        _check_int("exact_threshold", self.exact_threshold, 0)
        _check_int("hnsw_m", self.hnsw_m, 2)
        _check_int("ef_construction", self.ef_construction, 1)
        _check_int("ef_search", self.ef_search, 1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IndexConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown IndexConfig keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


class VectorIndex:
    """Cosine top-k search over vectors of one dimension; ids are insertion positions."""

    def __init__(self, dim: int, config: IndexConfig | dict[str, Any] | None = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int (the embedding size), got {dim!r}")
        if isinstance(config, dict):
            config = IndexConfig.from_dict(config)
        self.dim = int(dim)
        self.config = config or IndexConfig()
        self._index: faiss.Index = self._new_index(hnsw=self.config.exact_threshold == 0)
        self._frozen = False  # set by `freeze`: a view of the stored vectors is out, so no more `add`

    @property
    def kind(self) -> str:
        """Either "flat" (exact) or "hnsw" (approximate)."""
        return "hnsw" if isinstance(self._index, faiss.IndexHNSWFlat) else "flat"

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def _new_index(self, hnsw: bool) -> faiss.Index:
        if not hnsw:
            return faiss.IndexFlatIP(self.dim)
        index = faiss.IndexHNSWFlat(self.dim, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.config.ef_construction
        index.hnsw.efSearch = self.config.ef_search
        return index

    def _as_matrix(self, x: np.ndarray, what: str) -> np.ndarray:
        """(N, D) or (D,) numbers -> an (N, D) view, checked (shape, dtype, finite)."""
        x = np.asarray(x)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{what} must have shape (N, {self.dim}) or ({self.dim},), "
                             f"got {np.shape(x)}; embed them with the index's model")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise ValueError(f"{what} must be numbers, got dtype {x.dtype}")
        for lo in range(0, len(x), ADD_CHUNK):
            if not np.isfinite(x[lo : lo + ADD_CHUNK]).all():
                raise ValueError(f"{what} contain NaN or inf; drop or fix those rows first")
        return x

    @staticmethod
    def _normalised(x: np.ndarray) -> np.ndarray:
        """An L2-normalised float32 copy; zero vectors stay zero (similarity 0 to everything)."""
        out = np.array(x, dtype=np.float32, order="C")  # (N, D), always a copy
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def add(self, vectors: np.ndarray, *, progress: bool = False, stored: bool = False) -> np.ndarray:
        """Add (N, D) vectors (a copy is normalised); returns their ids, int64 (N,). ``stored=True``: the rows
        are vectors as an index stores them (from `stored`), added as they are, so that a copied index holds
        the very same bits (normalising a normalised vector again can move its last bit)."""
        if self._frozen:
            raise ValueError("this index is frozen (a view of its vectors is in use): build another to add to")
        x = self._as_matrix(vectors, "vectors")  # checked in full before anything is added
        start = len(self)
        if len(x) and self.kind == "flat" and start + len(x) >= self.config.exact_threshold:
            self._switch_to_hnsw(start + len(x))
        bar = tqdm(total=len(x), desc="indexing vectors", unit="vec", disable=not progress)
        for lo in range(0, len(x), ADD_CHUNK):
            part = x[lo : lo + ADD_CHUNK]
            chunk = np.ascontiguousarray(part, dtype=np.float32) if stored else self._normalised(part)
            self._index.add(chunk)
            bar.update(len(chunk))
        bar.close()
        return np.arange(start, start + len(x), dtype=np.int64)

    def _switch_to_hnsw(self, new_size: int) -> None:
        """One rebuild: the stored (already normalised) vectors go into an HNSW index, same ids."""
        logger.info("VectorIndex: %d vectors reach exact_threshold=%d, rebuilding as HNSW (m=%d)",
                    new_size, self.config.exact_threshold, self.config.hnsw_m)
        old = self._index
        self._index = self._new_index(hnsw=True)
        for lo in range(0, old.ntotal, ADD_CHUNK):
            self._index.add(old.reconstruct_n(lo, min(ADD_CHUNK, old.ntotal - lo)))

    def stored(self, ids: Sequence[int]) -> np.ndarray:
        """The vectors of ``ids`` as the index holds them (L2-normalised float32), (len(ids), D): the index is
        the only copy of what was added, so this is how to copy it without re-embedding."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self)):
            raise IndexError(f"ids must be in 0..{len(self) - 1}")
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self._index.reconstruct_batch(ids).reshape(len(ids), self.dim)

    def freeze(self) -> np.ndarray:
        """A read-only (N, D) view of the vectors the index holds (L2-normalised float32), without a copy, for
        a caller that would otherwise keep its own copy of them; the index takes no more `add` from then on
        (faiss would move its storage). The view keeps the faiss index alive."""
        self._frozen = True
        flat = self._index if self.kind == "flat" else faiss.downcast_index(self._index.storage)
        n = len(self)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        ptr = faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).__array_interface__["data"][0]
        return np.asarray(_Held(self._index, ptr, (n, self.dim)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by cosine: sims float32 (Q, k) and ids int64 (Q, k), best first.

        A (D,) query is treated as (1, D). Missing results (fewer than k vectors) are padded with
        id -1 and similarity -inf.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive int (how many neighbours), got {k!r}")
        q = self._normalised(self._as_matrix(queries, "queries"))
        if len(self) == 0 or len(q) == 0:
            return (np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64))
        params = None
        if self.kind == "hnsw":  # per call (thread-safe); HNSW returns at most efSearch results
            params = faiss.SearchParametersHNSW(efSearch=max(self.config.ef_search, int(k)))
        sims, ids = self._index.search(q, int(k), params=params)
        ids = ids.astype(np.int64, copy=False)
        sims = np.where(ids < 0, np.float32(-np.inf), sims).astype(np.float32)
        return sims, ids

    def save(self, path: str | Path) -> None:
        """Write the folder `path` (created if needed): index.faiss and index.json."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(folder / "index.faiss"))
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "dim": self.dim,
                "kind": self.kind, "size": len(self), "config": asdict(self.config)}
        (folder / "index.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "VectorIndex":
        """Read a folder written by `save`."""
        folder = Path(path)
        meta = _read_meta(folder)
        try:
            index = faiss.read_index(str(folder / "index.faiss"))
        except RuntimeError as e:
            raise IndexFormatError(f"cannot read {folder / 'index.faiss'}: {e}") from e
        out = cls(meta["dim"], IndexConfig.from_dict(meta["config"]))
        if index.d != out.dim or index.ntotal != meta["size"]:
            raise IndexFormatError(f"{folder}: index.faiss has dim {index.d} and {index.ntotal} "
                                   f"vectors, index.json says {out.dim} and {meta['size']}")
        out._index = index
        if out.kind != meta["kind"]:
            raise IndexFormatError(f"{folder}: index.faiss is {out.kind}, index.json says "
                                   f"{meta['kind']!r}; save it again")
        if out.kind == "hnsw":
            index.hnsw.efSearch = out.config.ef_search
        return out


class _Held:
    """Exposes faiss-owned float32 memory to numpy, read-only, and keeps its owner (the faiss index) alive."""

    def __init__(self, owner: faiss.Index, ptr: int, shape: tuple[int, int]) -> None:
        self.owner = owner
        self.__array_interface__ = {"data": (ptr, True), "shape": shape, "typestr": "<f4", "version": 3}


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError) as e:
        raise IndexFormatError(f"{folder} holds no readable index.json ({e}); "
                               "pass a folder written by VectorIndex.save") from e
    if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise IndexFormatError(f"{folder}/index.json has format {meta.get('format')!r} version "
                               f"{meta.get('version')!r}; expected {FORMAT_NAME!r} {FORMAT_VERSION}")
    missing = {"dim", "kind", "size", "config"} - set(meta)
    if missing:
        raise IndexFormatError(f"{folder}/index.json lacks {sorted(missing)}; save it again")
    return meta
