"""Synthetic ITk-like module images with exactly labelled defects.

A module side under the inspection microscope: rows of bright wire-bond pads
on a flex (polyimide) substrate, traces leaving the pads, a few vias, uneven
illumination, sensor noise and a small random shift and rotation of the whole
layout. Defects are painted into the scene *before* lighting and noise, as
physical defects are, and each comes with its exact ground-truth mask:

- ``scratch``        thin curved line across pads and substrate
- ``dust``           small dark particles with soft edges
- ``stain``          chemical contamination: a smooth irregular discoloured patch
- ``missing_metal``  part of a pad's metallisation missing (substrate shows)
- ``damaged_metal``  a pad edge chipped / eroded irregularly

Beyond these five, :mod:`vi_stream.evaluation.defects` adds thirteen more families and
:mod:`vi_stream.evaluation.structural` three in which the pad lattice itself is wrong (``FAMILIES`` lists
all twenty-one; ``STRUCTURAL`` the four of issue 28 in the tuning split; ``RESERVED`` two that only
the sealed split draws), each randomised in size, shape, place, polarity, width and sharpness; every defect
can be drawn at a chosen contrast, and the module itself can vary (:class:`Variation`).

Everything is deterministic for a seed. Output kinds: ``grey8`` (uint8),
``grey16`` (uint16 with 12 significant bits, as microscope cameras deliver),
``rgb`` (uint8, H x W x 3, RGB order).

    >>> s = module_image(seed=1, defects=("scratch",))
    >>> s.image.shape, s.mask.dtype, s.defects[0]["type"]
    ((768, 768), dtype('uint8'), 'scratch')

Longer than 300 lines: the scene and its five classic defects are drawn by one renderer over
one layout; the ten other families are apart (vi_stream.evaluation.defects).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from vi_stream.evaluation import defects as _families
from vi_stream.evaluation import structural as _structural

DEFECT_TYPES = ("scratch", "dust", "stain", "missing_metal", "damaged_metal")
STRUCTURAL = ("trace_open", "faint_region", "lattice_warp", "misplaced_pad")   # the lattice's own (issue 28)
# Families no tuning or generalisation set draws: only the sealed split's --final run (bench/sealed.py).
RESERVED = ("via_open", "row_shift")
# every family drawn, in a fixed order (sets draw seeds by a family's place in it): new ones at the end
FAMILIES = DEFECT_TYPES + tuple(f for f in (*_families.PAINTERS, *_structural.PAINTERS) if f not in RESERVED) + RESERVED
KINDS = ("grey8", "grey16", "rgb")

# Material colours (RGB, linear 0..1); grey images use their luminance.
_SUBSTRATE = _families.SUBSTRATE
_TRACE = np.array([0.66, 0.47, 0.20])
_PAD = _families.PAD
_VIA = np.array([0.30, 0.22, 0.10])
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class Variation:
    """How a module differs from the classic one: layout, materials, optics."""

    pitch: float = 1.0          # pad pitch, relative
    pad_width: float = 0.62     # pad width as a share of the pitch
    pad_height: float = 88.0    # px at 768
    rows: int = 3
    texture: float = 0.05       # substrate texture strength
    gradient: float = 0.08      # illumination gradient across the image
    vignetting: float = 0.10
    blur: float = 0.0           # focus blur, sigma in px
    noise: float = 0.012        # sensor noise (reflectance units)
    rotation: float = 1.5       # degrees, at most

    @classmethod
    def classic(cls) -> "Variation":
        return cls()

    @classmethod
    def draw(cls, seed: int) -> "Variation":
        """A module of another line: every property drawn at random (its own generator, so the
        seed's scene and defects are drawn as in the classic module)."""
        r = np.random.default_rng([seed, 0x5EED])
        return cls(pitch=float(r.uniform(0.75, 1.3)), pad_width=float(r.uniform(0.5, 0.75)),
                   pad_height=float(r.uniform(60, 110)), rows=int(r.integers(2, 5)),
                   texture=float(r.uniform(0.02, 0.09)), gradient=float(r.uniform(0.02, 0.15)),
                   vignetting=float(r.uniform(0.03, 0.2)), blur=float(r.choice([0.0, 0.0, r.uniform(0.3, 1.2)])),
                   noise=float(r.uniform(0.005, 0.02)), rotation=float(r.uniform(0.5, 3.0)))


@dataclass
class Sample:
    image: np.ndarray
    mask: np.ndarray  # uint8 0/1, union of all defect masks
    defects: list[dict] = field(default_factory=list)  # type, bbox (x, y, w, h), area
    seed: int = 0
    side: str = "left"


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std low-frequency noise (blurred white noise, computed small)."""
    f = max(1, int(sigma // 4))
    small = rng.standard_normal((shape[0] // f + 2, shape[1] // f + 2)).astype(np.float32)
    small = cv2.GaussianBlur(small, (0, 0), max(sigma / f, 0.5))
    out = cv2.resize(small, (shape[1] + 2 * f, shape[0] + 2 * f), interpolation=cv2.INTER_LINEAR)[f:f + shape[0], f:f + shape[1]]
    out -= out.mean()
    return out / (out.std() + 1e-6)


class _Layout:
    """Pad/trace geometry in module coordinates, mapped by a small rigid motion."""

    def __init__(self, rng: np.random.Generator, h: int, w: int, v: "Variation"):
        self.h, self.w = h, w
        scale = min(h, w) / 768.0
        self.pitch = 64.0 * scale * rng.uniform(0.95, 1.05) * v.pitch
        self.pad_w = self.pitch * v.pad_width
        self.pad_h = v.pad_height * scale
        self.rows = [h * 0.27, h * 0.52, h * 0.77] if v.rows == 3 else \
            list(h * (0.15 + 0.7 * (np.arange(v.rows) + 0.5) / v.rows))
        ang = np.deg2rad(rng.uniform(-v.rotation, v.rotation))
        self.rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        self.centre = np.array([w / 2, h / 2])
        self.shift = rng.uniform(-12, 12, size=2) * scale
        self.stagger = rng.uniform(0, self.pitch)

    def map(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64)
        return (pts - self.centre) @ self.rot.T + self.centre + self.shift

    def pads(self) -> list[np.ndarray]:
        out = []
        for r, y in enumerate(self.rows):
            x0 = -self.pitch + (self.stagger if r % 2 else 0.0)
            for x in np.arange(x0, self.w + self.pitch, self.pitch):
                rect = np.array([[x, y - self.pad_h / 2], [x + self.pad_w, y - self.pad_h / 2],
                                 [x + self.pad_w, y + self.pad_h / 2], [x, y + self.pad_h / 2]])
                out.append(self.map(rect))
        return out

    def traces(self) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for r, y in enumerate(self.rows):
            x0 = -self.pitch + (self.stagger if r % 2 else 0.0)
            for x in np.arange(x0, self.w + self.pitch, self.pitch):
                cx = x + self.pad_w / 2
                d = -1 if r % 2 == 0 else 1
                a = np.array([cx, y + d * self.pad_h / 2])
                b = np.array([cx + d * self.pitch * 0.25, y + d * (self.pad_h / 2 + self.pitch * 0.9)])
                out.append((self.map(a[None])[0], self.map(b[None])[0]))
        return out

    def vias(self) -> list[np.ndarray]:
        out = []
        for _a, b in self.traces():
            out.append(b)
        return out


_SHIFT = 4  # sub-pixel bits for cv2 drawing


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * (1 << _SHIFT))), int(round(p[1] * (1 << _SHIFT)))


def _poly(p: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(p) * (1 << _SHIFT)).astype(np.int32)


def _render_scene(rng: np.random.Generator, h: int, w: int, variation: "Variation | None" = None
                  ) -> tuple[np.ndarray, np.ndarray, _Layout]:
    """Reflectance (H, W, 3) float32 and a pad-coverage map (H, W) float32."""
    v = variation or Variation.classic()
    lay = _Layout(rng, h, w, v)
    scale = min(h, w) / 768.0
    sub_tex = _smooth_noise(rng, (h, w), 24 * scale)
    img = np.empty((h, w, 3), np.float32)
    img[:] = _SUBSTRATE.astype(np.float32)
    img *= (1.0 + v.texture * sub_tex)[..., None]
    trace_cov = np.zeros((h, w), np.float32)
    thick = max(2, int(round(9 * scale)))
    for a, b in lay.traces():
        cv2.line(trace_cov, _pt(a), _pt(b), 1.0, thick, cv2.LINE_AA, _SHIFT)
    for v in lay.vias():
        cv2.circle(trace_cov, _pt(v), int(round(9 * scale * (1 << _SHIFT))), 1.0, -1, cv2.LINE_AA, _SHIFT)
    pad_cov = np.zeros((h, w), np.float32)
    for p in lay.pads():
        cv2.fillConvexPoly(pad_cov, _poly(p), 1.0, cv2.LINE_AA, _SHIFT)
    via_cov = np.zeros((h, w), np.float32)
    for v in lay.vias():
        cv2.circle(via_cov, _pt(v), int(round(4 * scale * (1 << _SHIFT))), 1.0, -1, cv2.LINE_AA, _SHIFT)
    img = img * (1 - trace_cov[..., None]) + _TRACE.astype(np.float32) * trace_cov[..., None]
    grain = 1.0 + 0.04 * rng.standard_normal((h, w)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), 1.0)
    pad_col = _PAD.astype(np.float32)[None, None, :] * grain[..., None]
    img = img * (1 - pad_cov[..., None]) + pad_col * pad_cov[..., None]
    img = img * (1 - via_cov[..., None]) + _VIA.astype(np.float32) * via_cov[..., None]
    return img, pad_cov, lay


def _blob(rng: np.random.Generator, h: int, w: int, cx: float, cy: float, r: float, rough: float) -> np.ndarray:
    """Soft irregular blob in [0, 1] around (cx, cy) of radius ~r."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = np.arctan2(yy - cy, xx - cx)
    k = rng.integers(3, 7)
    phase = rng.uniform(0, 2 * np.pi, size=k)
    amp = rng.uniform(0, rough, size=k) / np.arange(1, k + 1)
    rr = r * (1 + sum(a * np.sin((i + 1) * ang + p) for i, (a, p) in enumerate(zip(amp, phase))))
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    return np.clip((rr - dist) / max(1.0, 0.15 * r) + 0.5, 0, 1)


def _local(h: int, w: int, cx: float, cy: float, rad: float) -> tuple[slice, slice]:
    y0, y1 = max(0, int(cy - rad)), min(h, int(cy + rad) + 1)
    x0, x1 = max(0, int(cx - rad)), min(w, int(cx + rad) + 1)
    return slice(y0, y1), slice(x0, x1)


def _add_defect(kind: str, rng: np.random.Generator, img: np.ndarray, pad_cov: np.ndarray,
                lay: _Layout, strength: float = 1.0) -> np.ndarray:
    """Paint one defect into ``img`` in place; return its boolean mask. ``strength`` is read by the
    structural painters only (a displacement's size; the others are blended by the caller)."""
    h, w = pad_cov.shape
    scale = min(h, w) / 768.0
    mask = np.zeros((h, w), np.uint8)
    margin = int(60 * scale)
    if kind == "scratch":
        p0 = rng.uniform([margin, margin], [w - margin, h - margin])
        length = rng.uniform(120, 260) * scale
        a = rng.uniform(0, np.pi)
        d = np.array([np.cos(a), np.sin(a)])
        n = np.array([-d[1], d[0]])
        bend = rng.uniform(-0.15, 0.15) * length
        t = np.linspace(0, 1, 24)[:, None]
        pts = p0 + t * length * d + (4 * t * (1 - t)) * bend * n
        pts = np.clip(pts, 2, [w - 3, h - 3])
        thick = max(2, int(round(rng.uniform(3, 5) * scale)))
        cov = np.zeros((h, w), np.float32)
        cv2.polylines(cov, [_poly(pts)], False, 1.0, thick, cv2.LINE_AA, _SHIFT)
        # Scratches remove metal on pads (dark) and scuff the substrate (bright).
        target = np.where(pad_cov[..., None] > 0.5, 0.25, 0.85).astype(np.float32)
        img[:] = img * (1 - cov[..., None]) + target * cov[..., None]
        mask[cov > 0.5] = 1
    elif kind == "dust":
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform([margin, margin], [w - margin, h - margin])
            r = rng.uniform(7, 16) * scale
            ys, xs = _local(h, w, cx, cy, 2 * r + 2)
            b = _blob(rng, ys.stop - ys.start, xs.stop - xs.start, cx - xs.start, cy - ys.start, r, 0.35)
            col = np.array([0.10, 0.09, 0.08], np.float32) * rng.uniform(0.6, 1.4)
            img[ys, xs] = img[ys, xs] * (1 - b[..., None]) + col * b[..., None]
            mask[ys, xs][b > 0.5] = 1
    elif kind == "stain":
        cx, cy = rng.uniform([margin, margin], [w - margin, h - margin])
        r = rng.uniform(30, 55) * scale
        ys, xs = _local(h, w, cx, cy, 2 * r + 2)
        b = _blob(rng, ys.stop - ys.start, xs.stop - xs.start, cx - xs.start, cy - ys.start, r, 0.5)
        b = cv2.GaussianBlur(b, (0, 0), max(1.0, 0.08 * r))
        tint = np.array([0.55, 0.62, 0.85], np.float32) * rng.uniform(0.85, 1.0)  # darkening, bluish residue
        img[ys, xs] = img[ys, xs] * (1 - b[..., None] * (1 - tint))
        mask[ys, xs][b > 0.5] = 1
    elif kind in ("missing_metal", "damaged_metal"):
        pads = [p for p in lay.pads() if p[:, 0].min() > margin and p[:, 0].max() < w - margin
                and p[:, 1].min() > margin and p[:, 1].max() < h - margin]
        pad = pads[int(rng.integers(len(pads)))]
        if kind == "missing_metal":
            # A band of the pad with no metallisation.
            f0 = rng.uniform(0.1, 0.45)
            f1 = f0 + rng.uniform(0.3, 0.5)
            u = pad[3] - pad[0]
            region = np.array([pad[0] + f0 * u, pad[1] + f0 * u, pad[1] + min(f1, 1.0) * u, pad[0] + min(f1, 1.0) * u])
            cov = np.zeros((h, w), np.float32)
            cv2.fillConvexPoly(cov, _poly(region), 1.0, cv2.LINE_AA, _SHIFT)
        else:
            # Irregular bite taken out of a pad's edge.
            edge = int(rng.integers(4))
            a, b = pad[edge], pad[(edge + 1) % 4]
            p = a + rng.uniform(0.25, 0.75) * (b - a)
            r = rng.uniform(14, 22) * scale
            ys, xs = _local(h, w, p[0], p[1], 2 * r + 2)
            cov = np.zeros((h, w), np.float32)
            cov[ys, xs] = _blob(rng, ys.stop - ys.start, xs.stop - xs.start, p[0] - xs.start, p[1] - ys.start, r, 0.6)
        cov = np.minimum(cov, pad_cov)
        exposed = (_SUBSTRATE * 0.8).astype(np.float32)
        img[:] = img * (1 - cov[..., None]) + exposed * cov[..., None]
        mask[cov > 0.5] = 1
    elif kind in _families.PAINTERS:
        mask = _families.PAINTERS[kind](rng, img, pad_cov, lay, scale, margin)
    elif kind in _structural.PAINTERS:
        mask = _structural.PAINTERS[kind](rng, img, pad_cov, lay, scale, margin, strength)
    else:
        raise ValueError(f"unknown defect type {kind!r}; known: {', '.join(FAMILIES)}")
    return mask


def _to_kind(img: np.ndarray, kind: str) -> np.ndarray:
    if kind == "rgb":
        return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    grey = img @ _LUMA.astype(np.float32)
    if kind == "grey8":
        return np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if kind == "grey16":
        return np.clip(grey * 4095.0 + 0.5, 0, 4095).astype(np.uint16)
    raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")


def module_image(shape: tuple[int, int] = (768, 768), seed: int = 0, defects: Sequence[str] = (),
                 kind: str = "grey8", side: str | None = None, contrast: float | Sequence[float] | None = None,
                 variation: Variation | None = None) -> Sample:
    """One module-side image; ``defects`` lists defect families to paint (repeats allowed).

    ``contrast`` (one value, or one per defect, in (0, 1]) blends each defect into the scene at
    that strength: the same seed and defects at lower contrast draw the same defect, fainter,
    with the same mask (a contrast ladder). ``variation`` draws the module itself differently
    (pitch, pad size, rows, texture, lighting, focus, noise, rotation); None keeps the classic
    module, whose images are unchanged for a seed."""
    h, w = int(shape[0]), int(shape[1])
    if h < 128 or w < 128:
        raise ValueError(f"synthetic modules are at least 128x128, got {h}x{w}")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    strengths = [contrast] * len(defects) if contrast is None or np.isscalar(contrast) else list(contrast)
    if len(strengths) != len(defects) or any(c is not None and not 0 < c <= 1 for c in strengths):
        raise ValueError(f"contrast must be in (0, 1], one value or one per defect, got {contrast!r}")
    rng = np.random.default_rng(seed)
    img, pad_cov, lay = _render_scene(rng, h, w, variation)
    mask = np.zeros((h, w), np.uint8)
    info = []
    for d, c in zip(defects, strengths):
        geometric = d in _structural.PAINTERS     # takes its contrast as a strength, not a blend
        before = None if c is None or geometric else img.copy()
        m = _add_defect(d, rng, img, pad_cov, lay, 1.0 if c is None else float(c))
        if before is not None:
            img[:] = before + np.float32(c) * (img - before)
        ys, xs = np.nonzero(m)
        if len(ys) == 0:
            continue
        info.append({"type": d, "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                         int(ys.max() - ys.min() + 1)], "area": int(len(ys)),
                     "contrast": 1.0 if c is None else float(c)})
        mask |= m
    # Lighting: a gentle gradient and vignetting, then shot+read noise.
    v = variation or Variation.classic()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = rng.uniform(-v.gradient, v.gradient, size=2)
    light = 1.0 + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    light -= v.vignetting * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5)
    light *= rng.uniform(0.95, 1.05)
    img *= light[..., None]
    if v.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), v.blur)
    img += rng.normal(0, v.noise, size=img.shape).astype(np.float32)
    if side is None:
        side = "left" if seed % 2 == 0 else "right"
    return Sample(_to_kind(img, kind), mask, info, seed, side)


def dataset(n_good: int, n_per_defect: int, shape: tuple[int, int] = (768, 768), kind: str = "grey8",
            seed: int = 0, types: Sequence[str] = DEFECT_TYPES, variation: Variation | None = None,
            contrast: float | None = None):
    """Yield (name, Sample): ``n_good`` good images, then ``n_per_defect`` of each type (any of
    FAMILIES), on the classic module or on ``variation``'s line, defects at ``contrast``."""
    unknown = [t for t in types if t not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown defect families {unknown}; known: {', '.join(FAMILIES)}")
    if contrast is not None and not 0 < contrast <= 1:
        raise ValueError(f"contrast must be in (0, 1], got {contrast}")
    for i in range(n_good):
        yield f"good_{i:03d}", module_image(shape, seed * 100_003 + i, (), kind, variation=variation)
    for t in types:
        for i in range(n_per_defect):
            s = seed * 100_003 + 50_000 + FAMILIES.index(t) * 1000 + i
            yield f"{t}_{i:03d}", module_image(shape, s, (t,), kind, contrast=contrast, variation=variation)
