"""Union-find over integer atoms (one atom per channel of every traced tensor).

Channels that must be removed together end up in one component; a component is one removable
unit of a coupled group."""

from __future__ import annotations

import numpy as np


class UnionFind:
    def __init__(self) -> None:
        self._parent: list[int] = []

    def __len__(self) -> int:
        return len(self._parent)

    def make(self, count: int) -> np.ndarray:
        """Allocate `count` fresh atoms, each its own component."""
        start = len(self._parent)
        self._parent.extend(range(start, start + count))
        return np.arange(start, start + count, dtype=np.int64)

    def find(self, atom: int) -> int:
        parent = self._parent
        root = atom
        while parent[root] != root:
            root = parent[root]
        while parent[atom] != root:  # path compression keeps later finds O(1)
            parent[atom], atom = root, parent[atom]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra != rb:
            # The smaller id becomes the root so component ids follow graph order.
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self._parent[hi] = lo

    def union_arrays(self, a: np.ndarray, b: np.ndarray) -> None:
        if len(a) != len(b):
            raise ValueError(f"cannot couple {len(a)} channels with {len(b)} channels")
        for x, y in zip(a.tolist(), b.tolist()):
            if x != y:
                self.union(x, y)

    def roots(self) -> np.ndarray:
        """The component root of every atom, as one array."""
        parent = np.asarray(self._parent, dtype=np.int64)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand
