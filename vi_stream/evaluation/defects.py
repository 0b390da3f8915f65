"""More defect families for the synthetic modules, each randomised in size, shape, place,
polarity (brighter or darker than its surroundings), width and edge sharpness.

Each painter draws a *coverage* map (0..1, soft where the defect is diffuse) and pulls the
reflectance under it towards a target (bright metal or dark residue); the ground-truth mask
is where the coverage reaches one half. :func:`vi_stream.evaluation.synthetic.module_image` paints
them before lighting and noise, as it does its first five kinds, and blends each by its
contrast (so the same defect can be drawn fainter and fainter: a contrast ladder).

Places: ``pad`` (inside a pad), ``substrate`` (between pads), ``edge`` (across a pad edge),
chosen at random unless a family only makes sense in one.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

BRIGHT, DARK = 0.97, 0.06     # reflectance a defect pulls towards
SUBSTRATE = np.array([0.50, 0.36, 0.14])   # the flex's colour (RGB, linear), shared with vi_stream.evaluation.synthetic
PAD = np.array([0.93, 0.82, 0.50])         # the pads' metal (RGB, linear), shared likewise


def _where(rng: np.random.Generator, pad_cov: np.ndarray, lay, margin: int, place: str | None = None
           ) -> np.ndarray:
    """A point on a pad, on the substrate, or on a pad edge (``place``, else at random)."""
    h, w = pad_cov.shape
    place = place or str(rng.choice(["pad", "substrate", "edge"]))
    if place in ("pad", "edge"):
        pads = [p for p in lay.pads() if p[:, 0].min() > margin and p[:, 0].max() < w - margin
                and p[:, 1].min() > margin and p[:, 1].max() < h - margin]
        if pads:
            pad = pads[int(rng.integers(len(pads)))]
            if place == "pad":
                u, v = rng.uniform(0.25, 0.75, 2)
                return pad[0] + u * (pad[1] - pad[0]) + v * (pad[3] - pad[0])
            e = int(rng.integers(4))
            return pad[e] + rng.uniform(0.2, 0.8) * (pad[(e + 1) % 4] - pad[e])
    for _ in range(200):   # the substrate: a point no pad covers
        p = rng.uniform([margin, margin], [w - margin, h - margin])
        if pad_cov[int(p[1]), int(p[0])] < 0.05:
            return p
    return rng.uniform([margin, margin], [w - margin, h - margin])


def _curve(rng: np.random.Generator, p0: np.ndarray, length: float, wiggle: float, n: int = 48) -> np.ndarray:
    """A smooth open curve from ``p0``: a random direction, a bend and ``wiggle`` waves."""
    a = rng.uniform(0, np.pi)
    d = np.array([np.cos(a), np.sin(a)])
    nrm = np.array([-d[1], d[0]])
    t = np.linspace(0, 1, n)[:, None]
    bend = rng.uniform(-0.2, 0.2) * length
    waves = wiggle * length * np.sin(2 * np.pi * rng.uniform(1, 3) * t + rng.uniform(0, 2 * np.pi))
    return p0 + t * length * d + (4 * t * (1 - t) * bend + waves) * nrm


def _stroke(shape, pts: np.ndarray, width: float, soft: float) -> np.ndarray:
    """Coverage of a polyline ``width`` px wide; ``soft`` px of Gaussian edge (0: sharp)."""
    h, w = shape
    up = 4   # drawn at 4x and area-averaged: sub-pixel widths down to about 1 px
    big = np.zeros((h * up, w * up), np.float32)
    p = np.round(np.clip(pts, 0, [w - 1, h - 1]) * up * 16).astype(np.int32)
    cv2.polylines(big, [p], False, 1.0, max(1, int(round(width * up))), cv2.LINE_AA, 4)
    cov = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    if soft > 0:
        cov = cv2.GaussianBlur(cov, (0, 0), soft)
        cov = np.clip(cov / max(cov.max(), 1e-6), 0, 1)
    return cov


def _disc(shape, centre, radii, angle: float, soft: float) -> np.ndarray:
    h, w = shape
    cov = np.zeros((h, w), np.float32)
    axes = (max(1, int(round(radii[0] * 16))), max(1, int(round(radii[1] * 16))))
    cv2.ellipse(cov, (int(round(centre[0] * 16)), int(round(centre[1] * 16))), axes, angle, 0, 360, 1.0, -1,
                cv2.LINE_AA, 4)
    if soft > 0:
        cov = cv2.GaussianBlur(cov, (0, 0), soft)
        cov = np.clip(cov / max(cov.max(), 1e-6), 0, 1)
    return cov


def _apply(img: np.ndarray, cov: np.ndarray, target: float | np.ndarray) -> np.ndarray:
    """Pull ``img`` towards ``target`` under ``cov``; the mask is where the pull is at least half."""
    tgt = np.broadcast_to(np.asarray(target, np.float32), (3,))
    img[:] = img * (1 - cov[..., None]) + tgt * cov[..., None]
    return (cov >= 0.5).astype(np.uint8)


def _polarity(rng: np.random.Generator) -> float:
    return BRIGHT if rng.random() < 0.5 else DARK


def hairline(rng, img, pad_cov, lay, scale, margin):
    """A crack 1-2 px wide, long and nearly straight."""
    pts = _curve(rng, _where(rng, pad_cov, lay, margin), rng.uniform(80, 220) * scale, 0.01)
    return _apply(img, _stroke(pad_cov.shape, pts, rng.uniform(1.0, 2.0), 0.0), _polarity(rng))


def fibre(rng, img, pad_cov, lay, scale, margin):
    """A textile fibre: long, wavy, thin, with soft edges."""
    pts = _curve(rng, _where(rng, pad_cov, lay, margin), rng.uniform(100, 260) * scale, rng.uniform(0.03, 0.08))
    return _apply(img, _stroke(pad_cov.shape, pts, rng.uniform(1.5, 3.5), rng.uniform(0.3, 1.0)),
                  _polarity(rng))


def particles(rng, img, pad_cov, lay, scale, margin):
    """A cluster of 5-15 specks of 1.5-4 px radius."""
    c = _where(rng, pad_cov, lay, margin)
    cov = np.zeros(pad_cov.shape, np.float32)
    for _ in range(int(rng.integers(5, 16))):
        p = c + rng.normal(0, 14 * scale, 2)
        r = rng.uniform(1.5, 4.0) * scale
        cov = np.maximum(cov, _disc(pad_cov.shape, p, (r, r), 0, 0.0))
    return _apply(img, cov, _polarity(rng))


def ring(rng, img, pad_cov, lay, scale, margin):
    """A dried droplet: an annulus of residue, diffuse."""
    c = _where(rng, pad_cov, lay, margin)
    r = rng.uniform(14, 40) * scale
    t = rng.uniform(2, 5) * scale
    outer = _disc(pad_cov.shape, c, (r, r * rng.uniform(0.8, 1.0)), rng.uniform(0, 180), 0.0)
    inner = _disc(pad_cov.shape, c, (r - t, (r - t) * rng.uniform(0.8, 1.0)), 0, 0.0)
    cov = np.clip(outer - inner, 0, 1)
    cov = cv2.GaussianBlur(cov, (0, 0), rng.uniform(0.5, 1.5))
    return _apply(img, np.clip(cov / max(cov.max(), 1e-6), 0, 1), _polarity(rng))


def smear(rng, img, pad_cov, lay, scale, margin):
    """An elongated diffuse streak (a wipe, a fingerprint's ridge)."""
    c = _where(rng, pad_cov, lay, margin)
    length = rng.uniform(25, 70) * scale
    cov = _disc(pad_cov.shape, c, (length, length / rng.uniform(3, 8)), rng.uniform(0, 180),
                rng.uniform(2, 6) * scale)
    return _apply(img, cov, _polarity(rng))


def pit(rng, img, pad_cov, lay, scale, margin):
    """A small crater: a dark core with a bright rim (or the reverse), 2-5 px."""
    c = _where(rng, pad_cov, lay, margin)
    r = rng.uniform(2.0, 5.0) * scale
    rim = _disc(pad_cov.shape, c, (r * 1.6, r * 1.6), 0, 0.0)
    core = _disc(pad_cov.shape, c, (r, r), 0, 0.0)
    a, b = (DARK, BRIGHT) if rng.random() < 0.5 else (BRIGHT, DARK)
    _apply(img, np.clip(rim - core, 0, 1), b)
    _apply(img, core, a)
    return (np.maximum(rim, core) >= 0.5).astype(np.uint8)


def bridge(rng, img, pad_cov, lay, scale, margin):
    """Metal bridging the gap between two neighbouring pads of a row."""
    h, w = pad_cov.shape
    pads = [p for p in lay.pads() if p[:, 0].min() > margin and p[:, 0].max() < w - margin
            and p[:, 1].min() > margin and p[:, 1].max() < h - margin]
    pads.sort(key=lambda p: (round(float(p[:, 1].mean()) / 10), float(p[:, 0].mean())))
    i = int(rng.integers(max(1, len(pads) - 1)))
    a, b = pads[i], pads[min(i + 1, len(pads) - 1)]
    y = rng.uniform(0.2, 0.8)
    p0 = a[1] + y * (a[2] - a[1])          # right edge of the left pad
    p1 = b[0] + y * (b[3] - b[0])          # left edge of the right pad
    cov = _stroke(pad_cov.shape, np.array([p0, p1]), rng.uniform(2, 7) * scale, rng.uniform(0, 0.8))
    cov = np.clip(cov - pad_cov, 0, 1)     # only the gap changes: the pads are metal already
    return _apply(img, cov, BRIGHT * 0.95)


def oxidation(rng, img, pad_cov, lay, scale, margin):
    """Part of a pad discoloured: a soft patch of tint, faint by nature."""
    c = _where(rng, pad_cov, lay, margin, "pad")
    r = rng.uniform(8, 20) * scale
    cov = _disc(pad_cov.shape, c, (r, r * rng.uniform(0.5, 1.0)), rng.uniform(0, 180), r * 0.3)
    cov = np.minimum(cov, pad_cov)
    tint = np.array([0.55, 0.45, 0.35], np.float32) if rng.random() < 0.5 else np.array([0.35, 0.45, 0.6], np.float32)
    return _apply(img, cov, tint)


def _inner_trace(rng, shape, lay, margin):
    """One trace (its two ends) drawn at random among those ``margin`` inside the image (any, if none is)."""
    h, w = shape
    traces = [(a, b) for a, b in lay.traces() if margin < min(a[0], b[0]) and max(a[0], b[0]) < w - margin
              and margin < min(a[1], b[1]) and max(a[1], b[1]) < h - margin]
    return traces[int(rng.integers(len(traces)))] if traces else lay.traces()[0]


def trace_break(rng, img, pad_cov, lay, scale, margin):
    """A gap across a trace: the trace's metal gone, substrate showing."""
    a, b = _inner_trace(rng, pad_cov.shape, lay, margin)
    c = a + rng.uniform(0.3, 0.7) * (b - a)
    d = (b - a) / (np.linalg.norm(b - a) + 1e-9)
    half = rng.uniform(2, 6) * scale
    cov = _stroke(pad_cov.shape, np.array([c - half * d, c + half * d]), 14 * scale, 0.0)
    return _apply(img, cov, SUBSTRATE.astype(np.float32) * rng.uniform(0.9, 1.1))


def bubble(rng, img, pad_cov, lay, scale, margin):
    """A void under a coating: a bright round patch with a dark outline, on the substrate."""
    c = _where(rng, pad_cov, lay, margin, "substrate")
    r = rng.uniform(5, 14) * scale
    edge = _disc(pad_cov.shape, c, (r, r), 0, 0.0)
    core = _disc(pad_cov.shape, c, (r * 0.8, r * 0.8), 0, rng.uniform(0, 1.5))
    _apply(img, np.clip(edge - core, 0, 1), DARK)
    _apply(img, core, BRIGHT * 0.9)
    return (edge >= 0.5).astype(np.uint8)


def trace_open(rng, img, pad_cov, lay, scale, margin):
    """A thin cut across a trace (1.2-3 px wide), anywhere along it: the interruption a patch of a few
    pixels barely shows, while the trace's lattice neighbours are whole (issue 28)."""
    a, b = _inner_trace(rng, pad_cov.shape, lay, margin)
    c = a + rng.uniform(0.15, 0.85) * (b - a)
    d = (b - a) / (np.linalg.norm(b - a) + 1e-9)
    across = np.array([-d[1], d[0]]) * 6 * scale        # the trace is 9 px wide at 768
    cov = _stroke(pad_cov.shape, np.array([c - across, c + across]), rng.uniform(1.2, 3.0) * scale, 0.0)
    before = img.copy()
    mask = _apply(img, cov, SUBSTRATE.astype(np.float32) * rng.uniform(0.9, 1.1))
    return mask & (np.abs(img - before).max(axis=-1) > 0.03)   # the trace's metal, not the substrate beside it


def faint_region(rng, img, pad_cov, lay, scale, margin):
    """A large faint discoloration (a burn, a stain over many pads): a soft region of 70-160 px
    radius whose reflectance is scaled by a tint 25-40% away from one at full contrast (the sets draw it
    at contrast 0.15-0.8: 4-32%), darker or brighter."""
    h, w = pad_cov.shape
    c = rng.uniform([margin, margin], [w - margin, h - margin])
    r = rng.uniform(70, 160) * scale
    cov = _disc(pad_cov.shape, c, (r, r * rng.uniform(0.6, 1.0)), rng.uniform(0, 180), 0.25 * r)
    change = rng.uniform(0.25, 0.40) * (1 if rng.random() < 0.5 else -1)
    tint = (1.0 + change * rng.uniform(0.7, 1.3, 3)).astype(np.float32)
    img[:] = img * (1 + cov[..., None] * (tint - 1))
    return (cov >= 0.5).astype(np.uint8)


def via_open(rng, img, pad_cov, lay, scale, margin):
    """A via gone wrong: its hole plugged with metal, or widened into a dark crater 2-3x its size.
    Reserved for the sealed split."""
    h, w = pad_cov.shape
    vias = [v for v in lay.vias() if margin < v[0] < w - margin and margin < v[1] < h - margin] or lay.vias()
    c = vias[int(rng.integers(len(vias)))]
    if rng.random() < 0.5:
        cov = _disc(pad_cov.shape, c, (5.5 * scale, 5.5 * scale), 0, 0.0)
        target = np.array([0.66, 0.47, 0.20], np.float32) * rng.uniform(1.0, 1.25)   # the traces' metal
    else:
        r = rng.uniform(8, 12) * scale
        cov = _disc(pad_cov.shape, c, (r, r * rng.uniform(0.7, 1.0)), rng.uniform(0, 180), 0.0)
        target = np.float32(DARK)
    before = img.copy()
    mask = _apply(img, cov, target)
    return mask & (np.abs(img - before).max(axis=-1) > 0.03)


Painter = Callable[..., np.ndarray]
PAINTERS: dict[str, Painter] = {f.__name__: f for f in (hairline, fibre, particles, ring, smear, pit, bridge,
                                                         oxidation, trace_break, bubble, trace_open,
                                                         faint_region, via_open)}
