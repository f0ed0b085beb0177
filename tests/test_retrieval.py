"""Tests for gemel/kb/retrieval.py: cosine top-k, exact below the threshold, HNSW above it."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gemel.kb.retrieval import IndexConfig, IndexFormatError, VectorIndex

DIM = 16


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute_force(data: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = unit(queries) @ unit(data).T  # (Q, N)
    ids = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, ids, axis=1), ids


@pytest.fixture
def data() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(300, DIM)) * 3.0  # not unit length


@pytest.mark.parametrize("k", [1, 5, 300])
def test_exact_top_k_equals_brute_force(data: np.ndarray, k: int) -> None:
    index = VectorIndex(DIM)
    index.add(data)
    queries = np.random.default_rng(1).normal(size=(20, DIM))
    sims, ids = index.search(queries, k)
    ref_sims, ref_ids = brute_force(data, queries, k)
    assert sims.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (20, k)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)
    np.testing.assert_array_equal(ids, ref_ids)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # best first


def test_add_returns_ids_and_does_not_touch_input(data: np.ndarray) -> None:
    index = VectorIndex(DIM)
    before = data.copy()
    assert index.add(data[:10]).tolist() == list(range(10))
    assert index.add(data[10:11]).tolist() == [10]
    assert index.add(data[11]).tolist() == [11]  # one (D,) vector
    assert index.add(np.zeros((0, DIM))).tolist() == []
    assert len(index) == 12
    np.testing.assert_array_equal(data, before)  # normalises a copy


def test_incremental_add_equals_one_shot(data: np.ndarray) -> None:
    one, inc = VectorIndex(DIM), VectorIndex(DIM)
    one.add(data)
    for lo in range(0, len(data), 37):
        inc.add(data[lo : lo + 37])
    q = data[:25] + 0.1
    for a, b in zip(one.search(q, 10), inc.search(q, 10)):
        np.testing.assert_array_equal(a, b)


def test_query_shape_and_self_match(data: np.ndarray) -> None:
    index = VectorIndex(DIM)
    index.add(data)
    sims, ids = index.search(data[7], 3)  # (D,) query -> (1, k)
    assert ids.shape == (1, 3) and ids[0, 0] == 7
    assert sims[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_fewer_than_k_pads_and_empty_index() -> None:
    index = VectorIndex(DIM)
    sims, ids = index.search(np.ones(DIM), 4)
    assert ids.tolist() == [[-1] * 4] and np.isneginf(sims).all()
    index.add(np.eye(DIM)[:2])
    sims, ids = index.search(np.ones((3, DIM)), 4)
    assert (ids[:, 2:] == -1).all() and np.isneginf(sims[:, 2:]).all()
    assert sorted(ids[0, :2].tolist()) == [0, 1] and np.isfinite(sims[:, :2]).all()


def test_switch_to_hnsw_keeps_ids_and_recall(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(2)
    data = rng.normal(size=(2000, DIM)).astype(np.float32)
    queries = rng.normal(size=(100, DIM))
    index = VectorIndex(DIM, IndexConfig(exact_threshold=500))
    index.add(data[:400])
    assert index.kind == "flat"
    with caplog.at_level(logging.INFO, logger="gemel.kb.retrieval"):
        ids = index.add(data[400:])
    assert index.kind == "hnsw" and ids.tolist() == list(range(400, 2000))
    assert sum("HNSW" in r.message for r in caplog.records) == 1  # one logged rebuild
    assert index.search(data[123], 1)[1][0, 0] == 123  # ids kept across the rebuild
    _, got = index.search(queries, 16)
    _, ref = brute_force(data, queries, 16)
    recall = np.mean([len(set(g) & set(r)) / 16 for g, r in zip(got, ref)])
    assert recall >= 0.95, recall


def test_threshold_zero_is_hnsw_from_the_start() -> None:
    index = VectorIndex(DIM, {"exact_threshold": 0})
    assert index.kind == "hnsw"
    index.add(np.eye(DIM))
    assert index.search(np.eye(DIM)[3], 1)[1][0, 0] == 3


@pytest.mark.parametrize("threshold", [10, 10_000])
def test_save_load_round_trip(tmp_path, data: np.ndarray, threshold: int) -> None:
    index = VectorIndex(DIM, IndexConfig(exact_threshold=threshold, ef_search=40))
    index.add(data)
    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert loaded.kind == index.kind and len(loaded) == len(index)
    assert loaded.config == index.config and loaded.dim == DIM
    for a, b in zip(index.search(data[:9], 5), loaded.search(data[:9], 5)):
        np.testing.assert_array_equal(a, b)
    assert loaded.add(data[:1]).tolist() == [len(data)]  # still growable


@pytest.mark.parametrize("damage", ["no_folder", "no_json", "wrong_format", "no_index", "bad_dim"])
def test_load_damaged_folder_raises(tmp_path, damage: str) -> None:
    folder = tmp_path / "idx"
    index = VectorIndex(DIM)
    index.add(np.eye(DIM))
    index.save(folder)
    meta = folder / "index.json"
    if damage == "no_folder":
        folder = tmp_path / "missing"
    elif damage == "no_json":
        meta.unlink()
    elif damage == "wrong_format":
        meta.write_text(meta.read_text().replace("gemel-vector-index", "other"))
    elif damage == "no_index":
        (folder / "index.faiss").unlink()
    else:
        meta.write_text(meta.read_text().replace(f'"dim": {DIM}', '"dim": 8'))
    with pytest.raises(IndexFormatError):
        VectorIndex.load(folder)


@pytest.mark.parametrize(
    "field, value",
    [("exact_threshold", -1), ("hnsw_m", 1), ("ef_construction", 0), ("ef_search", 0),
     ("ef_search", 2.5), ("hnsw_m", True)],
)
def test_bad_config_raises(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        IndexConfig(**{field: value})  # type: ignore[arg-type]


def test_unknown_config_key_raises() -> None:
    with pytest.raises(ValueError, match="ef_serach"):
        VectorIndex(DIM, {"ef_serach": 10})


@pytest.mark.parametrize("dim", [0, -3, 2.0, True, "16"])
def test_bad_dim_raises(dim: object) -> None:
    with pytest.raises(ValueError, match="dim"):
        VectorIndex(dim)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "vectors, match",
    [(np.ones((3, DIM + 1)), f"\\(N, {DIM}\\).*got \\(3, {DIM + 1}\\)"),
     (np.ones(DIM - 1), "shape"),
     (np.ones((2, 2, DIM)), "shape"),
     (np.full((2, DIM), np.nan), "NaN"),
     (np.array([["a"] * DIM]), "numbers")],
)
def test_bad_vectors_raise_and_add_nothing(vectors: np.ndarray, match: str) -> None:
    index = VectorIndex(DIM)
    with pytest.raises(ValueError, match=match):
        index.add(vectors)
    with pytest.raises(ValueError, match=match):
        index.search(vectors, 3)
    assert len(index) == 0


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_bad_k_raises(k: object) -> None:
    with pytest.raises(ValueError, match="k must be"):
        VectorIndex(DIM).search(np.ones(DIM), k)  # type: ignore[arg-type]


def test_hnsw_returns_k_results_even_with_small_ef_search(data: np.ndarray) -> None:
    index = VectorIndex(DIM, IndexConfig(exact_threshold=0, ef_search=1))
    index.add(data[:100])
    sims, ids = index.search(data[:3], 50)  # ef_search is raised to k for the call
    assert (ids >= 0).all() and np.isfinite(sims).all()
    assert all(len(set(row)) == 50 for row in ids.tolist())


@pytest.mark.parametrize("config", [IndexConfig(), IndexConfig(exact_threshold=0), IndexConfig(exact_threshold=200)])
def test_stored_vectors_copy_an_index_bit_for_bit(data: np.ndarray, config: IndexConfig) -> None:
    index = VectorIndex(DIM, config)
    index.add(data)
    held = index.stored(range(len(index)))
    assert held.dtype == np.float32 and held.shape == data.shape
    np.testing.assert_allclose(np.linalg.norm(held, axis=1), 1.0, atol=1e-6)  # what it holds is normalised
    copy = VectorIndex(DIM, config)
    copy.add(held, stored=True)  # added as they are: no second normalisation
    np.testing.assert_array_equal(copy.stored(range(len(copy))), held)
    assert index.stored([5, 2]).tolist() == held[[5, 2]].tolist() and index.stored([]).shape == (0, DIM)
    q = data[:7] + 0.3
    for a, b in zip(index.search(q, 20), copy.search(q, 20)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(IndexError):
        index.stored([len(index)])


@pytest.mark.parametrize("config", [IndexConfig(), IndexConfig(exact_threshold=0)])
def test_freeze_gives_a_read_only_view_that_outlives_the_index(data: np.ndarray, config: IndexConfig) -> None:
    import gc

    index = VectorIndex(DIM, config)
    index.add(data)
    held = index.stored(range(len(index)))
    view = index.freeze()
    np.testing.assert_array_equal(view, held)
    assert not view.flags.writeable and not view.flags.owndata  # faiss's memory, not a copy
    with pytest.raises(ValueError, match="frozen"):
        index.add(data[:1])
    assert len(index) == len(data) and index.search(data[:1], 1)[1][0, 0] == 0  # search still works
    del index
    gc.collect()
    np.testing.assert_array_equal(view, held)  # the view keeps the faiss index alive
    assert VectorIndex(DIM).freeze().shape == (0, DIM)
