"""The cell-to-cell comparison's pixel work (numba), apart from :mod:`.lattice`'s estimation and
fusion: each pixel against the median of the same place in its lattice neighbours."""
from __future__ import annotations

import cv2
import numba
import numpy as np


@numba.njit(inline="always")
def _cs(a, b):  # pragma: no cover - compiled
    return min(a, b), max(a, b)


@numba.njit(inline="always")
def _median8(v0, v1, v2, v3, v4, v5, v6, v7):  # pragma: no cover - compiled
    """Median of 8 (mean of the middle two) by Batcher's merge network: no branches, 2.5x the
    insertion sort's speed where every pixel has all four pairs (measured at 2048x2048)."""
    v0, v1 = _cs(v0, v1)
    v2, v3 = _cs(v2, v3)
    v4, v5 = _cs(v4, v5)
    v6, v7 = _cs(v6, v7)
    v0, v2 = _cs(v0, v2)
    v1, v3 = _cs(v1, v3)
    v4, v6 = _cs(v4, v6)
    v5, v7 = _cs(v5, v7)
    v1, v2 = _cs(v1, v2)
    v5, v6 = _cs(v5, v6)
    v0, v4 = _cs(v0, v4)
    v1, v5 = _cs(v1, v5)
    v2, v6 = _cs(v2, v6)
    v3, v7 = _cs(v3, v7)
    v2, v4 = _cs(v2, v4)
    v3, v5 = _cs(v3, v5)
    v3, v4 = _cs(v3, v4)
    return 0.5 * (v3 + v4)


@numba.njit(inline="always")
def _median6(v0, v1, v2, v3, v4, v5):  # pragma: no cover - compiled
    """Median of 6 (mean of the middle two): the optimal 12-comparator sorting network, less the
    comparators whose outputs the middle two do not depend on."""
    v0, v5 = _cs(v0, v5)
    v1, v3 = _cs(v1, v3)
    v2, v4 = _cs(v2, v4)
    v1, v2 = _cs(v1, v2)
    v3, v4 = _cs(v3, v4)
    v0, v3 = _cs(v0, v3)
    v2, v5 = _cs(v2, v5)
    v2, v3 = _cs(v2, v3)
    # the last two layers: (0,1) (4,5), then (1,2) (3,4); the middle two are outputs 2 and 3
    return 0.5 * (max(max(v0, v1), v2) + min(v3, min(v4, v5)))


@numba.njit(inline="always")
def _median4(v0, v1, v2, v3):  # pragma: no cover - compiled
    """Median of 4 (mean of the middle two): the larger of the pairs' minima and the smaller of
    their maxima."""
    return 0.5 * (max(min(v0, v1), min(v2, v3)) + min(max(v0, v1), max(v2, v3)))


@numba.njit(parallel=True, cache=True)
def _median_of_pairs(g, stack, k):  # pragma: no cover - compiled
    h, w = g.shape
    out = np.zeros((h, w), np.float32)
    for y in numba.prange(h):
        vals = np.empty(2 * k, np.float32)
        for x in range(w):
            n = 0
            for j in range(k):                   # pairs while both cells are inside (NaN outside)
                p = stack[2 * j, y, x]
                m = stack[2 * j + 1, y, x]
                if np.isnan(p) or np.isnan(m):
                    break
                n += 2
            if n == 8:
                out[y, x] = g[y, x] - _median8(stack[0, y, x], stack[1, y, x], stack[2, y, x], stack[3, y, x],
                                               stack[4, y, x], stack[5, y, x], stack[6, y, x], stack[7, y, x])
            elif n == 6:
                out[y, x] = g[y, x] - _median6(stack[0, y, x], stack[1, y, x], stack[2, y, x], stack[3, y, x],
                                               stack[4, y, x], stack[5, y, x])
            elif n == 4:
                out[y, x] = g[y, x] - _median4(stack[0, y, x], stack[1, y, x], stack[2, y, x], stack[3, y, x])
            elif n == 2:
                out[y, x] = g[y, x] - 0.5 * (stack[0, y, x] + stack[1, y, x])
            elif n > 8:
                for i in range(n):               # insertion sort of 10 or more values (k > 4)
                    v = stack[i, y, x]
                    q = i
                    while q > 0 and vals[q - 1] > v:
                        vals[q] = vals[q - 1]
                        q -= 1
                    vals[q] = v
                out[y, x] = g[y, x] - 0.5 * (vals[n // 2 - 1] + vals[n // 2])
    return out


def median_residual(g: np.ndarray, ax: float, ay: float, k: int) -> np.ndarray:
    """g - median of g at +-j*a, j = 1..k, over the pairs whose both cells are in the image: a
    pair's mean cancels a linear illumination gradient; one-sided cells would not (0 where no pair).

    The 2k shifted images are OpenCV's bilinear warps (vectorised; NaN outside the image), and the
    median a sorting network where all four pairs are in (1.7-2x the speed of sampling in the loop,
    measured at 768x768)."""
    h, w = g.shape
    g = np.ascontiguousarray(g, np.float32)
    stack = np.empty((2 * k, h, w), np.float32)
    for j in range(1, k + 1):
        for s, sign in ((2 * j - 2, 1.0), (2 * j - 1, -1.0)):
            shift = np.float32([[1, 0, sign * j * float(ax)], [0, 1, sign * j * float(ay)]])
            cv2.warpAffine(g, shift, (w, h), dst=stack[s], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))
    return _median_of_pairs(g, stack, k)


@numba.njit(fastmath=True, cache=True, boundscheck=False)
def correlations(x, sy, sx):  # pragma: no cover - compiled
    """sum over p of x[p] x[p + s] for each shift s = (sy[i], sx[i]) (zero outside ``x``): the
    autocorrelation at a few shifts without a transform (each row's products summed in float32,
    the rows in float64). A row at a time, every shift on it: the rows stay in the first-level
    cache, and the products run over two slices from 0, which the compiler vectorises (indexing the
    2-D array at ``c + dx`` kept it scalar: 18 shifts of a 512 px crop took 4.8 ms, now 0.5 ms,
    bench/history.md). One thread: a parallel call is a meeting of the threads, and on a loaded
    machine one of them is often late."""
    h, w = x.shape
    out = np.zeros(sy.shape[0], np.float64)
    for y in range(h):
        a = x[y]
        for i in range(sy.shape[0]):
            dy, dx = sy[i], sx[i]
            if y + dy < 0 or y + dy >= h:
                continue
            c0 = max(0, -dx)
            m = min(w, w - dx) - c0
            if m <= 0:
                continue
            u = a[c0:c0 + m]
            v = x[y + dy, c0 + dx:c0 + dx + m]
            row = np.float32(0.0)
            for c in range(m):
                row += u[c] * v[c]
            out[i] += row
    return out


@numba.njit(parallel=True, fastmath=True, cache=True)
def gained_maximum(maps, gains):  # pragma: no cover - compiled
    """max over i of gains[i] * maps[i], pixelwise (the fused lattice map); a row at a time, map by
    map, so the inner loops vectorise (2x the speed of taking every map at each pixel)."""
    n, h, w = maps.shape
    out = np.empty((h, w), np.float32)
    for y in numba.prange(h):
        for x in range(w):
            out[y, x] = gains[0] * maps[0, y, x]
        for i in range(1, n):
            g = gains[i]
            for x in range(w):
                out[y, x] = max(out[y, x], g * maps[i, y, x])
    return out


@numba.njit(parallel=True, fastmath=True, cache=True)
def tolerant_residual(b, d, r):  # pragma: no cover - compiled
    """The signed part of ``b`` outside the range that the neighbours' median ``b - d`` takes within
    ``r`` px (its grey dilation and erosion over a (2r+1)^2 square, clamped at the image's edges);
    0 inside that range and where ``d`` is 0 (no pair of neighbours). The range is taken down the
    columns, then along the row, a row at a time: 3.4x the speed of OpenCV's dilate, erode and
    five array passes (768², the same values)."""
    h, w = b.shape
    out = np.empty((h, w), np.float32)
    for y in numba.prange(h):
        y0, y1 = max(y - r, 0), min(y + r, h - 1)
        cmin = np.empty(w, np.float32)
        cmax = np.empty(w, np.float32)
        for x in range(w):
            v = b[y0, x] - d[y0, x]
            cmin[x] = v
            cmax[x] = v
        for yy in range(y0 + 1, y1 + 1):
            for x in range(w):
                v = b[yy, x] - d[yy, x]
                cmin[x] = min(cmin[x], v)
                cmax[x] = max(cmax[x], v)
        lo = cmin.copy()
        hi = cmax.copy()
        for s in range(1, r + 1):
            for x in range(w - s):
                lo[x] = min(lo[x], cmin[x + s])
                hi[x] = max(hi[x], cmax[x + s])
            for x in range(s, w):
                lo[x] = min(lo[x], cmin[x - s])
                hi[x] = max(hi[x], cmax[x - s])
        for x in range(w):
            v = b[y, x]
            t = max(v - hi[x], 0.0) + min(v - lo[x], 0.0)    # above the range's top, or below its bottom
            out[y, x] = t if d[y, x] != 0 else 0.0
    return out
