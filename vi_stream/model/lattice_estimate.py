"""The lattice of a module image, from the image itself: the first step of :mod:`.lattice`.

:func:`estimate` finds the lattice vector ``a`` (pitch and angle, sub-pixel) from the image
itself: the autocorrelation of a windowed central crop (by FFT), its strongest off-centre peak
(the shortest among those nearly as strong), refined on the peak ``k`` periods away (``a`` =
peak / k, so its error shrinks k times). The peaks are found at half the crop's size, a quarter
of the transforms' work; the correlations that decide and refine (at the first peak and at the
k-th) are then summed at full size over 3x3 shifts around where the half-size peaks put them
(:func:`~.lattice_kernels.correlations`). No lattice (peak below ``MIN_PEAK``, or fewer than
``MIN_PERIODS`` periods in the image) is a :class:`Lattice` with ``found`` False and a reason:
the model then scores with the kNN map alone and says so per image.
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


class _Full:
    """The crop's normalised autocorrelation at full size, summed at the few shifts asked for
    (:func:`~.lattice_kernels.correlations`; the same values the transform gives there)."""

    def __init__(self, crop: np.ndarray, reach: int):
        win, self.env = _window(crop.shape[0], crop.shape[1], reach)
        self.x = np.ascontiguousarray((crop - crop.mean()) * win)
        self.reach = reach
        self.zero = float(correlations(self.x, np.zeros(1, np.int64), np.zeros(1, np.int64))[0]) / \
            float(self.env[reach, reach])

    def peak(self, y: float, x: float) -> tuple[float, float, float] | None:
        """The autocorrelation's local maximum nearest the shift (y, x), sub-pixel (parabolic on
        its 3x3 neighbourhood), and its value there; None when it lies out of reach."""
        cy, cx = round(y), round(x)
        for _ in range(3):                   # follow the rise: at most two steps from the guess
            if not (abs(cy) < self.reach and abs(cx) < self.reach):
                return None
            dy, dx = np.mgrid[-1:2, -1:2]
            sy, sx = (cy + dy).ravel().astype(np.int64), (cx + dx).ravel().astype(np.int64)
            c = correlations(self.x, sy, sx).reshape(3, 3)
            env = self.env[self.reach + sy, self.reach + sx].reshape(3, 3)
            ac = (c / np.maximum(env, 1e-3 * self.env[self.reach, self.reach]) / max(self.zero, 1e-12))
            iy, ix = np.unravel_index(int(np.argmax(ac)), ac.shape)
            if (iy, ix) == (1, 1):
                py, px = _subpixel(ac, 1, 1)
                return cy + py - 1, cx + px - 1, float(ac[1, 1])
            cy, cx = cy + int(iy) - 1, cx + int(ix) - 1
        return None


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
    f = 2 if min(ch, cw) >= HALF_FROM else 1
    small = crop if f == 1 else cv2.resize(crop, (cw // f, ch // f), interpolation=cv2.INTER_AREA)
    sreach = reach // f
    ac = _autocorrelation(small, sreach)
    c = sreach
    local = cv2.dilate(ac, np.ones((5, 5), np.uint8))
    r, allowed = _shifts(sreach, MIN_PITCH / f)
    cand = (ac >= local) & allowed & (ac > 0)
    ys, xs = np.nonzero(cand)
    if len(ys) == 0:
        return Lattice(False, reason="no autocorrelation peak")
    vals = ac[ys, xs]
    strong = vals >= 0.8 * float(vals.max())
    i = np.flatnonzero(strong)[np.argmin(r[ys[strong], xs[strong]])]
    py, px = _subpixel(ac, int(ys[i]), int(xs[i]))
    vy, vx = py - c, px - c
    k = int(sreach // math.hypot(vx, vy))
    if k >= 2:   # the peak k periods away: the same sub-pixel error, divided by k
        ty, tx = round(c + k * vy), round(c + k * vx)
        y0, x0 = max(ty - 2, 1), max(tx - 2, 1)
        win = ac[y0:ty + 3, x0:tx + 3]
        if win.size and 0 < ty < 2 * sreach and 0 < tx < 2 * sreach:
            wy, wx = np.unravel_index(int(np.argmax(win)), win.shape)
            qy, qx = y0 + int(wy), x0 + int(wx)
            if 1 <= qy < 2 * sreach and 1 <= qx < 2 * sreach and ac[qy, qx] > 0:
                qy, qx = _subpixel(ac, qy, qx)
                vy, vx = (qy - c) / k, (qx - c) / k
            else:
                k = 1
        else:
            k = 1
    else:
        k = 1
    # at full size, where the half-size peaks put them: the first peak decides (MIN_PEAK), the k-th refines
    full = _Full(crop, reach)
    first = full.peak(f * vy, f * vx)
    if first is None:
        return Lattice(False, reason="no autocorrelation peak at full size")
    if first[2] < MIN_PEAK:
        return Lattice(False, peak=first[2], reason=f"weak periodicity (peak {first[2]:.2f} < {MIN_PEAK})")
    kth = full.peak(k * f * vy, k * f * vx) if k >= 2 else None
    peak = first[2]
    vy, vx = (kth[0] / k, kth[1] / k) if kth is not None and kth[2] > 0 else first[:2]
    pitch = math.hypot(vx, vy)
    span = min(w / max(abs(vx), 1e-6), h / max(abs(vy), 1e-6))   # periods along the vector
    if span < MIN_PERIODS:
        return Lattice(False, vx, vy, peak,
                       reason=f"{span:.1f} periods of {pitch:.1f} px in the image (need {MIN_PERIODS})")
    return Lattice(True, float(vx), float(vy), peak)
