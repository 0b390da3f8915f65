"""The list kernels as plain numba loops: the same contracts as :mod:`vi_stream.search.ir_kernels`.

Selected when the IR kernels cannot be built (a numba outside the tested range changed the
internals they use) or when ``VI_STREAM_SEARCH_KERNELS=numba``; about half their speed, the
same results (to float32 rounding). The test suite runs the search tests against both.
"""
from __future__ import annotations

import numba
import numpy as np

# float16 bits -> float32, exactly (256 KB): numba has no float16 scalars
HALF = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)


@numba.njit(cache=True, inline="always", fastmath=True)
def _terms(values, base, m, d, xs, sq, sbase, j):  # pragma: no cover - compiled
    s = sq[sbase + j]
    a0 = s
    a1 = s
    a2 = s
    a3 = s
    for t in range(d):
        v = HALF[values[base + t * m + j]]
        a0 += xs[4 * t] * v
        a1 += xs[4 * t + 1] * v
        a2 += xs[4 * t + 2] * v
        a3 += xs[4 * t + 3] * v
    return a0, a1, a2, a3


@numba.njit(cache=True, inline="always", fastmath=True)
def min_of_four(values, base, m, d, xs, sq, sbase):  # pragma: no cover - compiled
    b0 = b1 = b2 = b3 = np.float32(3e38)
    for j in range(m):
        a0, a1, a2, a3 = _terms(values, base, m, d, xs, sq, sbase, j)
        b0 = min(b0, a0)
        b1 = min(b1, a1)
        b2 = min(b2, a2)
        b3 = min(b3, a3)
    return b0, b1, b2, b3


@numba.njit(cache=True, inline="always", fastmath=True)
def nearest_of_four(values, base, m, d, xs, sq, sbase):  # pragma: no cover - compiled
    b0 = b1 = b2 = b3 = np.float32(3e38)
    j0 = j1 = j2 = j3 = 0
    for j in range(m):   # strictly lower replaces: ties go to the lower index, as in the IR
        a0, a1, a2, a3 = _terms(values, base, m, d, xs, sq, sbase, j)
        if a0 < b0:
            b0, j0 = a0, j
        if a1 < b1:
            b1, j1 = a1, j
        if a2 < b2:
            b2, j2 = a2, j
        if a3 < b3:
            b3, j3 = a3, j
    return b0, b1, b2, b3, j0, j1, j2, j3


@numba.njit(cache=True, inline="always", fastmath=True)
def distances_of_four(values, base, m, d, xs, sq, sbase, out, o0, o1, o2, o3):  # pragma: no cover - compiled
    for j in range(m):
        a0, a1, a2, a3 = _terms(values, base, m, d, xs, sq, sbase, j)
        out[o0 + j] = a0
        out[o1 + j] = a1
        out[o2 + j] = a2
        out[o3 + j] = a3


@numba.njit(cache=True, inline="always", fastmath=True)
def project_four(values, base, m, d, xs, stride, out, o0, o1, o2, o3):  # pragma: no cover - compiled
    xs = xs.reshape(-1)   # the head passes its weights as (channels, 4); the IR reads them flat too
    for j in range(m):
        a0 = out[o0 + j]
        a1 = out[o1 + j]
        a2 = out[o2 + j]
        a3 = out[o3 + j]
        for t in range(d):
            v = values[base + t * stride + j]
            a0 += xs[4 * t] * v
            a1 += xs[4 * t + 1] * v
            a2 += xs[4 * t + 2] * v
            a3 += xs[4 * t + 3] * v
        out[o0 + j] = a0
        out[o1 + j] = a1
        out[o2 + j] = a2
        out[o3 + j] = a3
