"""Streaming fit statistics (numba on CPU): moments, reservoir, k-means.

A running mean/covariance (float64) and a fixed-size uniform reservoir of patch
features (Vitter's algorithm R) are updated batch by batch, so fit memory is bounded
by ``bank_size`` however many images are given. k-means partitions the bank into the
cells the search (:mod:`vi_stream.search`) scans.
"""
from __future__ import annotations

import numba
import numpy as np

from vi_stream.threads import share as _share


# ---------------------------------------------------------------- streaming fit
class Moments:
    """Streaming mean and covariance (float64, batch-merged, numerically stable)."""

    def __init__(self, dim: int):
        self.n = 0
        self.mean = np.zeros(dim, np.float64)
        self.m2 = np.zeros((dim, dim), np.float64)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        nb = x.shape[0]
        if nb == 0:
            return
        mb = x.mean(axis=0)
        xc = x - mb
        m2b = xc.T @ xc
        delta = mb - self.mean
        n = self.n + nb
        self.m2 += m2b + np.outer(delta, delta) * (self.n * nb / n)
        self.mean += delta * (nb / n)
        self.n = n

    def covariance(self) -> np.ndarray:
        return self.m2 / max(self.n - 1, 1)


class Reservoir:
    """Uniform sample of at most ``capacity`` rows from a stream (algorithm R)."""

    def __init__(self, capacity: int, dim: int, seed: int = 0):
        self.data = np.empty((capacity, dim), np.float32)
        self.labels = np.zeros(capacity, np.uint8)   # each row's label (its image's fold: calibration)
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    @property
    def filled(self) -> np.ndarray:
        return self.data[: min(self.seen, len(self.data))]

    @property
    def filled_labels(self) -> np.ndarray:
        return self.labels[: min(self.seen, len(self.data))]

    def update(self, x: np.ndarray, label: int = 0) -> None:
        cap = len(self.data)
        nb = len(x)
        start = self.seen
        take = max(0, min(nb, cap - start))
        if take:
            self.data[start:start + take] = x[:take]
            self.labels[start:start + take] = label
        if nb > take:
            idx = np.arange(start + take, start + nb)  # global index of each remaining row
            j = (self.rng.random(len(idx)) * (idx + 1)).astype(np.int64)
            keep = j < cap
            # later rows overwrite earlier ones at the same slot, as in the sequential algorithm
            self.data[j[keep]] = x[take:][keep]
            self.labels[j[keep]] = label
        self.seen += nb


# ---------------------------------------------------------------- kernels
@numba.njit(cache=True, parallel=True, fastmath=True)
def nearest_centre(x, c, c_sq):  # pragma: no cover - compiled
    """Index and squared distance of the nearest row of ``c`` for every row of ``x``."""
    n, d = x.shape
    k = c.shape[0]
    idx = np.empty(n, np.int64)
    dist = np.empty(n, np.float32)
    for i in numba.prange(n):
        best = np.float32(np.inf)
        bi = 0
        for j in range(k):
            dot = np.float32(0.0)
            for t in range(d):
                dot += x[i, t] * c[j, t]
            v = c_sq[j] - 2 * dot
            if v < best:
                best = v
                bi = j
        xs = np.float32(0.0)
        for t in range(d):
            xs += x[i, t] * x[i, t]
        idx[i] = bi
        dist[i] = max(best + xs, np.float32(0.0))
    return idx, dist


@numba.njit(cache=True, parallel=True)
def _centre_sums(x, assign, k, nthreads):  # pragma: no cover - compiled
    n, d = x.shape
    sums = np.zeros((nthreads, k, d), np.float64)
    counts = np.zeros((nthreads, k), np.int64)
    for t in numba.prange(nthreads):
        lo, hi = _share(t, nthreads, n)
        for i in range(lo, hi):
            a = assign[i]
            counts[t, a] += 1
            for j in range(d):
                sums[t, a, j] += x[i, j]
    return sums.sum(axis=0), counts.sum(axis=0)


def kmeans(x: np.ndarray, k: int, iterations: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means from k distinct random rows (empty cells re-seeded at the farthest points);
    returns (centres, assignment)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    k = min(k, n)
    centres = x[rng.choice(n, k, replace=False)].astype(np.float32).copy()
    assign = np.zeros(n, np.int64)
    for _ in range(iterations):
        assign, _d = nearest_centre(x, centres, (centres * centres).sum(1))
        sums, counts = _centre_sums(x, assign, k, numba.get_num_threads())
        empty = counts == 0
        new = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        if empty.any():  # re-seed empty cells at the farthest points
            _a, dist = nearest_centre(x, new, (new * new).sum(1))
            far = np.argsort(dist)[::-1][: int(empty.sum())]
            new[empty] = x[far]
        moved = float(np.abs(new - centres).max())
        centres = new
        if moved < 1e-4:
            break
    assign, _d = nearest_centre(x, centres, (centres * centres).sum(1))
    return centres, assign
