"""Scanning lists: the nearest member of a list for (query, list) pairs, four queries per pass."""
from __future__ import annotations

import numba
import numpy as np

from vi_stream.threads import share as _share
from vi_stream.search.kernels import distances_of_four, min_of_four, nearest_of_four
from vi_stream.search.layout import Lists, by_list

@numba.njit(cache=True, inline="always")
def _load_quad(q, pair_q, quads, k, xs):  # pragma: no cover - compiled
    """Quad k's four pairs (a short quad repeats its last: the same answer, written twice) and
    their queries; fills ``xs`` with -2q of the four, dimension by dimension, as the list
    kernel takes them."""
    p0 = quads[k]
    last = quads[k + 1] - 1
    p1 = min(p0 + 1, last)
    p2 = min(p0 + 2, last)
    p3 = min(p0 + 3, last)
    i0, i1, i2, i3 = pair_q[p0], pair_q[p1], pair_q[p2], pair_q[p3]
    m2 = np.float32(-2.0)
    for t in range(q.shape[1]):
        xs[4 * t] = m2 * q[i0, t]
        xs[4 * t + 1] = m2 * q[i1, t]
        xs[4 * t + 2] = m2 * q[i2, t]
        xs[4 * t + 3] = m2 * q[i3, t]
    return p0, p1, p2, p3, i0, i1, i2, i3


@numba.njit(cache=True, parallel=True, fastmath=True)
def scan_lists(q, q_sq, pair_q, pair_l, quads, values, sq, start, count, out_d, out_j,
               nt):  # pragma: no cover - compiled
    """Squared distance ``out_d[p]`` from query ``pair_q[p]`` to the nearest member of list
    ``pair_l[p]``, for pairs sorted by list; also the member's position in the list
    (``out_j[p]``) when ``out_j`` is not empty.

    Up to four queries on one list share each pass over it (``quads``: runs of 4, see
    :func:`by_list`), LIST_WIDTH members at a time in vector registers (:func:`~vi_stream.search.kernels.min_of_four`).
    A dot product per pair over the row-major bank would spend its time summing across lanes.
    """
    d = q.shape[1]
    zero = np.float32(0.0)
    with_arg = out_j.shape[0] > 0
    for th in numba.prange(nt):
        xs = np.empty(4 * d, np.float32)
        lo, hi = _share(th, nt, quads.shape[0] - 1)
        for k in range(lo, hi):
            p0, p1, p2, p3, i0, i1, i2, i3 = _load_quad(q, pair_q, quads, k, xs)
            lst = pair_l[p0]
            s0 = start[lst]
            if with_arg:
                r0, r1, r2, r3, j0, j1, j2, j3 = nearest_of_four(values, d * s0, count[lst], d, xs, sq, s0)
                out_j[p0] = j0
                out_j[p1] = j1
                out_j[p2] = j2
                out_j[p3] = j3
            else:
                r0, r1, r2, r3 = min_of_four(values, d * s0, count[lst], d, xs, sq, s0)
            # (3e38, a finite "none", for an empty list: fastmath assumes no infinities)
            out_d[p0] = max(r0 + q_sq[i0], zero)
            out_d[p1] = max(r1 + q_sq[i1], zero)
            out_d[p2] = max(r2 + q_sq[i2], zero)
            out_d[p3] = max(r3 + q_sq[i3], zero)


def scan_pairs(q: np.ndarray, q_sq: np.ndarray, pair_q: np.ndarray, pair_l: np.ndarray, lists: Lists,
               with_arg: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`scan_lists` for unsorted (query, list) pairs. Returns the pairs sorted by list
    (queries, lists) with each one's squared distance and, with ``with_arg``, member position."""
    order, quads = by_list(pair_l, len(lists.start), 4)
    pq, pl = pair_q[order], pair_l[order]
    out = np.empty(len(pq), np.float32)
    out_j = np.empty(len(pq) if with_arg else 0, np.int64)
    if len(pq):
        scan_lists(q, q_sq, pq, pl, quads, *lists, out, out_j, numba.get_num_threads())
    return pq, pl, out, out_j


def nearest_in_lists(q: np.ndarray, q_sq: np.ndarray, pair_q: np.ndarray, pair_l: np.ndarray,
                     lists: Lists, d_sq: np.ndarray) -> None:
    """For each (query, list) pair, lower ``d_sq[query]`` to the squared distance of the list's
    nearest member if that is smaller (a query may come in several pairs)."""
    pq, _pl, out, _j = scan_pairs(q, q_sq, pair_q, pair_l, lists)
    min_into(d_sq, pq, out)


@numba.njit(cache=True)
def min_into(d_sq, pair_q, pair_d):  # pragma: no cover - compiled
    """d_sq[pair_q[p]] = min(d_sq[pair_q[p]], pair_d[p]) for every pair."""
    for p in range(pair_q.shape[0]):
        i = pair_q[p]
        if pair_d[p] < d_sq[i]:
            d_sq[i] = pair_d[p]


@numba.njit(cache=True, parallel=True, fastmath=True)
def list_distances(q, pair_q, pair_l, pair_at, quads, values, sq, start, count, out,
                   nt):  # pragma: no cover - compiled
    """|m|^2 - 2 q.m for every member m of list ``pair_l[p]`` and query ``pair_q[p]`` (pairs
    sorted by list, ``quads`` as for :func:`scan_lists`), written to ``out`` from ``pair_at[p]``."""
    d = q.shape[1]
    for th in numba.prange(nt):
        xs = np.empty(4 * d, np.float32)
        lo, hi = _share(th, nt, quads.shape[0] - 1)
        for k in range(lo, hi):
            p0, p1, p2, p3, _i0, _i1, _i2, _i3 = _load_quad(q, pair_q, quads, k, xs)
            lst = pair_l[p0]
            s0 = start[lst]
            distances_of_four(values, d * s0, count[lst], d, xs, sq, s0, out,
                               pair_at[p0], pair_at[p1], pair_at[p2], pair_at[p3])


@numba.njit(cache=True, parallel=True, fastmath=True)
def row_sq(x):  # pragma: no cover - compiled
    """|x_i|^2 of each row (float32; faster than ``np.einsum`` for short rows)."""
    out = np.empty(x.shape[0], np.float32)
    for i in numba.prange(x.shape[0]):
        acc = np.float32(0.0)
        for t in range(x.shape[1]):
            acc += x[i, t] * x[i, t]
        out[i] = acc
    return out


@numba.njit(cache=True)
def rows_above(d_sq, gate_sq):  # pragma: no cover - compiled
    count = 0
    for i in range(d_sq.shape[0]):
        if d_sq[i] > gate_sq:
            count += 1
    rows = np.empty(count, np.int64)
    c = 0
    for i in range(d_sq.shape[0]):
        if d_sq[i] > gate_sq:
            rows[c] = i
            c += 1
    return rows
