"""How the search holds its rows: lists (cells, medoid groups), dimension-major, half precision."""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

LIST_WIDTH = 32  # members per step of the list kernel (one LLVM vector); lists are padded to it


class Lists(NamedTuple):
    """Row lists (the bank's cells, or the medoid tree's groups) laid out for
    :func:`scan_lists`: each list transposed (dimension-major, members along the fast axis),
    stored as IEEE half precision and padded to a multiple of LIST_WIDTH members (|row|^2 =
    1e30, so padding never wins). Member j of list L, dimension t, is the float16 whose bits
    are ``values[dims * start[L] + t * count[L] + j]``; its |row|^2 (of the float16 values, in
    float32) is ``sq[start[L] + j]``. The kernels widen members to float32 as they load them,
    so a distance is exact (to float32 rounding) for the member as stored.

    Half precision halves the bytes the search reads, which the backbone pushes out of cache
    between images; rounding moves a member by at most 2^-11 of its largest coordinate (see
    :func:`half_precision`, and bench/history.md for the measurements)."""

    values: np.ndarray   # uint16 (float16 bits), flat
    sq: np.ndarray       # float32, per padded slot
    start: np.ndarray    # int64, first slot of each list
    count: np.ndarray    # int64, padded length of each list


def half_precision(rows: np.ndarray) -> np.ndarray:
    """``rows`` rounded to float16 precision (as float32): what :class:`Lists` stores. Values
    beyond float16's range (65504) are an error, not infinities."""
    rows = np.asarray(rows, np.float32)
    if rows.size and not np.abs(rows).max() <= 65504.0:
        raise ValueError("rows exceed float16 range (|x| > 65504) or are not finite")
    return rows.astype(np.float16).astype(np.float32)


def list_layout(rows: np.ndarray, start: np.ndarray, end: np.ndarray) -> Lists:
    """:class:`Lists` for the row ranges ``rows[start[L]:end[L]]``."""
    dims = rows.shape[1]
    real = (end - start).astype(np.int64)
    count = (real + LIST_WIDTH - 1) // LIST_WIDTH * LIST_WIDTH
    slot_end = np.cumsum(count)
    slot_start = slot_end - count
    total = int(slot_end[-1]) if len(count) else 0
    values = np.zeros(total * dims, np.float16)
    sq = np.full(total, np.float32(1e30), np.float32)
    rows = half_precision(rows)
    for lst in range(len(count)):
        block = rows[start[lst]:end[lst]]
        s0, m = int(slot_start[lst]), int(count[lst])
        values[dims * s0:dims * (s0 + m)].reshape(dims, m)[:, :len(block)] = block.T
        sq[s0:s0 + len(block)] = np.einsum("ij,ij->i", block, block)
    return Lists(values.view(np.uint16), sq, slot_start.astype(np.int64), count)


@numba.njit(cache=True)
def by_list(pair_list, n_lists, run):  # pragma: no cover - compiled
    """Counting sort of (query, list) pairs by list. Returns the order and the boundaries of
    runs of at most ``run`` consecutive sorted pairs on the same list, which
    :func:`scan_lists` serves together (4: one pass over the list)."""
    n = pair_list.shape[0]
    count = np.zeros(n_lists + 1, np.int64)
    for p in range(n):
        count[pair_list[p] + 1] += 1
    for lst in range(n_lists):
        count[lst + 1] += count[lst]
    order = np.empty(n, np.int64)
    for p in range(n):
        lst = pair_list[p]
        order[count[lst]] = p
        count[lst] += 1
    runs = np.empty(n + 1, np.int64)
    nr = 0
    p = 0
    while p < n:
        runs[nr] = p
        nr += 1
        lst = pair_list[order[p]]
        e = min(p + run, n)
        p += 1
        while p < e and pair_list[order[p]] == lst:
            p += 1
    runs[nr] = n
    return order, runs[:nr + 1]
