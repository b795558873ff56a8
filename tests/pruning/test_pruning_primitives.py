"""The pure maths behind pruning, checked against brute force and exact values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepshrink.pruning import primitives
from deepshrink.pruning.unionfind import UnionFind


@given(size=st.integers(1, 512), ratio=st.floats(0.0, 0.99), multiple=st.integers(1, 16))
@settings(max_examples=200, deadline=None)
def test_kept_count_bounds_and_multiple(size: int, ratio: float, multiple: int) -> None:
    keep = primitives.kept_count(size, ratio, multiple)
    assert 1 <= keep <= size
    if ratio == 0.0 or size <= multiple:
        assert keep == size
    elif keep < size:
        assert keep % multiple == 0 and keep >= multiple


def test_kept_count_examples() -> None:
    assert primitives.kept_count(64, 0.5, 8) == 32
    assert primitives.kept_count(16, 0.5, 8) == 8
    assert primitives.kept_count(16, 0.7, 8) == 8  # never below one multiple
    assert primitives.kept_count(8, 0.5, 8) == 8  # too small to prune in steps of 8
    assert primitives.kept_count(12, 0.0, 8) == 12  # ratio 0 keeps everything, even off-multiple
    assert primitives.kept_count(10, 0.3, 1) == 7


def test_fpgm_scores_match_brute_force() -> None:
    w = torch.randn(6, 3, 3, 3)
    rows = w.flatten(1)
    expected = torch.tensor([sum(float((rows[i] - rows[j]).norm()) for j in range(6)) for i in range(6)])
    assert torch.allclose(primitives.fpgm_scores(w), expected, rtol=1e-5)


def test_fpgm_ranks_the_median_filter_lowest() -> None:
    # Points on a line: the middle one is the geometric median, the most replaceable filter.
    w = torch.tensor([[-2.0], [-1.0], [0.0], [1.0], [2.0]])
    assert int(primitives.fpgm_scores(w).argmin()) == 2


def test_row_norms() -> None:
    w = torch.tensor([[[3.0, -4.0]], [[1.0, 1.0]]])
    assert primitives.row_norms(w, 1).tolist() == [7.0, 2.0]
    assert primitives.row_norms(w, 2).tolist() == [5.0, pytest.approx(2 ** 0.5)]


def test_feature_map_ranks() -> None:
    maps = torch.zeros(2, 3, 4, 4)
    maps[:, 0] = torch.eye(4)  # rank 4
    maps[:, 1] = torch.ones(4, 4)  # rank 1
    assert primitives.feature_map_ranks(maps).tolist() == [4.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="feature-map rank"):
        primitives.feature_map_ranks(torch.zeros(2, 3))


def test_magnitude_masks_hit_the_sparsity() -> None:
    w = torch.arange(1.0, 101.0).reshape(10, 10)
    mask = primitives.magnitude_mask(w, 0.3)
    assert int(mask.sum()) == 70
    assert bool(mask[w > 30].all()) and not bool(mask[w <= 30].any())
    assert bool(primitives.magnitude_mask(w, 0.0).all())


def test_global_threshold_spans_layers() -> None:
    small, large = torch.full((10,), 0.1), torch.full((10,), 5.0)
    t = primitives.magnitude_threshold([small, large], 0.5)
    assert not bool(primitives.threshold_mask(small, t).any())
    assert bool(primitives.threshold_mask(large, t).all())


def test_n_m_mask_keeps_n_of_every_m_along_inputs() -> None:
    w = torch.randn(4, 8, 3, 3)
    mask = primitives.n_m_mask(w, 2, 4)
    blocks = mask.movedim(1, -1).reshape(-1, 4)
    assert bool((blocks.sum(1) == 2).all())
    kept = w.abs().movedim(1, -1).reshape(-1, 4)[blocks]
    dropped = w.abs().movedim(1, -1).reshape(-1, 4)[~blocks]
    assert kept.reshape(-1, 2).min(1).values.ge(dropped.reshape(-1, 2).max(1).values).all()
    with pytest.raises(ValueError, match="multiple of 4"):
        primitives.n_m_mask(torch.randn(4, 6), 2, 4)


def test_sparse_storage_bytes() -> None:
    w = torch.zeros(100)
    w[:10] = 1.0
    assert primitives.sparse_storage_bytes(w) == 13 + 10 * 4  # ceil(100 / 8) mask bytes + values


def test_normalise_divides_by_mean() -> None:
    assert primitives.normalise(torch.tensor([1.0, 3.0])).tolist() == [0.5, 1.5]
    assert primitives.normalise(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]


@given(pairs=st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=40))
@settings(max_examples=100, deadline=None)
def test_union_find_matches_connected_components(pairs) -> None:
    uf = UnionFind()
    uf.make(30)
    for a, b in pairs:
        uf.union(a, b)
    roots = uf.roots()
    # Reference: repeated label propagation.
    label = list(range(30))
    changed = True
    while changed:
        changed = False
        for a, b in pairs:
            low = min(label[a], label[b])
            for x in (a, b):
                if label[x] != low:
                    label[x], changed = low, True
        label = [label[label[i]] for i in range(30)]
    for i in range(30):
        for j in range(30):
            assert (roots[i] == roots[j]) == (label[i] == label[j])
    assert all(roots[i] <= i for i in range(30))  # the smallest atom is the root
    assert np.array_equal(roots, np.array([uf.find(i) for i in range(30)]))
