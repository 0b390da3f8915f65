"""The medoid tree: which cells a patch searches (its own near cell; the nearest few above the gate)."""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from vi_stream.threads import share as _share
from vi_stream.search.layout import Lists, by_list, list_layout
from vi_stream.search.scan import list_distances, scan_pairs

@numba.njit(cache=True, parallel=True, fastmath=True)
def two_nearest_groups(g_score, nt):  # pragma: no cover - compiled
    """The two best-ranked groups of every query (``g_score``: groups x queries, see
    :func:`group_scores`), as rows of (query, group) pairs: the second is -1 when there is only
    one group. Each thread runs along its queries in SIMD lanes, group by group, with selects
    for branches (a branch per query and group is slower)."""
    g, n = g_score.shape
    out = np.empty((n, 2), np.int64)
    for th in numba.prange(nt):
        lo, hi = _share(th, nt, n)
        gd0 = np.full(hi - lo, np.float32(3e38), np.float32)
        gd1 = np.full(hi - lo, np.float32(3e38), np.float32)
        gi0 = np.full(hi - lo, -1, np.int32)
        gi1 = np.full(hi - lo, -1, np.int32)
        for j in range(g):
            row = g_score[j]
            jj = np.int32(j)
            for i in range(hi - lo):
                v = row[lo + i]
                d0 = gd0[i]
                d1 = gd1[i]
                first = v < d0
                gi1[i] = gi0[i] if first else (jj if v < d1 else gi1[i])
                gd1[i] = d0 if first else min(v, d1)
                gi0[i] = jj if first else gi0[i]
                gd0[i] = min(v, d0)
        for i in range(hi - lo):
            out[lo + i, 0] = gi0[i]
            out[lo + i, 1] = gi1[i]
    return out


@numba.njit(cache=True)
def best_of_pairs(n, pair_q, pair_d, pair_cell):  # pragma: no cover - compiled
    """Each query's nearest cell over its (query, cell) pairs and the squared distance."""
    cell = np.zeros(n, np.int64)
    d_sq = np.full(n, np.float32(3e38), np.float32)
    for p in range(pair_q.shape[0]):
        i = pair_q[p]
        if pair_d[p] < d_sq[i]:
            d_sq[i] = pair_d[p]
            cell[i] = pair_cell[p]
    return cell, d_sq


class Tree(NamedTuple):
    """The medoid tree's second level for the kernels: the medoids group by group as
    :class:`Lists`, the cell of each of its slots (plus one spare entry), and each group's
    real number of medoids."""

    groups: Lists
    slot_cell: np.ndarray  # int64
    size: np.ndarray       # int64


def medoid_tree(medoids: np.ndarray, assign: np.ndarray, n_groups: int) -> Tree:
    """:class:`Tree` of ``medoids`` (one per cell) grouped by ``assign``."""
    order = np.argsort(assign, kind="stable")
    size = np.bincount(assign, minlength=n_groups).astype(np.int64)
    end = np.cumsum(size)
    groups = list_layout(medoids[order], end - size, end)
    slot_cell = np.zeros(len(groups.sq) + 1, np.int64)
    for g in range(n_groups):
        slot_cell[groups.start[g]:groups.start[g] + size[g]] = order[end[g] - size[g]:end[g]]
    return Tree(groups, slot_cell, size)


def nearest_cell_tree(q: np.ndarray, q_sq: np.ndarray, g_score: np.ndarray, tree: Tree
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest medoid through a two-level tree: the 2 nearest groups (``g_score[i, j]`` ranks
    group j for query i: see :func:`group_scores`), then all their medoids, scanned as lists.
    Returns each query's cell and squared distance to that cell's medoid.

    Approximate (a cell outside the probed groups can be nearer), but the result is always a
    real cell, so its members still bound the true NN distance from above; patches above the
    gate are searched exactly later. (A query whose groups are both empty keeps cell 0 at
    distance 3e38: the padding's 1e30 never wins, nor does the spare slot.)
    """
    n = len(q)
    pairs = two_nearest_groups(g_score, numba.get_num_threads()).ravel()
    pair_q = np.repeat(np.arange(n, dtype=np.int64), 2)
    keep = pairs >= 0
    pq, pg, d_sq, pos = scan_pairs(q, q_sq, pair_q[keep], pairs[keep], tree.groups, with_arg=True)
    return best_of_pairs(n, pq, d_sq, tree.slot_cell[tree.groups.start[pg] + pos])


@numba.njit(cache=True, fastmath=True, inline="always")
def _insert(bd, bi, v, j):  # pragma: no cover - compiled
    """Insert (v, j) into the ascending top list (bd, bi) if v beats its last entry."""
    k = bd.shape[0]
    if v >= bd[k - 1]:
        return
    p = k - 1
    while p > 0 and bd[p - 1] > v:
        bd[p] = bd[p - 1]
        bi[p] = bi[p - 1]
        p -= 1
    bd[p] = v
    bi[p] = j


@numba.njit(cache=True, parallel=True)
def nearest_groups(g_score, rows, n_groups, nt):  # pragma: no cover - compiled
    """The ``n_groups`` best-ranked groups of each of the query rows ``rows``, best first
    (-1 where there are fewer groups)."""
    out = np.full((rows.shape[0], n_groups), -1, np.int64)
    for th in numba.prange(nt):
        gd = np.empty(n_groups, np.float32)
        lo, hi = _share(th, nt, rows.shape[0])
        gi = np.empty(n_groups, np.int64)
        for r in range(lo, hi):
            gd[:] = np.float32(3e38)
            gi[:] = -1
            for j in range(g_score.shape[0]):
                _insert(gd, gi, g_score[j, rows[r]], j)
            for e in range(n_groups):
                out[r, e] = gi[e]
    return out


@numba.njit(cache=True, parallel=True, fastmath=True)
def top_k_cells(dist, pair_at, groups, size, start, slot_cell, k, nt):  # pragma: no cover - compiled
    """Per query row r, the ``k`` cells whose medoids have the smallest ``dist`` among the
    real medoids of its groups (row r's group s has its distances from ``pair_at[r * n_groups
    + s]``), nearest first; -1 where fewer exist. Ranking a row's groups together, rather than
    each (row, group) pair on its own, skips most candidates after the first group."""
    n_rows, n_groups = groups.shape
    out = np.full((n_rows, k), -1, np.int64)
    for th in numba.prange(nt):
        bd = np.empty(k, np.float32)
        bp = np.empty(k, np.int64)
        lo, hi = _share(th, nt, n_rows)
        for r in range(lo, hi):
            bd[:] = np.float32(3e38)
            bp[:] = -1
            for s in range(n_groups):
                g = groups[r, s]
                if g < 0:
                    break
                at = pair_at[r * n_groups + s]
                for j in range(size[g]):
                    _insert(bd, bp, dist[at + j], start[g] + j)
            for e in range(k):
                if bp[e] >= 0:
                    out[r, e] = slot_cell[bp[e]]
    return out


def nearest_k_tree(q: np.ndarray, rows: np.ndarray, g_score: np.ndarray, tree: Tree, k: int, n_groups: int
                   ) -> np.ndarray:
    """For the query rows ``rows``: the ``k`` nearest medoids among the cells of the
    ``n_groups`` nearest groups of the medoid tree, nearest first (-1 where fewer exist).
    With ``n_groups`` = all groups this is the exact k nearest."""
    nt = numba.get_num_threads()
    groups = nearest_groups(g_score, rows, n_groups, nt)
    pair_g = groups.ravel()
    keep = np.flatnonzero(pair_g >= 0)
    length = tree.groups.count[pair_g[keep]]
    pair_at = np.zeros(len(pair_g), np.int64)
    pair_at[keep] = np.cumsum(length) - length  # each pair's distances, packed
    order, quads = by_list(pair_g[keep], len(tree.size), 4)
    pairs = keep[order]
    dist = np.empty(int(length.sum()), np.float32)
    if len(pairs):
        list_distances(q, rows[pairs // n_groups], pair_g[pairs], pair_at[pairs], quads, *tree.groups, dist, nt)
    return top_k_cells(dist, pair_at, groups, tree.size, tree.groups.start, tree.slot_cell, k, nt)


def group_scores(q: np.ndarray, centres: np.ndarray, centres_sq: np.ndarray) -> np.ndarray:
    """|c_j|^2 - 2 q_i.c_j for every group centre j (rows) and query i (columns): one BLAS
    GEMM (through torch, whose thread pool the backbone already uses) instead of a dot product
    per pair in numba, which for these 32-long rows spends more time summing across SIMD lanes
    than multiplying. Queries along rows suit :func:`two_nearest_groups`."""
    import torch

    return torch.addmm(torch.from_numpy(centres_sq)[:, None], torch.from_numpy(centres), torch.from_numpy(q).T,
                       alpha=-2.0).numpy()
