"""Each lattice map over its spread on good images, where the module looks the same (issue 28).

A cell-to-cell difference is not equally quiet everywhere: on a pad's grain, on a steep pad edge
that falls a fraction of a pixel differently from cell to cell, or on a textured substrate it is
large in every good image, while along a plain trace it is only the sensor's noise. One gain per
map (:func:`~.lattice.calibrate`) must then be set by the loudest place, and a cut across a trace or
a faint stain stays under it. Die-to-die inspection sets its sensitivity per region for this
reason; here the regions are learned, not drawn: every pixel falls into an *appearance bin* by two
properties of its neighbours' median (what the module looks like there, whatever the pixel itself
shows): its brightness and its edge strength (:func:`appearance`). A fit keeps, for each map and
bin, the QUANTILE-th percentile of the map on the good images (:class:`SpreadStats`), and a map is
then read over that spread (:func:`normalised_maximum`): a loud place must be louder than it is on
good images, a quiet one only louder than its quiet.

The ``moved`` map is left as it is: it is already a tolerant comparison (a pixel outside what its
neighbours take within a pixel), zero over most of a good image, so a percentile of it is no
measure of a place's noise. Measured on the tuning lines: bench/history.md.
"""
from __future__ import annotations

import cv2
import numba
import numpy as np

QUANTILE = 99.99            # percentile of a map on good images that a bin's spread is
SPREAD_MAPS = ("thin", "cut", "fine", "coarse", "wide")   # the maps read over their spread (the module's docstring)
INTENSITY_EDGES = tuple(float(v) for v in np.linspace(0.0, 1.0, 13)[1:-1])   # brightness (grey, 0-1): 12 bins
GRADIENT_EDGES = tuple(float(v) for v in np.geomspace(0.002, 0.2, 10))       # edge strength (per px): 11 bins
APPEARANCE_SIGMA = 1.5      # px: both properties are taken smoothed over this
MIN_PIXELS = 100_000        # good pixels a bin needs for its own spread (10 above the percentile): a thinner
                            # bin takes that of every bin of its edge strength, or, thinner still, the map's
FLOOR = 0.1                 # no bin's spread below this share of the map's spread over all pixels
VALUE_LO, VALUE_HI, VALUE_BUCKETS = 1e-7, 1e4, 2048   # log-spaced histogram of a map's values (1.2% apart;
                            # grey is 0-1 for integer images, but a float image may pass 1 by any amount)
GRADIENT_BINS = len(GRADIENT_EDGES) + 1     # a pixel's bin is brightness bin x GRADIENT_BINS + edge-strength bin
BINS = (len(INTENSITY_EDGES) + 1) * GRADIENT_BINS


def appearance(b: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Each pixel's appearance bin (int32, 0..BINS-1) from its neighbours' median ``b - d`` (``b`` the
    blurred image, ``d`` its difference from that median): brightness and gradient magnitude, both
    smoothed over APPEARANCE_SIGMA px, binned at INTENSITY_EDGES and GRADIENT_EDGES."""
    ref = np.subtract(b, d, dtype=np.float32)
    gx = cv2.Sobel(ref, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(ref, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    mag = cv2.GaussianBlur(cv2.magnitude(gx, gy), (0, 0), APPEARANCE_SIGMA, borderType=cv2.BORDER_REPLICATE)
    bright = cv2.GaussianBlur(ref, (0, 0), APPEARANCE_SIGMA, borderType=cv2.BORDER_REPLICATE)
    return _bins(bright, mag, np.float32(INTENSITY_EDGES), np.float32(GRADIENT_EDGES))


@numba.njit(parallel=True, cache=True)
def _bins(bright, mag, ie, ge):  # pragma: no cover - compiled
    """The bin of each pixel: how many brightness edges it is above, times the gradient bins, plus
    how many gradient edges it is above; counted an edge at a time along the row, without branches,
    so the loops vectorise (a search per pixel took 4x as long)."""
    h, w = bright.shape
    ng = ge.shape[0] + 1
    out = np.zeros((h, w), np.int32)
    for y in numba.prange(h):
        row = out[y]
        for k in range(ie.shape[0]):
            e = ie[k]
            for x in range(w):
                row[x] += ng * np.int32(bright[y, x] > e)
        for k in range(ge.shape[0]):
            e = ge[k]
            for x in range(w):
                row[x] += np.int32(mag[y, x] > e)
    return out


@numba.njit(cache=True)
def _accumulate(maps, bins, d, hist, top, lo, step):  # pragma: no cover - compiled
    """Adds each map's values where ``d`` is not 0 (a pair of neighbours: where it is 0 the maps are
    0, or what smoothing spilled there) to ``hist`` (map, bin, bucket), and takes every pixel's into
    its maximum per bin, ``top`` (map, bin), as scoring reads every pixel."""
    n, h, w = maps.shape
    nb = hist.shape[2]
    for y in range(h):
        for x in range(w):
            b = bins[y, x]
            paired = d[y, x] != 0
            for i in range(n):
                v = maps[i, y, x]
                if v > top[i, b]:
                    top[i, b] = v
                if paired:
                    k = 0 if v <= 0 else int((np.log(v) - lo) / step) + 1
                    hist[i, b, min(max(k, 0), nb - 1)] += 1


class SpreadStats:
    """What a fit gathers of good images' lattice maps to set each map's spread per bin, by fold
    (image i in fold i % FOLDS): an image that sets the threshold has its maxima read over the
    spread of the other folds' images (:meth:`maxima`), as a fresh image's are read over a spread
    it did not set. Read over a spread of its own pixels, a good image looks quieter than a fresh
    one, and the threshold falls below fresh good images (line 7: 3 false alarms in 20, against 0;
    bench/history.md)."""

    FOLDS = 5

    def __init__(self, maps: tuple[str, ...]):
        self.maps = tuple(maps)
        self.hist = np.zeros((self.FOLDS, len(maps), BINS, VALUE_BUCKETS + 1), np.int64)   # bucket 0: the zeros
        self._lo = np.log(VALUE_LO)
        self._step = (np.log(VALUE_HI) - self._lo) / (VALUE_BUCKETS - 1)
        self._out_of_fold: dict[int, np.ndarray] = {}

    def add(self, i: int, maps: np.ndarray, bins: np.ndarray, d: np.ndarray) -> tuple[int, np.ndarray]:
        """Adds good image ``i``'s maps (:func:`~.lattice.residual`), its :func:`appearance` and its ``d``;
        returns its fold and per-bin maxima (maps, BINS), which :meth:`maxima` reads over the spread
        once every image is in (a fit streams its images once)."""
        top = np.zeros((len(self.maps), BINS), np.float32)
        fold = i % self.FOLDS
        _accumulate(maps, bins, d, self.hist[fold], top, self._lo, self._step)
        return fold, top

    def maxima(self, item: tuple[int, np.ndarray] | None) -> list[float] | None:
        """An image's maxima of each map over the spread of the images in the other folds (:meth:`add`'s
        item; None for an image without a lattice)."""
        if item is None:
            return None
        fold, top = item
        if fold not in self._out_of_fold:
            others = self.hist.sum(axis=0) - self.hist[fold]
            if others.sum() == 0:          # every image in one fold (a fit of one image): its own spread
                others = self.hist[fold]
            self._out_of_fold[fold] = read(self._tables(others), len(self.maps))
        return image_maxima(top, self._out_of_fold[fold])

    def _value(self, bucket: int) -> float:
        """The upper end of a histogram bucket (0: the zeros)."""
        return 0.0 if bucket == 0 else float(np.exp(self._lo + bucket * self._step))

    def _percentile(self, counts: np.ndarray) -> float:
        cum = np.cumsum(counts)
        return self._value(int(np.searchsorted(cum, QUANTILE / 100.0 * cum[-1])))

    def tables(self) -> dict:
        """The spread of every good image: for each map, its QUANTILE-th percentile per appearance bin
        (1 for a map not in SPREAD_MAPS), as a lattice calibration keeps it (:func:`read`)."""
        return self._tables(self.hist.sum(axis=0))

    def _tables(self, hist: np.ndarray) -> dict:
        tables = []
        for i, name in enumerate(self.maps):
            if name not in SPREAD_MAPS or hist[i].sum() == 0:
                tables.append([1.0] * BINS)
                continue
            whole = max(self._percentile(hist[i].sum(0)), VALUE_LO)
            by_edge = hist[i].reshape(-1, GRADIENT_BINS, hist.shape[-1]).sum(axis=0)   # every brightness, per edge strength
            edge = [self._percentile(by_edge[j]) if by_edge[j].sum() >= MIN_PIXELS else whole
                    for j in range(GRADIENT_BINS)]
            row = [max(self._percentile(hist[i, b]) if hist[i, b].sum() >= MIN_PIXELS else edge[b % GRADIENT_BINS],
                       FLOOR * whole) for b in range(BINS)]
            tables.append([float(f"{v:.6g}") for v in row])
        return {"quantile": QUANTILE, "maps": [m for m in self.maps if m in SPREAD_MAPS],
                "intensity_edges": [round(v, 6) for v in INTENSITY_EDGES],
                "gradient_edges": [round(v, 6) for v in GRADIENT_EDGES], "tables": tables}


def read(spread: dict | None, n_maps: int) -> np.ndarray | None:
    """The tables (n_maps, BINS) float32 of a lattice calibration's ``spread`` (None: the maps are read
    as they are). ValueError, naming the field, for one this vi_stream does not read: other bin edges,
    or tables that are not ``n_maps`` rows of BINS finite positive numbers."""
    if spread is None:
        return None
    if not isinstance(spread, dict):
        raise ValueError(f"spread is a {type(spread).__name__}, not a mapping")
    tables = spread.get("tables")
    if not (isinstance(tables, list) and all(isinstance(row, list) for row in tables)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for row in tables for v in row)):
        raise ValueError(f"spread tables are not lists of numbers (one per map, of {BINS} each)")
    for key, edges in (("intensity_edges", INTENSITY_EDGES), ("gradient_edges", GRADIENT_EDGES)):
        got = spread.get(key)
        if not (isinstance(got, list) and len(got) == len(edges)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v - e) < 1e-5
                        for v, e in zip(got, edges))):
            raise ValueError(f"spread {key} are not this vi_stream's bin edges; upgrade it or refit")
    try:
        with np.errstate(over="ignore"):
            t = np.asarray(tables, np.float32)          # checked as scoring reads them: 1e-50 is 0 in float32
    except ValueError:                                  # rows of unequal length
        t = None
    if (t is None or t.shape != (n_maps, BINS) or not np.all(np.isfinite(t))
            or not np.all(t >= np.float32(VALUE_LO))):
        raise ValueError(f"spread tables are not {n_maps} rows of {BINS} finite numbers of at least {VALUE_LO:g} "
                         "(one per map and bin)")
    return t


def image_maxima(top: np.ndarray | None, tables: np.ndarray) -> list[float] | None:
    """An image's maxima of each map over its spread, from :meth:`SpreadStats.add`'s per-bin maxima."""
    return None if top is None else [float(v) for v in (top / tables).max(axis=1)]


@numba.njit(parallel=True, fastmath=True, cache=True)
def _normalised_max(maps, scale, bins):  # pragma: no cover - compiled
    """A row at a time, map by map (as gained_maximum), the scale looked up by the pixel's bin."""
    n, h, w = maps.shape
    out = np.empty((h, w), np.float32)
    for y in numba.prange(h):
        b = bins[y]
        row = out[y]
        s = scale[0]
        m = maps[0, y]
        for x in range(w):
            row[x] = s[b[x]] * m[x]
        for i in range(1, n):
            s = scale[i]
            m = maps[i, y]
            for x in range(w):
                row[x] = max(row[x], s[b[x]] * m[x])
    return out


def normalised_maximum(maps: np.ndarray, gains, tables: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """max over i of gains[i] x maps[i] / tables[i, bin] pixelwise (the fused lattice map, each map
    over its spread at the pixel's appearance bin)."""
    scale = (np.asarray(gains, np.float32)[:, None] / tables).astype(np.float32)
    return _normalised_max(maps, scale, bins)
