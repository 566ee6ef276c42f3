"""The prefix cache: full blocks of token ids, named by chained hashes, evicted LRU.

As in vLLM, a prompt is cut into blocks of `block_size` tokens and block `i` is named by
`hash((name of block i-1, tokens of block i))`, so a block's name stands for the whole
prefix up to its end. A lookup walks the names from the first block and stops at the first
miss; only full blocks are cached. The cache holds at most `capacity` names; inserting past
that evicts the least recently used. Unlike vLLM, blocks that running sequences still use
are not pinned: the simulator only needs hit rates and eviction to behave plausibly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["PrefixCache", "block_hashes"]

_ROOT = 0x5EED


def block_hashes(ids: Sequence[int], block_size: int) -> list[int]:
    """Chained names of the full blocks of `ids`."""
    names = []
    parent = _ROOT
    for start in range(0, len(ids) - block_size + 1, block_size):
        parent = hash((parent, tuple(ids[start : start + block_size])))
        names.append(parent)
    return names


class PrefixCache:
    """An LRU set of block names with a fixed capacity."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, name: int) -> bool:
        return name in self._blocks

    def match(self, names: Sequence[int]) -> int:
        """How many leading blocks are cached; the matched blocks become most recent."""
        blocks = self._blocks
        hits = 0
        for name in names:
            if name not in blocks:
                break
            blocks.move_to_end(name)
            hits += 1
        return hits

    def insert(self, names: Sequence[int]) -> None:
        """Cache every block (most recent last), evicting the least recently used."""
        blocks = self._blocks
        for name in names:
            if name in blocks:
                blocks.move_to_end(name)
            else:
                blocks[name] = None
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)
            self.evictions += 1

    def clear(self) -> None:
        self._blocks.clear()
