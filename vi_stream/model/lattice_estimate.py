"""The lattice of a module image, from the image itself: the first step of :mod:`.lattice`.

:func:`estimate` finds the lattice vector ``a`` (pitch and angle, sub-pixel) from the image
itself: the autocorrelation of a windowed central crop (by FFT), its strongest off-centre peak
(the shortest among those nearly as strong), refined on the peak ``k`` periods away (``a`` =
peak / k, so its error shrinks k times). The peaks are found at half the crop's size, a quarter
of the transforms' work; the correlations that decide and refine (the strongest peak, the first
and the k-th) are then summed at full size over 3x3 shifts around where the half-size peaks put
them (:func:`~.lattice_kernels.correlations`). No lattice (the strongest peak below
``MIN_PEAK``, or fewer than ``MIN_PERIODS`` periods in the image) is a :class:`Lattice` with
``found`` False and a reason: the model then scores with the kNN map alone and says so per image.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from vi_stream.model.lattice_kernels import correlations

CROP = 512            # px: the central crop whose autocorrelation gives the lattice
MIN_PITCH = 12.0      # px: a shorter period is texture or noise, not pads
MIN_PERIODS = 4       # periods the image must hold along the lattice vector
MIN_PEAK = 0.35       # normalised autocorrelation at the lattice vector (1 at zero shift)
HALF_FROM = 256       # px: a crop this large or larger finds its peaks at half its size


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


@functools.lru_cache(maxsize=8)
def _shifts(reach: int, min_pitch: float) -> tuple[np.ndarray, np.ndarray]:
    """Each shift's length up to ``reach`` (zero at the centre), and where a lattice vector may lie:
    one half-plane (a lattice is symmetric), ``min_pitch`` to ``reach`` - 2 px long."""
    yy, xx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    r = np.hypot(yy, xx)
    half = (xx > 0) | ((xx == 0) & (yy > 0))
    return r, half & (r >= min_pitch) & (r <= reach - 2)


def _correlate(x: np.ndarray, reach: int) -> np.ndarray:
    """Autocorrelation of ``x`` at shifts up to ``reach`` (zero-padded: no wrap), zero shift at the
    centre of a (2 reach + 1)^2 array."""
    h, w = x.shape
    ph, pw = cv2.getOptimalDFTSize(h + reach), cv2.getOptimalDFTSize(w + reach)
    pad = np.zeros((ph, pw), np.float32)
    pad[:h, :w] = x
    f = cv2.dft(pad)                     # a real input's packed half spectrum (CCS): half the work
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


_DY, _DX = (a.ravel().astype(np.int64) for a in np.mgrid[-1:2, -1:2])    # a 3x3 neighbourhood of shifts


class _Full:
    """The crop's normalised autocorrelation at full size, summed at the few shifts asked for
    (:func:`~.lattice_kernels.correlations`; the same values the transform gives there)."""

    def __init__(self, crop: np.ndarray, reach: int):
        win, self.env = _window(crop.shape[0], crop.shape[1], reach)
        self.x = np.ascontiguousarray((crop - crop.mean()) * win)
        self.reach = reach
        zero = np.zeros(1, np.int64)
        self.zero = max(float(correlations(self.x, zero, zero)[0]) / float(self.env[reach, reach]), 1e-12)

    def peaks(self, targets) -> list[tuple[float, float, float] | None]:
        """For each shift (y, x) in ``targets``: the autocorrelation's local maximum nearest it,
        sub-pixel (parabolic on its 3x3 neighbourhood), and its value there; None when it lies out
        of reach or more than two steps away."""
        cur = [(round(y), round(x)) for y, x in targets]
        out: list[tuple[float, float, float] | None] = [None] * len(cur)
        todo = list(range(len(cur)))
        for _ in range(3):                   # follow the rise: at most two steps from the guess
            todo = [i for i in todo if abs(cur[i][0]) < self.reach and abs(cur[i][1]) < self.reach]
            if not todo:
                break
            sy = np.concatenate([cur[i][0] + _DY for i in todo])
            sx = np.concatenate([cur[i][1] + _DX for i in todo])
            c = correlations(self.x, sy, sx)
            env = self.env[self.reach + sy, self.reach + sx]
            ac = (c / np.maximum(env, 1e-3 * self.env[self.reach, self.reach]) / self.zero).reshape(len(todo), 3, 3)
            left = []
            for n, i in enumerate(todo):
                iy, ix = np.unravel_index(int(np.argmax(ac[n])), (3, 3))
                if (iy, ix) == (1, 1):
                    py, px = _subpixel(ac[n], 1, 1)
                    out[i] = (cur[i][0] + py - 1, cur[i][1] + px - 1, float(ac[n, 1, 1]))
                else:
                    cur[i] = (cur[i][0] + int(iy) - 1, cur[i][1] + int(ix) - 1)
                    left.append(i)
            todo = left
        return out


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


def _kth(ac: np.ndarray, reach: int, vy: float, vx: float, k: int) -> tuple[float, float] | None:
    """The peak ``k`` periods away along (vy, vx) in an autocorrelation up to ``reach`` (zero shift
    at its centre), sub-pixel, relative to the centre; None when it is not there."""
    ty, tx = round(reach + k * vy), round(reach + k * vx)
    if not (0 < ty < 2 * reach and 0 < tx < 2 * reach):
        return None
    y0, x0 = max(ty - 2, 1), max(tx - 2, 1)
    win = ac[y0:ty + 3, x0:tx + 3]
    wy, wx = np.unravel_index(int(np.argmax(win)), win.shape)
    qy, qx = y0 + int(wy), x0 + int(wx)
    if not (1 <= qy < 2 * reach and 1 <= qx < 2 * reach and ac[qy, qx] > 0):
        return None
    qy, qx = _subpixel(ac, qy, qx)
    return qy - reach, qx - reach


def _estimate(g: np.ndarray) -> Lattice:
    h, w = g.shape
    ch, cw = min(h, CROP), min(w, CROP)
    crop = np.ascontiguousarray(g[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw])
    if float(crop.std()) < 1e-4:
        return Lattice(False, reason="flat image")
    reach = min(ch, cw) // 2             # shifts whose overlap is at least half the crop
    f = 2 if min(ch, cw) >= HALF_FROM else 1
    small = crop if f == 1 else cv2.resize(crop, (cw // f, ch // f), interpolation=cv2.INTER_AREA)
    sreach = reach // f
    ac = _autocorrelation(small, sreach)
    local = cv2.dilate(ac, np.ones((5, 5), np.uint8))
    r, allowed = _shifts(sreach, MIN_PITCH / f)
    cand = (ac >= local) & allowed & (ac > 0)
    ys, xs = np.nonzero(cand)
    if len(ys) == 0:
        return Lattice(False, reason="no autocorrelation peak")
    vals = ac[ys, xs]
    strong = vals >= 0.8 * float(vals.max())
    i = np.flatnonzero(strong)[np.argmin(r[ys[strong], xs[strong]])]   # the shortest strong one
    j = int(np.argmax(vals))                                            # the strongest
    py, px = _subpixel(ac, int(ys[i]), int(xs[i]))
    vy, vx = py - sreach, px - sreach    # a shift, at the estimation size
    full = _Full(crop, reach)
    # at full size: the strongest peak decides (its value at the estimation size where the search
    # there wanders off), the first is the lattice vector's first estimate
    found = full.peaks([(f * (int(ys[j]) - sreach), f * (int(xs[j]) - sreach))]
                       + ([(f * vy, f * vx)] if i != j else []))
    top, first = found[0], found[-1]
    best = top[2] if top is not None else float(vals[j])
    if best < MIN_PEAK:
        return Lattice(False, peak=best, reason=f"weak periodicity (peak {best:.2f} < {MIN_PEAK})")
    peak = first[2] if first is not None else float(vals[i])
    vy, vx = (first[0], first[1]) if first is not None else (f * vy, f * vx)     # full-size px from here
    # refined on the peak k periods away (the same sub-pixel error, divided by k): found at half size
    # (k one less where the k-th lies on the edge of reach), then at full size
    k = int(sreach // max(math.hypot(vx, vy) / f, 1e-6))
    kth = None
    while k >= 2 and kth is None:
        kth = _kth(ac, sreach, vy / f, vx / f, k)
        k -= kth is None
    if kth is not None:
        at_full = full.peaks([(f * kth[0], f * kth[1])])[0]   # kth: the k-th peak itself, at half size
        vy, vx = (at_full[0] / k, at_full[1] / k) if at_full is not None and at_full[2] > 0 else \
            (f * kth[0] / k, f * kth[1] / k)
    pitch = math.hypot(vx, vy)
    span = min(w / max(abs(vx), 1e-6), h / max(abs(vy), 1e-6))   # periods along the vector
    if span < MIN_PERIODS:
        return Lattice(False, vx, vy, peak,
                       reason=f"{span:.1f} periods of {pitch:.1f} px in the image (need {MIN_PERIODS})")
    return Lattice(True, float(vx), float(vy), peak)
