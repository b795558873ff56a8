"""Huffman coding of cluster indices (Deep Compression's last stage): code lengths from symbol
counts with a binary heap, and the encoded size."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping

import numpy as np


def code_lengths(counts: Mapping[int, int]) -> dict[int, int]:
    """Huffman code length per symbol (symbols with count 0 get none). A single symbol gets 1 bit."""
    live = {s: c for s, c in counts.items() if c > 0}
    if len(live) <= 1:
        return dict.fromkeys(live, 1)
    order = itertools.count()  # tie-breaker so the heap never compares the symbol lists
    heap = [(c, next(order), [s]) for s, c in sorted(live.items())]
    heapq.heapify(heap)
    lengths = dict.fromkeys(live, 0)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for symbol in s1 + s2:  # every merge adds one bit to the codes below it
            lengths[symbol] += 1
        heapq.heappush(heap, (c1 + c2, next(order), s1 + s2))
    return lengths


def canonical_codes(lengths: Mapping[int, int]) -> dict[int, str]:
    """Canonical prefix codes (as bit strings) for the given lengths: decodable from lengths alone."""
    codes, code, previous = {}, 0, 0
    for symbol, length in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        code <<= length - previous
        codes[symbol] = format(code, f"0{length}b")
        code, previous = code + 1, length
    return codes


def encoded_bits(symbols: np.ndarray) -> tuple[int, dict[int, int]]:
    """(bits of the Huffman-coded sequence, code lengths) for an integer array."""
    values, counts = np.unique(np.asarray(symbols).ravel(), return_counts=True)
    lengths = code_lengths({int(v): int(c) for v, c in zip(values, counts)})
    return int(sum(lengths[int(v)] * int(c) for v, c in zip(values, counts))), lengths


def table_bits(symbol_bits: int) -> int:
    """Bits to store a canonical code table: one code length (5 bits) per possible symbol."""
    return 5 * 2**symbol_bits
