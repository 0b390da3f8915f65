"""Cell-to-cell comparison along the pad lattice: the die-to-die check of wafer and PCB inspection.

Module images repeat: pads and their traces sit on a lattice. A local patch memory (the kNN map)
sees a pad moved by a few pixels, a missing or extra pad or a cut trace as a normal patch; the
lattice sees them, because the same place one period away looks different. Steps:

1. :func:`estimate` finds the lattice vector ``a`` (pitch and angle, sub-pixel) from the image
   itself: the autocorrelation of a windowed central crop (by FFT), its strongest off-centre peak
   (the shortest among those nearly as strong), refined on the peak ``k`` periods away (``a`` =
   peak / k, so its error shrinks k times). No lattice (peak below ``MIN_PEAK``, or fewer than
   ``MIN_PERIODS`` periods in the image) is a :class:`Lattice` with ``found`` False and a reason:
   the model then scores with the kNN map alone and says so per image.
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
   - ``cut``: that tolerant difference band-passed (1 px less 3 px): a cut across a trace keeps
     its contrast, while the substrate's smooth texture, which differs from cell to cell, cancels;
   - ``fine``: ``d`` smoothed with its sign over 1.5 px, then the magnitude (a cut, a pad
     missing or extra: one sign over a few pixels, while noise averages out);
   - ``coarse`` and ``wide``: the same over 12 and 24 px (a faint region over many cells).

   A model file fitted when the lattice score had two maps names none and is scored with the two it was
   calibrated for (``LEGACY_MAPS``: the magnitude of ``d`` smoothed over 3 px, and ``coarse``),
   at its blur: its scores do not change with an upgrade.

The maps are in reflectance units; :class:`~vi_stream.model.anomaly.AnomalyModel` brings each to
the kNN map's units with a gain fitted on the training images (:func:`calibrate`: the median image
maximum of the kNN map on the held-out good images over that of the lattice map on all good
ones) and fuses them by a pixelwise maximum (:func:`fuse`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from vi_stream.model.lattice_kernels import median_residual

CROP = 512            # px: the central crop whose autocorrelation gives the lattice
MIN_PITCH = 12.0      # px: a shorter period is texture or noise, not pads
MIN_PERIODS = 4       # periods the image must hold along the lattice vector
MIN_PEAK = 0.35       # normalised autocorrelation at the lattice vector (1 at zero shift)
NEIGHBOURS = 4        # cells compared on each side (up to 8 in all; fewer at the image's edges)
BLUR = 0.7            # px: sensor noise off before the comparison
WORK_PITCH = 48.0     # px: the maps are computed at a size where the pitch is 48-96 px (lattice_map)
TOLERANCE = 1         # px: how far a neighbour's edge may sit from this cell's before it counts (moved)
MAPS = ("moved", "cut", "fine", "coarse", "wide")   # what a fit computes and calibrates, in order
LEGACY_MAPS = ("fine3", "coarse")              # what a model file without "maps" was calibrated for
LEGACY_BLUR = 1.0
SMOOTHING = {"cut": 1.0, "fine": 1.5, "coarse": 12.0, "wide": 24.0, "fine3": 3.0}   # px, per map


@dataclass(frozen=True)
class Lattice:
    found: bool
    ax: float = 0.0           # the lattice vector, px (x right, y down)
    ay: float = 0.0
    peak: float = 0.0         # its normalised autocorrelation
    reason: str = ""

    @property
    def pitch(self) -> float:
        return math.hypot(self.ax, self.ay)

    @property
    def angle(self) -> float:
        """Degrees of the lattice vector from the x axis, in (-90, 90]."""
        a = math.degrees(math.atan2(self.ay, self.ax))
        return a - 180.0 if a > 90.0 else a + 180.0 if a <= -90.0 else a

    def describe(self) -> dict:
        """What a Result and a stored record say about the image's lattice."""
        if not self.found:
            return {"found": False, "reason": self.reason}
        return {"found": True, "pitch_px": round(self.pitch, 3), "angle_deg": round(self.angle, 3),
                "peak": round(self.peak, 3), "vector_px": [round(self.ax, 3), round(self.ay, 3)]}


def grey(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float32 luminance in [0, 1] (colour: the mean of the channels)."""
    g = image.astype(np.float32)
    if g.ndim == 3:
        g = g.mean(axis=2)
    return (g - np.float32(lo)) * np.float32(1.0 / (hi - lo))


@functools.lru_cache(maxsize=8)
def _window(h: int, w: int, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """The Hann window of an (h, w) crop and its own autocorrelation up to ``reach``."""
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    return win, _correlate(win, reach)


def _correlate(x: np.ndarray, reach: int) -> np.ndarray:
    """Autocorrelation of ``x`` at shifts up to ``reach`` (zero-padded: no wrap), zero shift at the
    centre of a (2 reach + 1)^2 array."""
    h, w = x.shape
    ph, pw = cv2.getOptimalDFTSize(h + reach), cv2.getOptimalDFTSize(w + reach)
    pad = np.zeros((ph, pw), np.float32)
    pad[:h, :w] = x
    f = cv2.dft(pad, flags=cv2.DFT_COMPLEX_OUTPUT)
    ac = cv2.idft(cv2.mulSpectrums(f, f, 0, conjB=True), flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
    ac = np.roll(ac, (reach, reach), axis=(0, 1))
    return np.ascontiguousarray(ac[:2 * reach + 1, :2 * reach + 1])


def _autocorrelation(g: np.ndarray, reach: int) -> np.ndarray:
    """Normalised autocorrelation of a crop up to ``reach``, 1 at zero shift (the centre)."""
    win, env = _window(g.shape[0], g.shape[1], reach)
    # divided by the window's own autocorrelation: its envelope falls with the shift and would pull
    # every peak towards zero (0.3 px per period at a 75 px pitch, measured)
    a = _correlate((g - g.mean()) * win, reach) / np.maximum(env, np.float32(1e-3 * env[reach, reach]))
    return a / max(float(a[reach, reach]), 1e-12)


def _subpixel(ac: np.ndarray, y: int, x: int) -> tuple[float, float]:
    """Parabolic refinement of a peak at (y, x)."""
    def vertex(m, c, p):
        d = m - 2 * c + p
        return 0.0 if d >= 0 else float(np.clip(0.5 * (m - p) / d, -0.5, 0.5))
    return y + vertex(ac[y - 1, x], ac[y, x], ac[y + 1, x]), x + vertex(ac[y, x - 1], ac[y, x], ac[y, x + 1])


def estimate(g: np.ndarray) -> Lattice:
    """The lattice of a grey image (:func:`grey`), or ``found`` False with the reason. An image
    larger than 1.5 CROP is first shrunk by a whole factor, so that the crop holds as many periods
    of the same field of view (a 2048 px image's 512 px crop held 2.5 periods of its 200 px pitch:
    no peak within reach; at half size it holds 5)."""
    f = max(1, min(g.shape) // (3 * CROP // 2))
    if f == 1:
        return _estimate(g)
    small = cv2.resize(g, (g.shape[1] // f, g.shape[0] // f), interpolation=cv2.INTER_AREA)
    lat = _estimate(small)
    if not lat.found:
        return lat
    return Lattice(True, lat.ax * g.shape[1] / small.shape[1], lat.ay * g.shape[0] / small.shape[0], lat.peak)


def _estimate(g: np.ndarray) -> Lattice:
    h, w = g.shape
    ch, cw = min(h, CROP), min(w, CROP)
    crop = np.ascontiguousarray(g[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw])
    if float(crop.std()) < 1e-4:
        return Lattice(False, reason="flat image")
    reach = min(ch, cw) // 2             # shifts whose overlap is at least half the crop
    ac = _autocorrelation(crop, reach)
    cy = cx = reach
    local = cv2.dilate(ac, np.ones((5, 5), np.uint8))
    yy, xx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    r = np.hypot(yy, xx)
    half = (xx > 0) | ((xx == 0) & (yy > 0))
    cand = (ac >= local) & half & (r >= MIN_PITCH) & (r <= reach - 2) & (ac > 0)
    ys, xs = np.nonzero(cand)
    if len(ys) == 0:
        return Lattice(False, reason="no autocorrelation peak")
    vals = ac[ys, xs]
    best = float(vals.max())
    if best < MIN_PEAK:
        return Lattice(False, peak=best, reason=f"weak periodicity (peak {best:.2f} < {MIN_PEAK})")
    strong = vals >= 0.8 * best
    i = np.flatnonzero(strong)[np.argmin(r[ys[strong], xs[strong]])]
    py, px = _subpixel(ac, int(ys[i]), int(xs[i]))
    vy, vx = py - cy, px - cx
    k = int(reach // math.hypot(vx, vy))
    if k >= 2:   # refine on the peak k periods away: the same sub-pixel error, divided by k
        ty, tx = round(cy + k * vy), round(cx + k * vx)
        y0, x0 = max(ty - 2, 1), max(tx - 2, 1)
        win = ac[y0:ty + 3, x0:tx + 3]
        if win.size and 0 < ty < 2 * reach and 0 < tx < 2 * reach:
            wy, wx = np.unravel_index(int(np.argmax(win)), win.shape)
            qy, qx = y0 + int(wy), x0 + int(wx)
            if 1 <= qy < 2 * reach and 1 <= qx < 2 * reach and ac[qy, qx] > 0:
                qy, qx = _subpixel(ac, qy, qx)
                vy, vx = (qy - cy) / k, (qx - cx) / k
    pitch = math.hypot(vx, vy)
    span = min(w / max(abs(vx), 1e-6), h / max(abs(vy), 1e-6))   # periods along the vector
    if span < MIN_PERIODS:
        return Lattice(False, vx, vy, float(ac[ys[i], xs[i]]),
                       reason=f"{span:.1f} periods of {pitch:.1f} px in the image (need {MIN_PERIODS})")
    return Lattice(True, float(vx), float(vy), float(ac[ys[i], xs[i]]))


def residual(g: np.ndarray, lat: Lattice, maps=MAPS, blur: float = BLUR) -> np.ndarray:
    """The lattice maps (len(maps), H, W), float32, reflectance units, named by ``maps`` (the
    module's docstring says what each shows)."""
    b = cv2.GaussianBlur(g, (0, 0), blur) if blur > 0 else np.ascontiguousarray(g, np.float32)
    d = median_residual(np.ascontiguousarray(b, np.float32), np.float32(lat.ax), np.float32(lat.ay), NEIGHBOURS)
    parts = _Parts(b, d)
    return np.stack([_MAP[name](parts) for name in maps])


class _Parts:
    """What the maps are made of, each computed once: the blurred image ``b``, its difference
    ``d`` from the neighbours' median, and ``tolerant``, the signed part of ``b`` outside the range
    that median takes within TOLERANCE px (0 inside it, and where no pair of neighbours is)."""

    def __init__(self, b: np.ndarray, d: np.ndarray):
        self.b, self.d = b, d
        self._tolerant = None

    @property
    def tolerant(self) -> np.ndarray:
        if self._tolerant is None:
            ref = self.b - self.d
            k = np.ones((2 * TOLERANCE + 1, 2 * TOLERANCE + 1), np.uint8)
            # above the range's top, or below its bottom (never both: the dilation is >= the erosion)
            t = cv2.max(cv2.subtract(self.b, cv2.dilate(ref, k)), 0.0)
            t += cv2.min(cv2.subtract(self.b, cv2.erode(ref, k)), 0.0)
            t[self.d == 0] = 0
            self._tolerant = t
        return self._tolerant


def _signed(d: np.ndarray, sigma: float) -> np.ndarray:
    """|d smoothed over sigma px|; from 8 px on at a quarter of the resolution (the same map to
    within interpolation, 1/16 the cost)."""
    if sigma < 8:
        return np.abs(cv2.GaussianBlur(d, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE))
    f = 4
    small = cv2.resize(d, (max(1, d.shape[1] // f), max(1, d.shape[0] // f)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f, borderType=cv2.BORDER_REPLICATE)
    return np.abs(cv2.resize(small, (d.shape[1], d.shape[0]), interpolation=cv2.INTER_LINEAR))


def _cut(p: _Parts) -> np.ndarray:
    """The tolerant difference band-passed (Gaussians of CUT px less 3 CUT px): a thin feature
    (a cut across a trace) keeps its contrast, the substrate's smooth texture, which differs from
    cell to cell, cancels."""
    t = p.tolerant
    return np.abs(cv2.GaussianBlur(t, (0, 0), SMOOTHING["cut"], borderType=cv2.BORDER_REPLICATE)
                  - cv2.GaussianBlur(t, (0, 0), 3 * SMOOTHING["cut"], borderType=cv2.BORDER_REPLICATE))


_MAP = {"moved": lambda p: np.abs(p.tolerant),
        "cut": _cut,
        "fine": lambda p: _signed(p.d, SMOOTHING["fine"]),
        "coarse": lambda p: _signed(p.d, SMOOTHING["coarse"]),
        "wide": lambda p: _signed(p.d, SMOOTHING["wide"]),
        "fine3": lambda p: cv2.GaussianBlur(np.abs(p.d), (0, 0), SMOOTHING["fine3"], borderType=cv2.BORDER_REPLICATE)}


def spec(calibration: dict | None) -> tuple[tuple[str, ...], float]:
    """The maps and the blur a model's lattice calibration was made for (:func:`calibrate`); a
    calibration fitted when the score had two maps names none: LEGACY_MAPS at LEGACY_BLUR."""
    if calibration and "maps" in calibration:
        unknown = [m for m in calibration["maps"] if m not in _MAP]
        if unknown:
            raise ValueError(f"the model's lattice calibration names maps this vi_stream does not know: "
                             f"{', '.join(unknown)}; upgrade vi_stream or refit the model")
        return tuple(calibration["maps"]), float(calibration["blur_px"])
    return LEGACY_MAPS, LEGACY_BLUR


def work_maps(image: np.ndarray, lo: float, hi: float, maps=MAPS, blur: float = BLUR
              ) -> tuple[np.ndarray | None, Lattice]:
    """The lattice maps (:func:`residual`; None when no lattice is found) at the size where the
    pitch is WORK_PITCH-2x WORK_PITCH px, and the lattice. An image whose pitch is longer is first
    shrunk by a whole factor (a 2048 px image of a 768 px one's field: 4x), so the cost follows
    the number of cells, not of pixels, and the smoothing stays the same share of a cell."""
    g = grey(image, lo, hi)
    lat = estimate(g)
    if not lat.found:
        return None, lat
    f = max(1, int(lat.pitch // WORK_PITCH))
    if f == 1:
        return residual(g, lat, maps, blur), lat
    h, w = g.shape
    small = cv2.resize(g, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    shrunk = Lattice(True, lat.ax * small.shape[1] / w, lat.ay * small.shape[0] / h, lat.peak)
    return residual(small, shrunk, maps, blur), lat


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


def calibrate(knn_maxima, lattice_maxima, weight: float) -> dict:
    """The lattice score's calibration from good images: ``gains`` bring each lattice map to the kNN
    map's units, so that the median image maximum of gain x map on good images (``lattice_maxima``:
    :func:`maxima` of every good image, None where no lattice was found) is ``weight`` x that of the
    kNN map on the held-out good ones (``knn_maxima``). Off (``enabled`` False, with the reason)
    when the lattice was found on fewer than half the good images."""
    found = [m for m in lattice_maxima if m is not None]
    n = len(lattice_maxima)
    if n == 0 or 2 * len(found) < n:
        return {"enabled": False, "gains": [], "found": len(found), "images": n,
                "reason": f"lattice found on {len(found)} of {n} good images"}
    lat = np.median(np.asarray(found, np.float64), axis=0)
    knn = float(np.median(knn_maxima))
    return {"enabled": True, "gains": [float(weight * knn / max(v, 1e-6)) for v in lat], "found": len(found),
            "images": n, "lattice_max_median": [round(float(v), 6) for v in lat], "knn_max_median": round(knn, 6),
            "weight": weight, "maps": list(MAPS), "blur_px": BLUR}


def fused_maximum(knn_max: float, lattice_max: list[float] | None, gains) -> float:
    """An image's fused score from its maps' maxima (the fused map is their pixelwise maximum)."""
    return max([knn_max] + ([g * m for g, m in zip(gains, lattice_max)] if lattice_max is not None else []))


def fuse(heat: np.ndarray, image: np.ndarray, lo: float, hi: float, calibration: dict) -> tuple[np.ndarray, dict]:
    """``heat`` (the kNN map) and each lattice map times its gain (``calibration``, the model's
    :func:`calibrate`), pixelwise maximum; the kNN map alone when the image has no lattice.
    Returns the map and what the image's lattice was. The gained maps are combined where they
    were computed and brought to the image's size once."""
    gains = calibration["gains"]
    maps, lat = work_maps(image, lo, hi, *spec(calibration))
    if maps is None:
        return heat, {**lat.describe(), "used": False}
    comb = cv2.multiply(maps[0], float(gains[0]))
    for g, m in zip(gains[1:], maps[1:]):
        cv2.max(comb, cv2.multiply(m, float(g), dst=m), dst=comb)
    if comb.shape != heat.shape:
        comb = cv2.resize(comb, (heat.shape[1], heat.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.maximum(heat, comb), {**lat.describe(), "used": True}
