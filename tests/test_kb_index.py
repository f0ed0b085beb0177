"""Tests for gemel/kb/index.py: the on-disk IVF index equals exact search when it probes every list, its nprobe
is the measured smallest one reaching the target recall, and the exact reference is right."""

from __future__ import annotations

import numpy as np
import pytest

from gemel.kb.index import (
    ExactIndex,
    IVFIndex,
    KBIndexConfig,
    KBIndexError,
    build_ivf,
    exact_search,
    gather,
    recall_at_k,
)


def unit(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    vectors = unit(3000).astype(np.float16)
    folder = tmp_path_factory.mktemp("ivf")
    np.save(folder / "v.npy", vectors)
    vectors = np.load(folder / "v.npy", mmap_mode="r")
    config = KBIndexConfig(exact_below=1, k=8, target_recall=0.9, sample_queries=50)
    meta = build_ivf(vectors, folder / "index", config, unit(50, seed=1), progress=False)
    return vectors, IVFIndex(folder / "index"), meta, config


def test_exact_search_is_the_brute_force_top_k():
    v, q = unit(500), unit(7, seed=3)
    sims, ids = exact_search(v, q, 5)
    expected = np.argsort(-(q @ v.T), axis=1)[:, :5]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(q @ v.T, expected, 1), rtol=1e-5)
    np.testing.assert_array_equal(ExactIndex(v).search(q, 5)[1], expected)


def test_exact_search_over_a_mapped_kb_read_in_steps_is_the_brute_force_top_k(tmp_path):
    np.save(tmp_path / "v.npy", unit(40_000))  # three read steps, pages dropped between them
    v, q = np.load(tmp_path / "v.npy", mmap_mode="r"), unit(9, seed=4)
    sims, ids = exact_search(v, q, 16)
    expected = np.argsort(-(q @ np.asarray(v).T), axis=1)[:, :16]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(q @ np.asarray(v).T, expected, 1), rtol=1e-5)


def test_gather_reads_the_rows_in_steps_as_float32(tmp_path):
    np.save(tmp_path / "v.npy", unit(1000).astype(np.float16))
    v = np.load(tmp_path / "v.npy", mmap_mode="r")
    rows = np.array([0, 3, 3, 17, 500, 999])
    got = gather(v, rows, step=4)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.asarray(v[rows], np.float32))


def test_ivf_probing_every_list_is_exact(built):
    vectors, index, meta, _ = built
    q = unit(20, seed=5)
    _, truth = exact_search(vectors, q, 8)
    _, found = index.search(q, 8, nprobe=meta["nlist"])
    np.testing.assert_array_equal(found, truth)
    assert sorted(np.asarray(index.rows).tolist()) == list(range(len(vectors)))  # every row in one list


def test_nprobe_is_the_smallest_power_of_two_reaching_the_target(built):
    vectors, index, meta, config = built
    queries = unit(50, seed=1)
    _, truth = exact_search(vectors, queries, config.k)
    recall = recall_at_k(index.search(queries, config.k, meta["nprobe"])[1], truth)
    assert recall == pytest.approx(meta["recall"]) and recall >= config.target_recall
    if meta["nprobe"] > 1:
        assert recall_at_k(index.search(queries, config.k, meta["nprobe"] // 2)[1], truth) < config.target_recall
    assert meta["nlist"] == min(len(vectors) // 39, int(config.lists_per_sqrt * np.sqrt(len(vectors))))  # >= 39 a list


def test_recall_at_k_counts_shared_ids():
    assert recall_at_k(np.array([[1, 2, 3], [4, 5, 6]]), np.array([[3, 2, 9], [7, 8, 9]])) == pytest.approx(2 / 6)


@pytest.mark.parametrize("kwargs", [{"exact_below": 0}, {"target_recall": 1.5}, {"lists_per_sqrt": 0}])
def test_bad_index_configs_are_refused(kwargs):
    with pytest.raises(KBIndexError, match="bad KBIndexConfig"):
        KBIndexConfig(**kwargs)
