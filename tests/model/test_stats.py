import numpy as np
import pytest

from vi_stream import search
from vi_stream.model import stats
from vi_stream.model.index import PatchIndex


def test_streaming_moments_equal_batch_moments():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 6)) * [1, 2, 3, 4, 5, 6] + 100
    m = stats.Moments(6)
    for chunk in np.array_split(x, 17):
        m.update(chunk)
    assert np.allclose(m.mean, x.mean(0))
    assert np.allclose(m.covariance(), np.cov(x.T), rtol=1e-9)


def test_reservoir_is_bounded_and_uniform():
    r = stats.Reservoir(1000, 1, seed=1)
    for start in range(0, 100_000, 777):
        r.update(np.arange(start, min(start + 777, 100_000), dtype=np.float32)[:, None])
    assert r.seen == 100_000 and r.filled.shape == (1000, 1)
    vals = r.filled[:, 0]
    assert len(np.unique(vals)) == 1000
    # uniform over the stream: each decile holds ~10% (binomial sd ~ 9.5)
    counts = np.histogram(vals, bins=10, range=(0, 100_000))[0]
    assert counts.min() > 60 and counts.max() < 140


def test_index_equals_exact_search_when_it_refines_everything():
    rng = np.random.default_rng(2)
    bank = rng.standard_normal((3000, 8)).astype(np.float32)
    q = rng.standard_normal((500, 8)).astype(np.float32) * 1.5
    idx = PatchIndex.build(bank, cells=16, nprobe=16)
    # the index holds its bank (rows reordered by cell) at float16 precision, what the search
    # reads, and is exact for it
    half = search.half_precision(bank)
    assert np.all(np.abs(half - bank) <= np.abs(bank) * 2.0 ** -11 + 2.0 ** -25) and not np.array_equal(half, bank)
    assert np.array_equal(np.unique(idx.bank, axis=0), np.unique(half, axis=0))
    exact = search.exact_nn_distance(q, idx.bank)
    assert np.allclose(idx.distance(q, gate=0.0), exact, atol=1e-4)
    # and within the rounding of the float32 bank's true distances
    assert np.all(np.abs(idx.distance(q, gate=0.0) - search.exact_nn_distance(q, bank)) <= 4e-3)


def test_index_bound_is_never_below_the_true_distance_and_refinement_is_gated():
    rng = np.random.default_rng(3)
    bank = rng.standard_normal((4000, 8)).astype(np.float32)
    q = rng.standard_normal((800, 8)).astype(np.float32)
    idx = PatchIndex.build(bank, cells=32, nprobe=4)
    exact = search.exact_nn_distance(q, idx.bank)
    counts = {}
    coarse = idx.distance(q, gate=1e9, stats_out=counts)  # nothing refined: the medoid bound
    assert counts["refined"] == 0
    assert np.all(coarse >= exact - 1e-4)
    gate = float(np.median(coarse))
    counts = {}
    d = idx.distance(q, gate=gate, stats_out=counts)
    assert 0 < counts["refined"] < len(q)
    assert np.all(d >= exact - 1e-4)
    assert np.all(d[coarse > gate] <= coarse[coarse > gate] + 1e-6)
    assert np.array_equal(d[coarse <= gate], coarse[coarse <= gate])


def test_list_scan_equals_brute_force():
    # 7 dimensions; lists shorter than, equal to and longer than the kernel's step of
    # LIST_WIDTH members, none a multiple of it but one; an empty list; and 1 to 9 queries per
    # list (full and short quads).
    w = search.LIST_WIDTH
    rng = np.random.default_rng(6)
    sizes = [5, 0, w, w + 13, 1, 2 * w + 6]
    rows = rng.standard_normal((sum(sizes), 7)).astype(np.float32)
    end = np.cumsum(sizes).astype(np.int64)
    start = end - sizes
    q = rng.standard_normal((40, 7)).astype(np.float32)
    # a tie: a member repeated within one step, and a query on it (the lower position wins)
    rows[start[3] + 20] = rows[start[3] + 3]
    lists = search.list_layout(rows, start, end)
    assert lists.values.dtype == np.uint16
    rows = search.half_precision(rows)  # what the lists hold: distances are exact for these
    q[39] = rows[start[3] + 3]
    pair_q = np.concatenate([np.arange(40), rng.integers(0, 40, 30)]).astype(np.int64)
    pair_l = np.concatenate([np.repeat(np.arange(6), [9, 3, 1, 4, 5, 18]), rng.integers(0, 6, 30)]).astype(np.int64)
    pair_l[39] = 3
    d_sq = np.full(40, 1e6, np.float32)
    search.nearest_in_lists(q, (q * q).sum(1), pair_q, pair_l, lists, d_sq)
    want = np.full(40, 1e6, np.float32)
    for i, lst in zip(pair_q, pair_l):
        members = rows[start[lst]:end[lst]]
        if len(members):
            want[i] = min(want[i], ((members - q[i]) ** 2).sum(1).min())
    assert np.allclose(d_sq, want, rtol=1e-4, atol=1e-4)
    # with positions: each pair's own nearest member (the medoid tree's use)
    nonempty = np.flatnonzero(end[pair_l] > start[pair_l])
    pq, pl, pd, pos = search.scan_pairs(q, (q * q).sum(1), pair_q[nonempty], pair_l[nonempty], lists, with_arg=True)
    for i, lst, dist, j in zip(pq, pl, pd, pos):
        each = ((rows[start[lst]:end[lst]] - q[i]) ** 2).sum(1)
        assert j == each.argmin() and np.isclose(dist, each.min(), rtol=1e-4, atol=1e-4)
    order, quads = search.by_list(pair_l, 6, 4)
    assert np.all(np.diff(pair_l[order]) >= 0) and np.all(np.diff(quads) <= 4)
    assert all(len(set(pair_l[order[a:b]])) == 1 for a, b in zip(quads[:-1], quads[1:]))


def test_half_precision_rounds_to_nearest_and_refuses_out_of_range_values():
    x = np.array([[1.0, 1.0 + 2.0 ** -12, 1.0 + 3 * 2.0 ** -12, -3.14159, 65504.0]], np.float32)
    h = search.half_precision(x)
    assert h.dtype == np.float32
    assert list(h[0, :3]) == [1.0, 1.0, 1.0 + 2.0 ** -10]  # ties to even, then nearest
    assert abs(h[0, 3] + 3.14159) <= 3.14159 * 2.0 ** -11 and h[0, 4] == 65504.0
    for bad in (70000.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="float16 range"):
            search.half_precision(np.array([[0.0, bad]], np.float32))
    from vi_stream.errors import ModelError
    bank = np.zeros((40, 2), np.float32)
    bank[3, 1] = 1e6
    with pytest.raises(ModelError, match="patch bank"):
        PatchIndex.build(bank, cells=2, nprobe=1)


@pytest.mark.parametrize("dims", [16, 7])
def test_medoid_tree_finds_the_nearest_medoids(dims):
    # Clustered data as patch features are; the tree must rank groups by true distance (a wrong
    # sign or transpose in the group scores would still give valid upper bounds, just poor ones).
    # 7 dimensions: not a multiple of the kernels' 4; 600 queries: short blocks of queries.
    rng = np.random.default_rng(5)
    modes = rng.standard_normal((40, dims)).astype(np.float32) * 4
    bank = (modes[rng.integers(0, 40, 8000)] + rng.standard_normal((8000, dims))).astype(np.float32)
    q = (modes[rng.integers(0, 40, 600)] + rng.standard_normal((600, dims))).astype(np.float32)
    idx = PatchIndex.build(bank, cells=256, nprobe=4)
    d_all = ((q[:, None, :] - idx.medoids[None]) ** 2).sum(-1)
    g = search.group_scores(q, idx.group_centres, idx.group_centres_sq)
    assert np.allclose(g.T + (q * q).sum(1)[:, None], ((q[:, None, :] - idx.group_centres[None]) ** 2).sum(-1), rtol=1e-4, atol=1e-2)
    cell, d_sq = search.nearest_cell_tree(q, (q * q).sum(1), g, idx.tree)
    assert np.allclose(d_sq, d_all[np.arange(len(q)), cell], rtol=1e-4, atol=1e-3)
    assert (cell == d_all.argmin(1)).mean() > 0.9
    # and it is the nearest medoid of the two nearest groups (up to float ties)
    tree = idx.tree
    want = []
    for i, groups in enumerate(np.argsort(g.T, 1, kind="stable")[:, :2]):
        cells = np.concatenate([tree.slot_cell[tree.groups.start[k]:][:tree.size[k]] for k in groups])
        want.append(cells[d_all[i, cells].argmin()])
    assert (cell == np.array(want)).mean() > 0.99
    # with every group probed, the candidates are exactly the k nearest medoids, nearest first
    rows = np.arange(0, len(q), 3, dtype=np.int64)
    cand = search.nearest_k_tree(q, rows, g, idx.tree, 4, len(idx.group_centres_sq))
    assert np.array_equal(cand, np.argsort(d_all[rows], 1, kind="stable")[:, :4])


def test_two_nearest_groups_ranks_by_score():
    # queries along rows (groups x queries), an odd count split between threads; one group: -1
    rng = np.random.default_rng(8)
    g = rng.standard_normal((13, 1001)).astype(np.float32)
    pairs = search.two_nearest_groups(g, 2)
    assert np.array_equal(pairs, np.argsort(g.T, 1, kind="stable")[:, :2])
    one = search.two_nearest_groups(g[:1], 2)
    assert np.all(one[:, 0] == 0) and np.all(one[:, 1] == -1)


def test_kmeans_separates_clear_clusters():
    rng = np.random.default_rng(4)
    centres = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    x = np.concatenate([c + rng.standard_normal((200, 2)).astype(np.float32) * 0.3 for c in centres])
    c, a = stats.kmeans(x, 3)
    assert len(np.unique(a)) == 3
    found = sorted(map(tuple, np.round(c).astype(int)))
    assert found == [(0, 0), (0, 10), (10, 0)]


def test_latency_histogram_is_cumulative_per_upper_bound():
    from vi_stream.processing.statistics import Statistics
    s = Statistics()
    for latency in (0.01, 0.07, 0.07, 3.0, 100.0):
        s.output(True, latency)
    s.output(False)
    h = s.snapshot()["latency_histogram"]
    assert h["le"] == [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
    assert h["count_le"] == [1, 3, 3, 3, 3, 3, 4, 4, 4]
    assert h["count"] == 5 and abs(h["sum_s"] - 103.15) < 1e-9
