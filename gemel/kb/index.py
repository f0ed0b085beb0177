"""Vector search over a built KB's memory-mapped embeddings: exact when small, an inverted file (IVF) when large.

A KB of millions of entries cannot hold its vectors in memory, and an HNSW graph over them takes most of an
hour to build on two cores. An IVF index (Jégou et al., 2011; faiss's ``IndexIVFFlat``) clusters the vectors
with k-means into ``nlist`` lists and searches only the ``nprobe`` lists whose centroids are nearest to the
query. Here the lists live on disk: the vectors are written once more in list order (``list_vectors.npy``,
float16, memory-mapped), so a probe reads ``nprobe`` contiguous slices and only those pages are resident.

* below ``KBIndexConfig.exact_below`` vectors: exact search (the vectors are read into one float32 matrix);
* at or above it: IVF, ``nlist = lists_per_sqrt * sqrt(N)``; ``nprobe`` is picked at build time as the smallest
  power of two whose recall@k against exact search reaches ``target_recall`` on sample queries (measured, and
  recorded in ``ivf.json``).

With ``nprobe = nlist`` the IVF search is exact (tested equal to the reference).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from tqdm.auto import tqdm

from gemel.errors import GemelError
from gemel.memory import drop_pages

log = logging.getLogger(__name__)

IVF_FORMAT = "gemel-kb-ivf"
CHUNK = 65_536  # vectors scored per matrix product when assigning or searching exactly (bounds the float32 copy)
GATHER = 16_384  # rows read per step from mapped vectors whose pages are dropped in between
SCATTER = 4_096  # random rows read per step: each maps a whole 64 KB window of the file (fault-around)


class KBIndexError(GemelError):
    """A KB's vector index is missing, inconsistent or asked for something impossible."""


@dataclass(frozen=True)
class KBIndexConfig:
    """How a built KB's vectors are searched."""

    exact_below: int = 100_000  # fewer vectors: exact search; at or above: IVF
    lists_per_sqrt: float = 4.0  # nlist = lists_per_sqrt * sqrt(N) (faiss's rule of thumb: 4..16)
    train_per_list: int = 40  # k-means training sample = train_per_list * nlist vectors (faiss warns below 39)
    kmeans_iter: int = 10  # k-means iterations
    target_recall: float = 0.97  # nprobe is raised until recall@k on the sample queries reaches this
    k: int = 16  # the k of recall@k (the linker's decode.candidates)
    sample_queries: int = 300  # queries used to pick nprobe
    seed: int = 0

    def __post_init__(self) -> None:
        if self.exact_below < 1 or not 0 < self.target_recall <= 1 or self.lists_per_sqrt <= 0:
            raise KBIndexError(f"bad KBIndexConfig {self}: exact_below >= 1, 0 < target_recall <= 1 and "
                               "lists_per_sqrt > 0 are needed")


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k by inner product over (N, D) vectors, read in chunks: sims (Q, k) float32, ids (Q, k)."""
    q = np.asarray(queries, np.float32).reshape(-1, vectors.shape[1])
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for lo in range(0, len(vectors), GATHER):  # 300 queries: ~100 MB of work arrays (65k rows: ~500 MB)
        sims = q @ np.asarray(vectors[lo:lo + GATHER], np.float32).T  # (Q, step)
        drop_pages(vectors)  # a memory-mapped KB is streamed, not left resident
        s, i = _top(sims, np.broadcast_to(np.arange(lo, lo + sims.shape[1]), sims.shape), k)
        best_s, best_i = _top(np.concatenate([best_s, s], axis=1), np.concatenate([best_i, i], axis=1), k)
    return best_s, best_i


def _top(sims: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of every row, best first."""
    if sims.shape[1] > k:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        sims, ids = np.take_along_axis(sims, part, 1), np.take_along_axis(ids, part, 1)
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the true top-k ids (Q, k) that ``found`` (Q, k) holds."""
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / max(1, truth.size)


class ExactIndex:
    """Exact inner-product search over the KB's vectors, held as one float32 faiss matrix (small KBs)."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray) -> None:
        self._index = faiss.IndexFlatIP(vectors.shape[1])
        for lo in range(0, len(vectors), CHUNK):
            self._index.add(np.ascontiguousarray(vectors[lo:lo + CHUNK], np.float32))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k sims (Q, k) and row ids (Q, k), best first; padded with -inf / -1 past the KB's size."""
        q = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(-1, self._index.d))
        sims, ids = self._index.search(q, int(k))
        return np.where(ids < 0, np.float32(-np.inf), sims).astype(np.float32), ids.astype(np.int64)


class IVFIndex:
    """Inverted-file search over list-ordered, memory-mapped float16 vectors (see the module docstring)."""

    kind = "ivf"

    def __init__(self, folder: Path, nprobe: int | None = None) -> None:
        meta = json.loads((folder / "ivf.json").read_text())
        if meta.get("format") != IVF_FORMAT:
            raise KBIndexError(f"{folder}/ivf.json is not a {IVF_FORMAT} index; build the KB again")
        self.meta = meta
        self.nprobe = int(nprobe or meta["nprobe"])
        self.centroids = np.load(folder / "centroids.npy")  # (nlist, D) float32, small
        self.offsets = np.load(folder / "offsets.npy")  # (nlist + 1,) int64: list j = offsets[j]:offsets[j+1]
        self.rows = np.load(folder / "rows.npy", mmap_mode="r")  # (N,) int32: KB row of each list position
        self.vectors = np.load(folder / "list_vectors.npy", mmap_mode="r")  # (N, D) float16, list order

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k sims (Q, k) and KB row ids (Q, k) among the ``nprobe`` nearest lists, best first."""
        q = np.asarray(queries, np.float32).reshape(-1, self.centroids.shape[1])
        probe = min(int(nprobe or self.nprobe), len(self.centroids))
        lists = np.argpartition(-(q @ self.centroids.T), probe - 1, axis=1)[:, :probe]  # (Q, nprobe)
        out_s = np.full((len(q), k), -np.inf, np.float32)
        out_i = np.full((len(q), k), -1, np.int64)
        for j, (query, chosen) in enumerate(zip(q, lists)):
            spans = [(int(self.offsets[c]), int(self.offsets[c + 1])) for c in np.sort(chosen)]
            pos = np.concatenate([np.arange(lo, hi) for lo, hi in spans])
            sims = np.concatenate([np.asarray(self.vectors[lo:hi], np.float32) @ query for lo, hi in spans])
            s, i = _top(sims[None], pos[None], min(k, len(pos)))
            out_s[j, :s.shape[1]], out_i[j, :s.shape[1]] = s[0], self.rows[i[0]]
        return out_s, out_i


def build_ivf(vectors: np.ndarray, folder: Path, config: KBIndexConfig, queries: np.ndarray,
              progress: bool = True) -> dict:
    """Write an IVF index of (N, D) ``vectors`` (float16 memmap) to ``folder``; returns its ivf.json record
    (nlist, nprobe and the recall@k measured on ``queries``)."""
    folder.mkdir(parents=True, exist_ok=True)
    n, dim = vectors.shape
    nlist = max(1, min(n // 39, int(config.lists_per_sqrt * np.sqrt(n))))
    centroids = _train(vectors, nlist, config)
    assign = _assign(vectors, centroids, progress)
    order = np.argsort(assign, kind="stable").astype(np.int32)  # list order; rows ascending inside a list
    offsets = np.concatenate([[0], np.cumsum(np.bincount(assign, minlength=nlist))]).astype(np.int64)
    np.save(folder / "centroids.npy", centroids)
    np.save(folder / "offsets.npy", offsets)
    np.save(folder / "rows.npy", order)
    out = np.lib.format.open_memmap(folder / "list_vectors.npy", "w+", np.float16, (n, dim))
    for lo in tqdm(range(0, n, SCATTER), desc="writing lists", disable=not progress):
        out[lo:lo + SCATTER] = vectors[order[lo:lo + SCATTER]]
        out.flush()
        drop_pages(out)
        drop_pages(vectors)
    del out
    meta = {"format": IVF_FORMAT, "version": 1, "size": n, "dim": dim, "nlist": nlist, "config": asdict(config)}
    (folder / "ivf.json").write_text(json.dumps({**meta, "nprobe": nlist}))
    meta.update(_pick_nprobe(IVFIndex(folder), vectors, queries, config))
    (folder / "ivf.json").write_text(json.dumps(meta, indent=1))
    return meta


def _train(vectors: np.ndarray, nlist: int, config: KBIndexConfig) -> np.ndarray:
    """k-means centroids (nlist, D) float32 of a random sample, normalised (inner-product lists)."""
    rng = np.random.default_rng(config.seed)
    size = min(len(vectors), config.train_per_list * nlist)
    sample = gather(vectors, np.sort(rng.choice(len(vectors), size, replace=False)))
    km = faiss.Kmeans(vectors.shape[1], nlist, niter=config.kmeans_iter, spherical=True, seed=config.seed,
                      min_points_per_centroid=1, max_points_per_centroid=config.train_per_list)
    km.train(sample)
    return np.ascontiguousarray(km.centroids, np.float32)


def gather(vectors: np.ndarray, rows: np.ndarray, step: int = GATHER) -> np.ndarray:
    """``vectors[rows]`` as float32, ``step`` rows at a time with the mapped pages dropped in between: 160k
    random rows of a 1M KB touch most of its pages, and a float16 copy beside the float32 one would add half
    the sample again (the IVF training sample of a 1M KB is 245 MB as float32)."""
    out = np.empty((len(rows), vectors.shape[1]), np.float32)
    for lo in range(0, len(rows), step):
        out[lo:lo + step] = vectors[rows[lo:lo + step]]
        drop_pages(vectors)
    return out


def _assign(vectors: np.ndarray, centroids: np.ndarray, progress: bool) -> np.ndarray:
    """The nearest centroid (by inner product) of every vector, (N,) int64, in chunks."""
    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(centroids)
    out = np.empty(len(vectors), np.int64)
    for lo in tqdm(range(0, len(vectors), CHUNK), desc="assigning lists", disable=not progress):
        _, ids = quantizer.search(np.ascontiguousarray(vectors[lo:lo + CHUNK], np.float32), 1)
        drop_pages(vectors)
        out[lo:lo + len(ids)] = ids[:, 0]
    return out


def _search_streamed(index: IVFIndex, queries: np.ndarray, k: int, nprobe: int, step: int = 1) -> np.ndarray:
    """The ids of ``index.search``, one query at a time with the list pages dropped in between: 300 queries at
    nprobe 64 read most of a 1M KB's lists (8 of them ~500 MB of pages, the real queries' lists being the large
    ones), which a serving process may keep resident but a build need not."""
    found = []
    for lo in range(0, len(queries), step):
        found.append(index.search(queries[lo:lo + step], k, nprobe)[1])
        drop_pages(index.vectors)
    return np.concatenate(found) if found else np.zeros((0, k), np.int64)


def _pick_nprobe(index: IVFIndex, vectors: np.ndarray, queries: np.ndarray, config: KBIndexConfig) -> dict:
    """The smallest power-of-two nprobe whose recall@k on ``queries`` reaches the target, with that recall."""
    _, truth = exact_search(vectors, queries, config.k)
    nlist = len(index.centroids)
    nprobe, recall = 1, 0.0
    while True:
        recall = recall_at_k(_search_streamed(index, queries, config.k, nprobe), truth)
        log.info("IVF nlist=%d nprobe=%d: recall@%d %.3f", nlist, nprobe, config.k, recall)
        if recall >= config.target_recall or nprobe >= nlist:
            return {"nprobe": min(nprobe, nlist), "recall": recall, "queries": len(queries)}
        nprobe *= 2
