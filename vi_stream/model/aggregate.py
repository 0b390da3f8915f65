"""The feature head's pixel work on CPU (numba), on projected NCHW maps.

The frozen CPU trunk hands back NCHW taps. Each is projected to D channels
right after its backbone call (:func:`project`; see
:meth:`~vi_stream.model.features.PatchFeatures.projected_chunk`), the stride-4
taps 2x2-averaged on the way (which commutes with the projection and leaves a
quarter of the map to project). What is left of the aggregation of
:meth:`~vi_stream.model.features.PatchFeatures.raw_head` runs on D-channel
planes: bilinear upsampling of the stride-16/32 maps (``align_corners=False``,
as ``F.interpolate``), their sum with the stride-8 map, and the 3x3 mean
(``count_include_pad=False``). Why on NCHW planes and not in torch: the torch
head had to convert every tap to channels-last first (bench/history.md).

Every plane is contiguous rows, so the loops run along rows in SIMD lanes; each
thread takes a share of the planes with its scratch rows allocated once, and the
loops index arrays directly (row views count references on the shared parent).
"""
from __future__ import annotations

import numba
import numpy as np

from vi_stream.threads import share as _share
from vi_stream.search.kernels import LIST_WIDTH, project_four


def interp_table(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and weight of i1 for bilinear resizing n_in -> n_out samples,
    half-pixel centres and the edge clamped, as ``F.interpolate(align_corners=False)``."""
    f = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(f).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (f - i0).astype(np.float32)


def quad_weights(w: np.ndarray) -> np.ndarray:
    """A projection's weights (D, C) as :func:`project` takes them: (ceil(D/4), C, 4), output
    channels in fours, channel-major within each four (a short last four repeats the last
    channel, as :func:`project` does)."""
    d, c = w.shape
    q = np.repeat(np.asarray(w, np.float32), [1] * (d - 1) + [1 + (-d) % 4], axis=0)
    return np.ascontiguousarray(q.reshape(-1, 4, c).transpose(0, 2, 1))


@numba.njit(cache=True, parallel=True, fastmath=True)
def project(tap, wq, out, accumulate, pool, nt):  # pragma: no cover - compiled
    """out (n, D, h, w) = (or += with ``accumulate``) the 1x1 projection of the NCHW tap
    (n, C, h, w) by weights ``wq`` (:func:`quad_weights`); with ``pool``, of the 2x2 mean of
    the tap (n, C, 2h, 2w), which commutes with the projection and leaves a quarter of the
    pixels to project. ``nt`` threads share the (tile, channel) planes of the pooling, then
    the (tile, four output channels) jobs of the projection.

    Four output channels by LIST_WIDTH pixels at a time in vector registers
    (:func:`~vi_stream.search.kernels.project_four`): torch's GEMMs were fast repeated but slow
    as the first call after the trunk, four times per backbone call (bench/history.md).
    """
    n, d, h, w = out.shape
    c = tap.shape[1]
    hw = h * w
    main = hw // LIST_WIDTH * LIST_WIDTH
    flat_out = out.reshape(-1)
    pooled = np.empty(n * c * hw if pool else 0, np.float32)
    flat_tap = tap.reshape(-1)
    quarter = np.float32(0.25)
    if pool:
        for th in numba.prange(nt):
            lo, hi = _share(th, nt, n * c)
            for job in range(lo, hi):
                t = job // c
                ch = job % c
                for y in range(h):
                    at = job * hw + y * w
                    for x in range(w):
                        pooled[at + x] = quarter * ((tap[t, ch, 2 * y, 2 * x] + tap[t, ch, 2 * y, 2 * x + 1])
                                                    + (tap[t, ch, 2 * y + 1, 2 * x] + tap[t, ch, 2 * y + 1, 2 * x + 1]))
    src = pooled if pool else flat_tap
    nq = wq.shape[0]
    for th in numba.prange(nt):
        acc = np.empty(d, np.float32)
        lo, hi = _share(th, nt, n * nq)
        for job in range(lo, hi):
            t = job // nq
            k = job % nq
            base = t * c * hw
            if not accumulate:
                for a in range(4 * k, min(4 * k + 4, d)):
                    flat_out[(t * d + a) * hw:(t * d + a + 1) * hw] = 0.0
            # (a short last four repeats its last channel)
            at0 = (t * d + min(4 * k, d - 1)) * hw
            at1 = (t * d + min(4 * k + 1, d - 1)) * hw
            at2 = (t * d + min(4 * k + 2, d - 1)) * hw
            at3 = (t * d + min(4 * k + 3, d - 1)) * hw
            if main:
                project_four(src, base, main, c, wq[k], hw, flat_out, at0, at1, at2, at3)
            for j in range(main, hw):  # pixels beyond the last full LIST_WIDTH
                for a in range(4 * k, min(4 * k + 4, d)):
                    acc[a] = 0.0
                for ch in range(c):
                    x = src[base + ch * hw + j]
                    for a in range(4 * k, min(4 * k + 4, d)):
                        acc[a] += wq[k, ch, a - 4 * k] * x
                for a in range(4 * k, min(4 * k + 4, d)):
                    flat_out[(t * d + a) * hw + j] += acc[a]


@numba.njit(cache=True, parallel=True, fastmath=True)
def add_resized(dst, src, y0, y1, wy, x0, x1, wx, nt):  # pragma: no cover - compiled
    """dst (n, D, h, w) += bilinear resize of src (n, D, hs, ws) with tables from interp_table."""
    n, d, h, w = dst.shape
    ws = src.shape[3]
    one = np.float32(1.0)
    for th in numba.prange(nt):
        row = np.empty(ws, np.float32)
        lo, hi = _share(th, nt, n * d)
        for job in range(lo, hi):
            t = job // d
            c = job % d
            for y in range(h):
                b = wy[y]
                ya = y0[y]
                yb = y1[y]
                for x in range(ws):
                    row[x] = (one - b) * src[t, c, ya, x] + b * src[t, c, yb, x]
                for x in range(w):
                    dst[t, c, y, x] += (one - wx[x]) * row[x0[x]] + wx[x] * row[x1[x]]


@numba.njit(cache=True, parallel=True, fastmath=True)
def mean3x3(src, bias, out, nt):  # pragma: no cover - compiled
    """out = 3x3 mean of src (n, D, h, w) over the cells inside the plane, plus bias[channel].
    ``out`` may be ``src``: a plane's horizontal sums are taken whole before it is written."""
    n, d, h, w = src.shape
    for th in numba.prange(nt):
        rows = np.zeros((h + 2, w), np.float32)  # horizontal 3-sums; rows 0 and h+1 stay zero
        inv = np.empty((h, w), np.float32)       # 1 / number of cells inside the plane
        for y in range(h):
            for x in range(w):
                inv[y, x] = np.float32(1.0) / np.float32((min(y + 2, h) - max(y - 1, 0)) * (min(x + 2, w) - max(x - 1, 0)))
        lo, hi = _share(th, nt, n * d)
        for job in range(lo, hi):
            t = job // d
            c = job % d
            for y in range(h):
                if w == 1:
                    rows[y + 1, 0] = src[t, c, y, 0]
                    continue
                rows[y + 1, 0] = src[t, c, y, 0] + src[t, c, y, 1]
                for x in range(1, w - 1):
                    rows[y + 1, x] = src[t, c, y, x - 1] + src[t, c, y, x] + src[t, c, y, x + 1]
                rows[y + 1, w - 1] = src[t, c, y, w - 2] + src[t, c, y, w - 1]
            bc = bias[c]
            for y in range(h):
                for x in range(w):
                    out[t, c, y, x] = (rows[y, x] + rows[y + 1, x] + rows[y + 2, x]) * inv[y, x] + bc


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
