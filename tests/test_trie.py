"""Tests for gemel/generation/trie.py: ArrayTrie must behave exactly like the DictTrie reference."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gemel.generation.trie import (
    ArrayTrie,
    DictTrie,
    Trie,
    TrieError,
    TrieFormatError,
    build_trie,
    prefix_allowed_tokens_fn,
)

EOS = 2


@st.composite
def sequence_sets(draw: st.DrawFn) -> list[list[int]]:
    """Random sets of token sequences over a vocabulary of 5-50, each ending with EOS or not."""
    vocab = draw(st.integers(5, 50))
    seq = st.lists(st.integers(0, vocab - 1), min_size=0, max_size=8)
    seqs = draw(st.lists(seq, min_size=0, max_size=40))
    if draw(st.booleans()):  # the decoding case: every name ends with EOS
        seqs = [s + [EOS] for s in seqs]
    return seqs


def all_prefixes(seqs: list[list[int]]) -> set[tuple[int, ...]]:
    return {tuple(s[:i]) for s in seqs for i in range(len(s) + 1)}


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(sequence_sets(), st.randoms(use_true_random=False))
def test_array_trie_matches_dict_trie(seqs: list[list[int]], rnd: random.Random) -> None:
    ref, arr = DictTrie(seqs), ArrayTrie.build(iter(seqs))  # build accepts a generator
    prefixes = all_prefixes(seqs)
    for p in prefixes:
        assert arr.allowed(p) == ref.allowed(p)
        assert (p in arr) == (p in ref)
    for _ in range(20):  # random (mostly non-) prefixes
        p = tuple(rnd.randrange(60) for _ in range(rnd.randint(0, 6)))
        assert arr.allowed(p) == ref.allowed(p)
        assert (p in arr) == (p in ref) == (list(p) in seqs)
        if p not in prefixes:
            assert arr.allowed(p) == []


@PROPS
@given(sequence_sets())
def test_len_contains_sequences(seqs: list[list[int]]) -> None:
    distinct = sorted(set(map(tuple, seqs)))
    for trie in (DictTrie(seqs), ArrayTrie.build(seqs)):
        assert len(trie) == len(distinct)  # duplicates collapse
        assert all(s in trie for s in seqs)
        assert sorted(map(tuple, trie.sequences())) == distinct
    assert [tuple(s) for s in ArrayTrie.build(seqs).sequences()] == distinct  # lexicographic


@PROPS
@given(sequence_sets())
def test_allowed_is_sorted_and_unique(seqs: list[list[int]]) -> None:
    trie = ArrayTrie.build(seqs)
    for p in all_prefixes(seqs):
        nxt = trie.allowed(p)
        assert nxt == sorted(set(nxt))
        assert all(isinstance(t, int) for t in nxt)


@PROPS
@given(sequence_sets(), st.randoms(use_true_random=False))
def test_every_walk_ends_in_a_stored_sequence(seqs: list[list[int]], rnd: random.Random) -> None:
    """Decoding only what the hook allows, until it allows only EOS after EOS, yields a KB name."""
    seqs = [s + [EOS] for s in seqs if EOS not in s]  # names are EOS-free, then EOS appended
    for trie in (ArrayTrie.build(seqs), DictTrie(seqs)):
        fn = prefix_allowed_tokens_fn(trie, EOS)
        for _ in range(5):
            out: list[int] = []
            while not out or out[-1] != EOS:
                options = fn(0, np.array(out, dtype=np.int64))
                assert options
                out.append(rnd.choice(options))
            assert out in trie or not seqs


def test_large_token_ids_match_dict_trie() -> None:
    """Real vocabularies (49k) and the int32 limit: no packing collisions between levels."""
    rng = random.Random(3)
    big = [0, 1, 2**31 - 1, 2**31 - 2, 49151]
    seqs = [[rng.choice(big + [rng.randrange(2**31)]) for _ in range(rng.randint(1, 5))]
            for _ in range(500)]
    ref, arr = DictTrie(seqs), ArrayTrie.build(seqs)
    assert len(arr) == len(ref)
    for p in all_prefixes(seqs):
        assert arr.allowed(p) == ref.allowed(p) and (p in arr) == (p in ref)


def test_prefix_of_another_sequence() -> None:
    seqs = [[5, 2], [5, 7, 2], [5, 7, 2, 9]]  # [5, 7, 2] is complete AND a prefix
    for trie in (ArrayTrie.build(seqs), DictTrie(seqs)):
        assert trie.allowed([5]) == [2, 7]
        assert trie.allowed([5, 2]) == []
        assert trie.allowed([5, 7, 2]) == [9]
        assert [5, 7, 2] in trie and [5, 7] not in trie and [5] not in trie
        assert len(trie) == 3


def test_empty_trie_and_empty_sequence() -> None:
    for trie in (ArrayTrie.build([]), DictTrie()):
        assert len(trie) == 0 and trie.allowed([]) == [] and [] not in trie
        assert list(trie.sequences()) == []
    trie = ArrayTrie.build([[], [1]])
    assert [] in trie and trie.allowed([]) == [1] and len(trie) == 2


def test_prefix_allowed_tokens_fn_never_empty() -> None:
    torch = pytest.importorskip("torch")
    fn = prefix_allowed_tokens_fn(ArrayTrie.build([[5, 7, EOS], [5, EOS]]), EOS)
    assert fn(0, torch.tensor([], dtype=torch.long)) == [5]  # step 0: nothing generated yet
    assert fn(3, torch.tensor([5])) == [EOS, 7]
    assert fn(0, torch.tensor([5, 7, EOS])) == [EOS]  # complete name: only EOS
    assert fn(0, torch.tensor([9, 9])) == [EOS]  # off the trie: end the beam


@pytest.mark.parametrize("eos", [-1, 1.0, "2", None, True])
def test_prefix_allowed_tokens_fn_rejects_bad_eos(eos: object) -> None:
    with pytest.raises(ValueError, match="eos_id"):
        prefix_allowed_tokens_fn(DictTrie([[1]]), eos)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [[1, -1], [1, 2**31], [1.5], 5, "ab", [None]])
@pytest.mark.parametrize("kind", ["array", "dict"])
def test_bad_sequences_raise(bad: object, kind: str) -> None:
    with pytest.raises(TrieError):
        build_trie([[1, 2], bad], kind=kind)  # type: ignore[list-item]


def test_build_trie_kinds() -> None:
    assert isinstance(build_trie([[1, 2]]), ArrayTrie)
    assert isinstance(build_trie([[1, 2]], kind="dict"), DictTrie)
    for trie in (build_trie([[1]]), build_trie([[1]], "dict")):
        assert isinstance(trie, Trie)
    with pytest.raises(ValueError, match="'tree'"):
        build_trie([[1]], kind="tree")


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip(tmp_path, mmap: bool) -> None:
    rng = random.Random(1)
    seqs = [[rng.randrange(100) for _ in range(rng.randint(1, 6))] + [EOS] for _ in range(300)]
    trie = ArrayTrie.build(seqs)
    trie.save(tmp_path / "trie")
    loaded = ArrayTrie.load(tmp_path / "trie", mmap=mmap)
    assert isinstance(loaded._token, np.memmap) == mmap
    assert len(loaded) == len(trie) and loaded.n_nodes == trie.n_nodes
    assert list(loaded.sequences()) == list(trie.sequences())
    for s in seqs:
        for i in range(len(s) + 1):
            assert loaded.allowed(s[:i]) == trie.allowed(s[:i])


@pytest.mark.parametrize("damage", ["no_folder", "no_meta", "wrong_format", "no_array", "bad_count"])
def test_load_damaged_folder_raises(tmp_path, damage: str) -> None:
    folder = tmp_path / "trie"
    ArrayTrie.build([[1, 2], [1, 3]]).save(folder)
    meta = folder / "meta.json"
    if damage == "no_folder":
        folder = tmp_path / "missing"
    elif damage == "no_meta":
        meta.unlink()
    elif damage == "wrong_format":
        meta.write_text(meta.read_text().replace("gemel-array-trie", "other"))
    elif damage == "no_array":
        (folder / "token.npy").unlink()
    else:
        meta.write_text(meta.read_text().replace('"n_sequences": 2', '"n_sequences": 3'))
    with pytest.raises(TrieFormatError):
        ArrayTrie.load(folder)


def test_lookup_is_fast() -> None:
    """A ~10-token prefix in a 20k-name trie with a 49k vocabulary: well under 50 us."""
    rng = random.Random(0)
    seqs = [[rng.randrange(49152) for _ in range(12)] + [EOS] for _ in range(20_000)]
    trie = ArrayTrie.build(seqs)
    prefixes = [s[:10] for s in seqs[:2000]]
    start = time.perf_counter()
    for p in prefixes:
        trie.allowed(p)
    per_call = (time.perf_counter() - start) / len(prefixes)
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} us per lookup"
