"""Cell-to-cell comparison along the pad lattice: the die-to-die check of wafer and PCB inspection.

Module images repeat: pads and their traces sit on a lattice. A local patch memory (the kNN map)
sees a pad moved by a few pixels, a missing or extra pad or a cut trace as a normal patch; the
lattice sees them, because the same place one period away looks different. Steps:

1. :func:`~.lattice_estimate.estimate` finds the lattice vector ``a`` (pitch and angle,
   sub-pixel) from the image itself, or says why there is none (:mod:`.lattice_estimate`): the
   model then scores with the kNN map alone and says so per image.
2. :func:`residual` compares each pixel of the lightly blurred image with the median of the same
   place in the ``NEIGHBOURS`` cells on either side along ``a`` (bilinear, numba), taken in pairs
   (+j, -j) while both lie in the image: one odd cell among them does not move a median, and
   symmetric pairs cancel a linear illumination gradient. Within one period of the image's edge
   along ``a`` there is no pair, and the maps are 0 there (the kNN map alone judges that band).
   Five maps (``MAPS``) come of the difference ``d`` and of that median ``ref``:

   - ``moved``: how far the pixel lies outside the range its neighbours' median takes within
     ``TOLERANCE`` px (its grey dilation and erosion). Pads and traces sit up to a pixel off
     their lattice place from cell to cell; a tolerant comparison forgives that and still sees
     a pad or a warp moved by two pixels or more (the comparison of wafer inspection);
   - ``thin``: that tolerant difference band-passed (0.7 px less 2.1 px): a cut across a trace
     keeps its contrast, while the substrate's smooth texture, which differs from cell to cell,
     cancels (``cut``, the same at 1 px less 3 px, is what models fitted before it compute: the
     narrower band found faint cuts better on every tuning line, bench/history.md);
   - ``fine``: ``d`` smoothed with its sign over 1.5 px, then the magnitude (a cut, a pad
     missing or extra: one sign over a few pixels, while noise averages out);
   - ``coarse`` and ``wide``: the same over 12 and 24 px (a faint region over many cells).

   A model file fitted when the lattice score had two maps names none and is scored with the two it was
   calibrated for (``LEGACY_MAPS``: the magnitude of ``d`` smoothed over 3 px, and ``coarse``),
   at its blur: its scores do not change with an upgrade.

The maps are in reflectance units. With ``lattice_spread`` on (the default), a map but ``moved``
is first read over its spread on the good images at places that look alike
(:mod:`.lattice_spread`). :class:`~vi_stream.model.anomaly.AnomalyModel` brings each to the kNN
map's units with a gain fitted on the training images (:func:`calibrate`: the median image maximum
of the kNN map on the good images that set the threshold over the GOOD_QUANTILE-th percentile of that of
the lattice map on all good ones) and fuses them by a pixelwise maximum (:func:`fuse`), after spreading
the gained lattice maps over REACH px (:func:`reached`: their maximum in a 3 x 3 window): a thin cut or
a moved edge lights a sliver a pixel or two wide, narrower than the defect, and the mask at the
threshold covered a tenth of a cut's area. The spread keeps each map's maximum (bench/history.md: the
window was chosen by the masks' overlap with the truth on the tuning lines).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from vi_stream.model import lattice_spread
from vi_stream.model.lattice_estimate import Lattice, estimate, grey
from vi_stream.model.lattice_kernels import gained_maximum, median_residual, tolerant_residual

NEIGHBOURS = 4        # cells compared on each side (up to 8 in all; fewer at the image's edges)
BLUR = 0.7            # px: sensor noise off before the comparison
WORK_PITCH = 48.0     # px: the maps are computed at a size where the pitch is 48-96 px (lattice_map)
TOLERANCE = 1         # px: how far a neighbour's edge may sit from this cell's before it counts (moved)
MAPS = ("moved", "thin", "fine", "coarse", "wide")   # what a fit computes and calibrates, in order
LEGACY_MAPS = ("fine3", "coarse")              # what a model file without "maps" was calibrated for
LEGACY_BLUR = 1.0
MAX_BLUR = 8.0        # px: the most blur a calibration may name (a fit writes BLUR; a Gaussian of 1e5 px
                      # takes a minute an image, one of Infinity px asks OpenCV for 8 GiB)
REACH = 1             # px at the maps' working size: each pixel of the gained lattice maps takes their largest
                      # value within this many px (a grey dilation) before the fusion (fuse)
MAX_REACH = 8         # px: the most reach a calibration may name
GOOD_QUANTILE = 90    # percentile of the good images' map maxima matched to the kNN map's median (calibrate)
SMOOTHING = {"thin": 0.7, "cut": 1.0, "fine": 1.5, "coarse": 12.0, "wide": 24.0, "fine3": 3.0}   # px, per map


def residual(g: np.ndarray, lat: Lattice, maps=MAPS, blur: float = BLUR) -> np.ndarray:
    """The lattice maps (len(maps), H, W), float32, reflectance units, named by ``maps`` (the
    module's docstring says what each shows)."""
    return _residual_parts(g, lat, maps, blur)[0]


def _residual_parts(g: np.ndarray, lat: Lattice, maps, blur: float) -> tuple[np.ndarray, "_Parts"]:
    """:func:`residual`'s maps and what they were made of (the appearance of their places is read from it)."""
    b = cv2.GaussianBlur(g, (0, 0), blur) if blur > 0 else np.ascontiguousarray(g, np.float32)
    d = median_residual(np.ascontiguousarray(b, np.float32), np.float32(lat.ax), np.float32(lat.ay), NEIGHBOURS)
    parts = _Parts(b, d)
    out = np.empty((len(maps),) + d.shape, np.float32)
    for i, name in enumerate(maps):          # each map written in its place (a stack would copy them all)
        _MAP[name](parts, out[i])
    return out, parts


class _Parts:
    """What the maps are made of, each computed once: the blurred image ``b``, its difference
    ``d`` from the neighbours' median, and ``tolerant``, the signed part of ``b`` outside the range
    that median takes within TOLERANCE px (0 inside it, and where no pair of neighbours is)."""

    def __init__(self, b: np.ndarray, d: np.ndarray):
        self.b, self.d = b, d

    @functools.cached_property
    def tolerant(self) -> np.ndarray:
        return tolerant_residual(self.b, self.d, TOLERANCE)


def _signed(d: np.ndarray, sigma: float, out: np.ndarray) -> None:
    """|d smoothed over sigma px| into ``out``; from 8 px on at a quarter of the resolution (the
    same map to within interpolation, 1/16 the cost)."""
    if sigma < 8:
        cv2.GaussianBlur(d, (0, 0), sigma, dst=out, borderType=cv2.BORDER_REPLICATE)
    else:
        f = 4
        small = cv2.resize(d, (max(1, d.shape[1] // f), max(1, d.shape[0] // f)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / f, borderType=cv2.BORDER_REPLICATE)
        cv2.resize(small, (d.shape[1], d.shape[0]), dst=out, interpolation=cv2.INTER_LINEAR)
    np.abs(out, out=out)


def _band(p: _Parts, out: np.ndarray, name: str) -> None:
    """The tolerant difference band-passed (Gaussians of SMOOTHING[name] px less 3 times that) into
    ``out``: a thin feature (a cut across a trace) keeps its contrast, the substrate's smooth
    texture, which differs from cell to cell, cancels."""
    t, sigma = p.tolerant, SMOOTHING[name]
    cv2.GaussianBlur(t, (0, 0), sigma, dst=out, borderType=cv2.BORDER_REPLICATE)
    cv2.subtract(out, cv2.GaussianBlur(t, (0, 0), 3 * sigma, borderType=cv2.BORDER_REPLICATE), dst=out)
    np.abs(out, out=out)


# each map of the parts, written into the array given
_MAP = {"moved": lambda p, out: np.abs(p.tolerant, out=out),
        "thin": lambda p, out: _band(p, out, "thin"),
        "cut": lambda p, out: _band(p, out, "cut"),
        "fine": lambda p, out: _signed(p.d, SMOOTHING["fine"], out),
        "coarse": lambda p, out: _signed(p.d, SMOOTHING["coarse"], out),
        "wide": lambda p, out: _signed(p.d, SMOOTHING["wide"], out),
        "fine3": lambda p, out: cv2.GaussianBlur(np.abs(p.d), (0, 0), SMOOTHING["fine3"], dst=out,
                                                 borderType=cv2.BORDER_REPLICATE)}


def spec(calibration: dict | None) -> tuple[tuple[str, ...], float, int]:
    """The maps, the blur and the reach a model's lattice calibration was made for (:func:`calibrate`);
    a calibration fitted when the score had two maps names none: LEGACY_MAPS at LEGACY_BLUR, and one
    fitted before the reach names none: 0 (the maps fused as they are, so its scores do not move).
    ValueError, naming the field, for maps that are not a non-empty list of map names this
    vi_stream computes, a ``blur_px`` that is not a number of pixels from 0 to MAX_BLUR, or a
    ``reach_px`` that is not a whole number of pixels from 0 to MAX_REACH."""
    if not calibration or "maps" not in calibration:
        return LEGACY_MAPS, LEGACY_BLUR, 0
    maps, blur = calibration["maps"], calibration.get("blur_px")
    if not (isinstance(maps, list) and maps and all(isinstance(m, str) for m in maps)):
        raise ValueError(f"maps {_short(repr(maps))} is not a list of map names")
    unknown = [m for m in maps if m not in _MAP]
    if unknown:
        raise ValueError(f"maps {_short(', '.join(unknown))}: not maps this vi_stream computes; "
                         "upgrade vi_stream or refit the model")
    if isinstance(blur, bool) or not isinstance(blur, (int, float)) or not 0 <= blur <= MAX_BLUR:
        raise ValueError(f"blur_px {_short(repr(blur))} is not a number of pixels from 0 to {MAX_BLUR:g}")
    reach = calibration.get("reach_px", 0)
    if isinstance(reach, bool) or not isinstance(reach, int) or not 0 <= reach <= MAX_REACH:
        raise ValueError(f"reach_px {_short(repr(reach))} is not a whole number of pixels from 0 to {MAX_REACH}")
    return tuple(maps), float(blur), reach


def _short(text: str) -> str:
    """``text`` cut to 80 characters for a one-line message (a file's list may be long)."""
    return text if len(text) <= 80 else text[:77] + "..."


def work_maps(image: np.ndarray, lo: float, hi: float, maps=MAPS, blur: float = BLUR
              ) -> tuple[np.ndarray | None, Lattice]:
    """The lattice maps (:func:`residual`; None when no lattice is found) at the size where the
    pitch is WORK_PITCH-2x WORK_PITCH px, and the lattice. An image whose pitch is longer is first
    shrunk by a whole factor (a 2048 px image of a 768 px one's field: 4x), so the cost follows
    the number of cells, not of pixels, and the smoothing stays the same share of a cell."""
    out, _parts, lat = work_parts(image, lo, hi, maps, blur)
    return out, lat


def work_parts(image: np.ndarray, lo: float, hi: float, maps=MAPS, blur: float = BLUR
               ) -> tuple[np.ndarray | None, "_Parts | None", Lattice]:
    """:func:`work_maps`, with what the maps were made of (its ``b`` and ``d``: None without a lattice)."""
    g = grey(image, lo, hi)
    lat = estimate(g)
    if not lat.found:
        return None, None, lat
    f = max(1, int(lat.pitch // WORK_PITCH))
    if f == 1:
        return (*_residual_parts(g, lat, maps, blur), lat)
    h, w = g.shape
    small = cv2.resize(g, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    shrunk = Lattice(True, lat.ax * small.shape[1] / w, lat.ay * small.shape[0] / h, lat.peak)
    return (*_residual_parts(small, shrunk, maps, blur), lat)


def lattice_map(image: np.ndarray, lo: float, hi: float, maps=MAPS, blur: float = BLUR
                ) -> tuple[np.ndarray | None, Lattice]:
    """The lattice maps of an image at its size (None when no lattice is found), and the lattice."""
    out, lat = work_maps(image, lo, hi, maps, blur)
    if out is None or out.shape[1:] == image.shape[:2]:
        return out, lat
    h, w = image.shape[:2]
    return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in out]), lat


def maxima(maps: np.ndarray | None) -> list[float] | None:
    """Each lattice map's maximum (what the calibration needs of a good image)."""
    return None if maps is None else [float(m.max()) for m in maps]


def calibrate(knn_maxima, lattice_maxima, weight: float, spread: dict | None = None) -> dict:
    """The lattice score's calibration from good images: ``gains`` bring each lattice map to the kNN
    map's units, so that the GOOD_QUANTILE-th percentile of the image maxima of gain x map on good
    images (``lattice_maxima``: :func:`maxima` of every good image, or with the spread its maps'
    maxima over the other folds' spread, :meth:`.lattice_spread.SpreadStats.maxima`; None where no
    lattice was found)
    is ``weight`` x the median image maximum of the kNN map on the good ones the bank did not see
    (``knn_maxima``). The percentile rather than the median: the coarse maps' good maxima have a
    long tail (substrate texture that differs from cell to cell), which the median let through as
    false alarms. Off (``enabled`` False, with the reason) when the lattice was found on fewer than
    half the good images. ``spread`` (:meth:`.lattice_spread.SpreadStats.tables`), when the maxima are
    of the maps over their spread, is kept in the calibration for scoring to read them so."""
    found = [m for m in lattice_maxima if m is not None]
    n = len(lattice_maxima)
    if n == 0 or 2 * len(found) < n:
        return {"enabled": False, "gains": [], "found": len(found), "images": n,
                "reason": f"lattice found on {len(found)} of {n} good images"}
    lat = np.percentile(np.asarray(found, np.float64), GOOD_QUANTILE, axis=0)
    knn = float(np.median(knn_maxima))
    return {"enabled": True, "gains": [float(weight * knn / max(v, 1e-6)) for v in lat], "found": len(found),
            "images": n, "lattice_max_quantile": [round(float(v), 6) for v in lat], "quantile": GOOD_QUANTILE,
            "knn_max_median": round(knn, 6), "weight": weight, "maps": list(MAPS), "blur_px": BLUR, "reach_px": REACH,
            **({"spread": spread} if spread is not None else {})}


def fused_maximum(knn_max: float, lattice_max: list[float] | None, gains) -> float:
    """An image's fused score from its maps' maxima (the fused map is their pixelwise maximum)."""
    return max([knn_max] + ([g * m for g, m in zip(gains, lattice_max)] if lattice_max is not None else []))


def fuse(heat: np.ndarray, image: np.ndarray, lo: float, hi: float, gains, maps, blur: float, *, reach: int = 0,
         spread: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """``heat`` (the kNN map) and each lattice map (``maps`` at ``blur``, as :func:`spec` reads a
    calibration) times its gain (the calibration's ``gains``), over its spread at the pixel's
    appearance when the calibration has ``spread`` tables (:func:`.lattice_spread.read`), their
    pixelwise maximum spread over ``reach`` px (:func:`reached`), pixelwise maximum; the kNN map
    alone when the image has no lattice. Returns the map and what the image's lattice was. The
    gained maps are combined where they were computed and brought to the image's size once."""
    maps, parts, lat = work_parts(image, lo, hi, maps, blur)
    if maps is None:
        return heat, {**lat.describe(), "used": False}
    if spread is None:
        comb = gained_maximum(maps, np.asarray(gains, np.float32))
    else:
        comb = lattice_spread.normalised_maximum(maps, gains, spread, lattice_spread.appearance(parts.b, parts.d))
    comb = reached(comb, reach)
    if comb.shape != heat.shape:
        comb = cv2.resize(comb, (heat.shape[1], heat.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.maximum(heat, comb, out=comb), {**lat.describe(), "used": True}


def reached(comb: np.ndarray, reach: int) -> np.ndarray:
    """Each pixel of ``comb`` as the largest value within ``reach`` px of it (a square window; a grey
    dilation, so the map's maximum stays what it was); ``comb`` itself at reach 0."""
    if reach <= 0:
        return comb
    return cv2.dilate(comb, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8), borderType=cv2.BORDER_REPLICATE)
