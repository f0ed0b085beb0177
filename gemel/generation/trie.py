"""Prefix trees over token-id sequences, for entity-constrained beam search.

GEMEL (Shi et al., LREC-COLING 2024) decodes the answer entity with beam search restricted to the
names of the knowledge base, following GENRE (De Cao et al., ICLR 2021): the tokenised names (each
ending with the EOS id, appended by the caller) form a prefix tree, and at every decoding step only
the children of the current prefix may be generated. The tree knows nothing of the model; one
callable, `prefix_allowed_tokens_fn`, joins it to Hugging Face `generate`.

Two implementations satisfy the `Trie` protocol:

* `DictTrie` -- GENRE's nested dictionaries; simple, the reference for tests and the baseline in
  `bench/scale.py`, but ~200 bytes per node.
* `ArrayTrie` -- the same tree in three flat numpy arrays (CSR-like), ~9 bytes per node, built in a
  streaming way from a generator, saved as `.npy` files and memory-mapped on load.

`ArrayTrie` layout. Nodes are numbered breadth-first with the root 0, and the children of every
node are numbered consecutively in increasing token order. Hence the children of node `i` are the
nodes `child_start[i] .. child_start[i + 1] - 1` (the child node id *is* its position, so no
separate child-id array is needed), and their tokens are `token[child_start[i]:child_start[i + 1]]`,
a sorted slice that is searched by bisection. Arrays (all memory-mappable):

* `child_start.npy` int32 (n_nodes + 1,) -- first child of each node; last entry = n_nodes
* `token.npy`       int32 (n_nodes,)     -- token on the edge into each node (-1 for the root)
* `terminal.npy`    bool  (n_nodes,)     -- a stored sequence ends at this node
* `meta.json`       format name, version, n_nodes, n_sequences
"""

from __future__ import annotations

import array
import bisect
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from gemel.errors import GemelError

if TYPE_CHECKING:  # torch is only needed for the type of the generated-tokens tensor
    import torch

logger = logging.getLogger(__name__)

MAX_TOKEN = 2**31 - 1  # tokens are stored as int32
FORMAT_NAME = "gemel-array-trie"
FORMAT_VERSION = 1
_END = -1  # DictTrie key marking "a sequence ends here" (token ids are >= 0)


class TrieError(GemelError):
    """A token sequence cannot be stored (negative or too large token id, wrong type)."""


class TrieFormatError(GemelError):
    """A saved ArrayTrie folder is missing, incomplete or inconsistent."""


@runtime_checkable
class Trie(Protocol):
    """What constrained decoding needs from a prefix tree."""

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Sorted next-token ids after `prefix`; [] if `prefix` is no path or ends at a leaf."""
        ...

    def __contains__(self, seq: object) -> bool: ...

    def __len__(self) -> int: ...

    def sequences(self) -> Iterator[list[int]]: ...


def _bad_sequence(seq: object) -> TrieError:
    """The error for a sequence that is not all int ids in range (raises it for a bad token)."""
    if isinstance(seq, Iterable) and not isinstance(seq, (str, bytes)):
        items = list(seq)
        for token in items:
            _check_token(token, items)
    return TrieError(f"{seq!r} is not a sequence of int token ids")


def _check_token(token: object, seq: Sequence[int]) -> int:
    if isinstance(token, float) or not hasattr(token, "__index__"):
        raise TrieError(f"token {token!r} in sequence {list(seq)[:20]} is not an integer id")
    t = int(token)  # type: ignore[call-overload]
    if not 0 <= t <= MAX_TOKEN:
        raise TrieError(f"token id {t} in sequence {list(seq)[:20]} is outside [0, {MAX_TOKEN}]")
    return t


# --------------------------------------------------------------------------------------------
# DictTrie: GENRE's nested dictionaries
# --------------------------------------------------------------------------------------------


class DictTrie:
    """Nested-dict prefix tree (GENRE's design). Reference implementation for small tries."""

    def __init__(self, sequences: Iterable[Sequence[int]] = ()) -> None:
        self._root: dict[int, Any] = {}
        self._len = 0
        for seq in sequences:
            self.add(seq)

    def add(self, seq: Sequence[int]) -> None:
        """Store one sequence (no-op when already stored)."""
        if not isinstance(seq, Iterable) or isinstance(seq, (str, bytes)):
            raise _bad_sequence(seq)
        node = self._root
        for token in seq:
            node = node.setdefault(_check_token(token, seq), {})
        if _END not in node:
            node[_END] = {}
            self._len += 1

    def _node(self, prefix: Sequence[int]) -> dict[int, Any] | None:
        node = self._root
        for token in prefix:
            node = node.get(int(token))  # type: ignore[assignment]
            if node is None:
                return None
        return node

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        node = self._node(prefix)
        if node is None:
            return []
        return sorted(k for k in node if k != _END)

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, Iterable):
            return False
        node = self._node(list(seq))  # type: ignore[arg-type]
        return node is not None and _END in node

    def __len__(self) -> int:
        return self._len

    def sequences(self) -> Iterator[list[int]]:
        stack: list[tuple[dict[int, Any], list[int]]] = [(self._root, [])]
        while stack:
            node, path = stack.pop()
            for token, child in node.items():
                if token == _END:
                    yield path
                else:
                    stack.append((child, path + [token]))


# --------------------------------------------------------------------------------------------
# ArrayTrie: flat int32 arrays, breadth-first numbering
# --------------------------------------------------------------------------------------------


def _flatten(
    sequences: Iterable[Sequence[int]], progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Stream sequences into one int32 token buffer and an int64 start-offset array."""
    flat = array.array("i")
    lengths = array.array("q")
    for seq in tqdm(sequences, desc="reading sequences", unit="seq", disable=not progress):
        try:
            flat.extend(seq)
        except (TypeError, OverflowError) as e:
            raise _bad_sequence(seq) from e
        lengths.append(len(seq))
    tokens = np.frombuffer(flat, dtype=np.int32) if flat else np.zeros(0, np.int32)
    if tokens.size and tokens.min() < 0:
        bad = int(np.flatnonzero(tokens < 0)[0])
        raise TrieError(f"token id {int(tokens[bad])} is negative; token ids must be >= 0")
    lens = np.frombuffer(lengths, dtype=np.int64) if lengths else np.zeros(0, np.int64)
    starts = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    return tokens, starts


def _add_level(
    tok: np.ndarray, parent: np.ndarray, ends: np.ndarray, first_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One depth: the distinct (parent, token) pairs become nodes first_id.., by parent then token.

    Returns the new nodes' tokens and parents, each active sequence's new node, and which new
    nodes end a sequence (`ends` marks the sequences that end at this depth).
    """
    uniq, inverse = np.unique((parent << 31) | tok.astype(np.int64), return_inverse=True)
    child = first_id + inverse.reshape(-1)  # (active,)
    is_term = np.zeros(len(uniq), bool)
    is_term[child[ends] - first_id] = True
    return (uniq & MAX_TOKEN).astype(np.int32), uniq >> 31, child, is_term


def _build_levels(
    tokens: np.ndarray, starts: np.ndarray, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Breadth-first construction: one sort of (parent, token) pairs per depth."""
    lens = np.diff(starts)
    node_token, terminal = [np.array([-1], np.int32)], [np.array([bool((lens == 0).any())])]
    n_children: list[np.ndarray] = []  # per level, the child count of each of its nodes
    active = np.flatnonzero(lens > 0)  # sequences longer than the current depth
    parent = np.zeros(len(active), np.int64)  # their node at the current depth
    n_nodes, level_first, level_size, depth = 1, 0, 1, 0
    bar = tqdm(desc="building trie", unit="level", disable=not progress)
    while active.size:
        ends = lens[active] == depth + 1
        tok, par, child, term = _add_level(tokens[starts[active] + depth], parent, ends, n_nodes)
        n_children.append(np.bincount(par - level_first, minlength=level_size).astype(np.int32))
        node_token.append(tok)
        terminal.append(term)
        level_first, level_size, n_nodes = n_nodes, len(tok), n_nodes + len(tok)
        active, parent, depth = active[~ends], child[~ends], depth + 1
        bar.update(1)
    bar.close()
    n_children.append(np.zeros(level_size, np.int32))  # the deepest level has no children
    child_start = np.empty(n_nodes + 1, np.int64)
    child_start[0] = 1
    np.cumsum(np.concatenate(n_children), out=child_start[1:])
    child_start[1:] += 1
    return child_start, np.concatenate(node_token), np.concatenate(terminal)


class ArrayTrie:
    """Compact prefix tree in flat int32 arrays (see the module docstring for the layout)."""

    def __init__(self, child_start: np.ndarray, token: np.ndarray, terminal: np.ndarray) -> None:
        if not (len(child_start) == len(token) + 1 == len(terminal) + 1):
            raise TrieFormatError(
                f"array lengths disagree: child_start {len(child_start)}, token {len(token)}, "
                f"terminal {len(terminal)}; expected n_nodes + 1, n_nodes, n_nodes"
            )
        self._child_start = child_start
        self._token = token
        self._terminal = terminal
        self._len = int(np.count_nonzero(terminal))
        # memoryviews give plain Python ints on indexing: bisect on them is ~10x faster than
        # np.searchsorted on tiny slices (a numpy call costs ~1 us of overhead)
        self._cs = memoryview(child_start)
        self._tok = memoryview(token)

    @classmethod
    def build(cls, sequences: Iterable[Sequence[int]], *, progress: bool = False) -> "ArrayTrie":
        """Build from any iterable (a generator is fine); duplicates collapse."""
        tokens, starts = _flatten(sequences, progress)
        child_start, token, terminal = _build_levels(tokens, starts, progress)
        if len(child_start) > MAX_TOKEN:
            raise TrieError(f"{len(child_start)} nodes do not fit int32 node ids; split the KB")
        trie = cls(child_start.astype(np.int32), token, terminal)
        logger.info("built ArrayTrie: %d sequences, %d nodes", len(trie), trie.n_nodes)
        return trie

    @property
    def n_nodes(self) -> int:
        return len(self._token)

    @property
    def nbytes(self) -> int:
        """Bytes held by the three arrays."""
        return self._child_start.nbytes + self._token.nbytes + self._terminal.nbytes

    def _node(self, prefix: Sequence[int]) -> int:
        """Node reached by `prefix`, or -1 when it is not a path."""
        cs, tok = self._cs, self._tok
        node = 0
        for t in prefix:
            lo, hi = cs[node], cs[node + 1]
            i = bisect.bisect_left(tok, t, lo, hi)
            if i == hi or tok[i] != t:
                return -1
            node = i  # breadth-first numbering: a child's position is its node id
        return node

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        node = self._node(prefix)
        if node < 0:
            return []
        return self._token[self._cs[node] : self._cs[node + 1]].tolist()

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, Iterable):
            return False
        node = self._node(list(seq))  # type: ignore[arg-type]
        return node >= 0 and bool(self._terminal[node])

    def __len__(self) -> int:
        return self._len

    def sequences(self) -> Iterator[list[int]]:
        """Every stored sequence, in lexicographic order (depth-first walk)."""
        cs, tok, term = self._cs, self._tok, self._terminal
        stack: list[tuple[int, list[int]]] = [(0, [])]
        while stack:
            node, path = stack.pop()
            if term[node]:
                yield path
            for child in range(cs[node + 1] - 1, cs[node] - 1, -1):
                stack.append((child, path + [tok[child]]))

    def save(self, path: str | Path) -> None:
        """Write the folder `path` (created if needed): three `.npy` arrays and `meta.json`."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "child_start.npy", np.ascontiguousarray(self._child_start, np.int32))
        np.save(folder / "token.npy", np.ascontiguousarray(self._token, np.int32))
        np.save(folder / "terminal.npy", np.ascontiguousarray(self._terminal, bool))
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "n_nodes": self.n_nodes,
                "n_sequences": len(self)}
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> "ArrayTrie":
        """Read a folder written by `save`; `mmap=True` maps the arrays instead of reading them."""
        folder = Path(path)
        meta = _read_meta(folder)
        mode = "r" if mmap else None
        try:
            arrays = [np.load(folder / f"{n}.npy", mmap_mode=mode)
                      for n in ("child_start", "token", "terminal")]
        except (OSError, ValueError) as e:
            raise TrieFormatError(f"cannot read the arrays of {folder}: {e}; save it again") from e
        trie = cls(*arrays)
        if trie.n_nodes != meta.get("n_nodes") or len(trie) != meta.get("n_sequences"):
            raise TrieFormatError(f"{folder}/meta.json disagrees with its arrays; save it again")
        return trie


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise TrieFormatError(f"{folder} holds no readable meta.json ({e}); "
                              "pass a folder written by ArrayTrie.save") from e
    if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise TrieFormatError(f"{folder}/meta.json has format {meta.get('format')!r} version "
                              f"{meta.get('version')!r}; expected {FORMAT_NAME!r} {FORMAT_VERSION}")
    return meta


# --------------------------------------------------------------------------------------------
# Factory and the Hugging Face hook
# --------------------------------------------------------------------------------------------

TRIE_KINDS = ("array", "dict")


def build_trie(sequences: Iterable[Sequence[int]], kind: str = "array") -> Trie:
    """Build a trie of the given kind: "array" (compact, default) or "dict" (reference)."""
    if kind == "array":
        return ArrayTrie.build(sequences)
    if kind == "dict":
        return DictTrie(sequences)
    raise TrieError(f"unknown trie kind {kind!r}; use one of {TRIE_KINDS}")


def prefix_allowed_tokens_fn(trie: Trie, eos_id: int) -> Callable[[int, "torch.Tensor"], list[int]]:
    """The `generate(prefix_allowed_tokens_fn=...)` hook for inputs_embeds-only generation.

    The tensor holds only the generated tokens (empty at step 0). Returns the trie's allowed next
    tokens, or `[eos_id]` where there are none (HF breaks on an empty list): after a complete name,
    or on a prefix outside the trie, the beam can only end.
    """
    if isinstance(eos_id, bool) or not isinstance(eos_id, (int, np.integer)) or eos_id < 0:
        raise ValueError(f"eos_id must be a non-negative int token id, got {eos_id!r}")
    eos = [int(eos_id)]

    def allowed_tokens(batch_id: int, generated: "torch.Tensor") -> list[int]:
        return trie.allowed(generated.tolist()) or list(eos)

    return allowed_tokens
