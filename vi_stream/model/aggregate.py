"""The feature head's pixel work on CPU (numba), on projected NCHW maps.

The frozen CPU trunk hands back NCHW taps. Projecting each tap to D channels
is a GEMM on that layout (torch, per backbone call: see
:meth:`~vi_stream.model.features.PatchFeatures.projected_chunk`), after the
2x2 mean of the stride-4 taps (which commutes with it and leaves a quarter of
the map to project). What is left of the aggregation of
:meth:`~vi_stream.model.features.PatchFeatures.raw_head` runs on D-channel
planes: bilinear upsampling of the stride-16/32 maps (``align_corners=False``,
as ``F.interpolate``), their sum with the stride-8 map, and the 3x3 mean
(``count_include_pad=False``).
The torch head converted every tap to channels-last first, which cost more
than a third of its time (measured: 3.0 -> 1.9 ms for the nine 320 px tiles
of a 768x768 image).

Every plane is contiguous rows, so the loops run along rows in SIMD lanes;
planes are shared between threads.
"""
from __future__ import annotations

import numba
import numpy as np


def interp_table(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and weight of i1 for bilinear resizing n_in -> n_out samples,
    half-pixel centres and the edge clamped, as ``F.interpolate(align_corners=False)``."""
    f = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(f).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (f - i0).astype(np.float32)


@numba.njit(cache=True, fastmath=True)
def pool2(src, dst):  # pragma: no cover - compiled
    """dst (n, C, h, w) = 2x2 mean of src (n, C, >=2h, >=2w). Serial: it runs right after each
    backbone call, while torch's threads still hold the cores."""
    n, c, h, w = dst.shape
    quarter = np.float32(0.25)
    for t in range(n):
        for ch in range(c):
            for y in range(h):
                a0 = src[t, ch, 2 * y]
                a1 = src[t, ch, 2 * y + 1]
                o = dst[t, ch, y]
                for x in range(w):
                    o[x] = quarter * ((a0[2 * x] + a0[2 * x + 1]) + (a1[2 * x] + a1[2 * x + 1]))


@numba.njit(cache=True, parallel=True, fastmath=True)
def add_resized(dst, src, y0, y1, wy, x0, x1, wx):  # pragma: no cover - compiled
    """dst (n, D, h, w) += bilinear resize of src (n, D, hs, ws) with tables from interp_table."""
    n, d, h, w = dst.shape
    ws = src.shape[3]
    one = np.float32(1.0)
    for job in numba.prange(n * d):
        t = job // d
        c = job % d
        row = np.empty(ws, np.float32)
        for y in range(h):
            r0 = src[t, c, y0[y]]
            r1 = src[t, c, y1[y]]
            b = wy[y]
            for x in range(ws):
                row[x] = (one - b) * r0[x] + b * r1[x]
            o = dst[t, c, y]
            for x in range(w):
                o[x] += (one - wx[x]) * row[x0[x]] + wx[x] * row[x1[x]]


@numba.njit(cache=True, parallel=True, fastmath=True)
def mean3x3(src, bias, out):  # pragma: no cover - compiled
    """out = 3x3 mean of src (n, D, h, w) over the cells inside the plane, plus bias[channel].
    ``out`` may be ``src``: a plane is read whole before it is written."""
    n, d, h, w = src.shape
    for job in numba.prange(n * d):
        t = job // d
        c = job % d
        s = src[t, c]
        rows = np.zeros((h + 2, w), np.float32)  # horizontal 3-sums; a zero row above and below
        for y in range(h):
            r = rows[y + 1]
            sy = s[y]
            if w == 1:
                r[0] = sy[0]
                continue
            r[0] = sy[0] + sy[1]
            for x in range(1, w - 1):
                r[x] = sy[x - 1] + sy[x] + sy[x + 1]
            r[w - 1] = sy[w - 2] + sy[w - 1]
        for y in range(h):
            ny = np.float32(min(y + 2, h) - max(y - 1, 0))
            a = rows[y]
            b = rows[y + 1]
            e = rows[y + 2]
            o = out[t, c, y]
            for x in range(w):
                nx = np.float32(min(x + 2, w) - max(x - 1, 0))
                o[x] = (a[x] + b[x] + e[x]) / (ny * nx) + bias[c]


@numba.njit(cache=True, parallel=True)
def gather_rows(maps, rows):  # pragma: no cover - compiled
    """Rows ``rows`` of the (n*h*w, D) patch matrix of NCHW maps (n, D, h, w), i.e. the
    channels-last flattening, without building it."""
    n, d, h, w = maps.shape
    flat = maps.reshape(n, d, h * w)
    out = np.empty((rows.shape[0], d), np.float32)
    for i in numba.prange(rows.shape[0]):
        t = rows[i] // (h * w)
        p = rows[i] % (h * w)
        for c in range(d):
            out[i, c] = flat[t, c, p]
    return out
