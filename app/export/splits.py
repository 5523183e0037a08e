"""Splits by head: no head in two splits (the COMET convention), sizes as asked, in O(heads).

A student that saw "PersonX bakes bread" in training must not be tested on it, so every split
is a set of whole heads. Heads are compared loosely, like the corpus's dedup key: case, runs of
whitespace and a final period don't make a different head.

How: each head gets a 64-bit hash of (seed, head). Sorting heads by hash is a random order
fixed by the seed. Walking that order and adding up each head's kept triples, the cut between
two splits goes at the head where the running total is closest to the asked share. A split is
then an interval of hash values, so assigning a triple later needs only the head's hash and
the few cut points, not a table of heads. The first pass keeps two 8-byte numbers per distinct
head (about 16 MB for a million heads), never the triples.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from hashlib import blake2b

import numpy as np

_NO_CUT = 1 << 64  # above every 64-bit hash: "no head from here on"


def head_key(head: str) -> str:
    """The head as the splits compare it (the looseness of app.corpus.normalize's dedup key)."""
    return " ".join(head.split()).casefold().rstrip(". ")


def head_hash(seed: int, head: str) -> int:
    digest = blake2b(head_key(head).encode("utf-8"), digest_size=8, key=seed.to_bytes(8, "big"))
    return int.from_bytes(digest.digest(), "big")


@dataclass
class SplitPlan:
    """Where the splits are cut in hash order, and what each will hold."""

    names: tuple[str, ...]
    ratios: tuple[float, ...]
    cuts: list[int]  # cuts[k]: the first hash of split k+1 (len(names) - 1 of them)
    triples: list[int]  # per split
    heads: list[int]  # per split
    seed: int

    def split_of(self, head: str) -> int:
        """The index of the split that ``head`` belongs to."""
        return bisect.bisect_right(self.cuts, head_hash(self.seed, head))

    def assigner(self) -> SplitAssigner:
        return SplitAssigner(self)


class SplitAssigner:
    """``split_of`` with a one-head memory: the kept rows come by id, and an import usually
    writes a head's triples one after the other, so most rows repeat the previous head."""

    __slots__ = ("_plan", "_last_head", "_last_split")

    def __init__(self, plan: SplitPlan) -> None:
        self._plan = plan
        self._last_head: str | None = None
        self._last_split = 0

    def __call__(self, head: str, _own_split: str | None = None) -> int:
        if head != self._last_head:
            self._last_head = head
            self._last_split = self._plan.split_of(head)
        return self._last_split


def plan_splits(
    head_counts: Iterable[tuple[str, int]],
    splits: tuple[tuple[str, float], ...],
    seed: int,
) -> SplitPlan:
    """Cut points so that each split gets as close to its share of triples as whole heads allow.

    ``head_counts`` may name a head in several spellings (as stored); they count as one head.
    """
    hashes = array("Q")
    counts = array("q")
    for head, count in head_counts:
        hashes.append(head_hash(seed, head))
        counts.append(int(count))
    names = tuple(name for name, _ratio in splits)
    ratios = tuple(ratio for _name, ratio in splits)
    keys = np.frombuffer(hashes, dtype=np.uint64) if len(hashes) else np.zeros(0, np.uint64)
    sizes = np.frombuffer(counts, dtype=np.int64) if len(counts) else np.zeros(0, np.int64)
    unique, inverse = np.unique(keys, return_inverse=True)  # sorted: the seed's random order
    per_head = np.bincount(inverse, weights=sizes, minlength=len(unique)).astype(np.int64)
    running = np.concatenate(([0], np.cumsum(per_head)))  # triples in the first i heads
    total = int(running[-1])
    starts = [0]  # index (in hash order) of each split's first head
    share = 0.0
    for ratio in ratios[:-1]:
        share += ratio
        target = total * share
        i = int(np.searchsorted(running, target))  # first i with running[i] >= target
        if i > len(unique):
            i = len(unique)
        elif i > 0 and target - running[i - 1] <= running[i] - target:
            i -= 1  # the cut just before is as close or closer
        starts.append(max(starts[-1], i))
    starts.append(len(unique))
    cuts = [int(unique[i]) if i < len(unique) else _NO_CUT for i in starts[1:-1]]
    return SplitPlan(
        names=names,
        ratios=ratios,
        cuts=cuts,
        triples=[int(running[b] - running[a]) for a, b in zip(starts, starts[1:], strict=False)],
        heads=[b - a for a, b in zip(starts, starts[1:], strict=False)],
        seed=seed,
    )


# The usual split names first, in the order a reader expects; any others after, by name.
_SPLIT_ORDER = ("train", "training", "val", "valid", "validation", "dev", "test")


def split_order(name: str) -> tuple[int, str]:
    return (_SPLIT_ORDER.index(name) if name in _SPLIT_ORDER else len(_SPLIT_ORDER), name)


@dataclass
class CorpusSplitPlan:
    """The corpus's own splits, kept as imported (``split_by="corpus"``): same shape as
    ``SplitPlan`` for the writers and the card, but a triple's split is its own field."""

    names: tuple[str, ...]
    triples: list[int]
    heads: list[int]

    def assigner(self) -> Callable[[str, str | None], int]:
        index = {name: i for i, name in enumerate(self.names)}

        def split_of(_head: str, own_split: str | None) -> int:
            return index[own_split]  # type: ignore[index]  # checked: every kept triple has one

        return split_of


def corpus_split_plan(splits: Sequence[tuple[str, int, int]]) -> CorpusSplitPlan:
    """From (name, triples, heads) per split, in the usual order of split names."""
    ordered = sorted(splits, key=lambda split: split_order(split[0]))
    return CorpusSplitPlan(
        names=tuple(name for name, _n, _heads in ordered),
        triples=[n for _name, n, _heads in ordered],
        heads=[heads for _name, _n, heads in ordered],
    )
