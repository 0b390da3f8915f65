"""Structural defect families: the pad lattice itself is wrong, not the material on it (issue 28).

- ``lattice_warp``   the lattice locally warped: pads and traces around one pad displaced by a
                     smooth field (a shift and a swirl), nothing brighter or darker than usual;
- ``misplaced_pad``  one pad displaced rigidly (its gap to the neighbours changes), or missing
                     (substrate where the lattice wants a pad), or extra (a pad where it wants none);
- ``row_shift``      a run of 3-5 pads of a row displaced together (reserved for the sealed split:
                     ``synthetic.RESERVED``).

A displacement is a *strength*, not a blend: at strength ``s`` a pad moves by (2 + 8 s) px at 768
(x 0.8-1.2); :func:`vi_stream.evaluation.synthetic.module_image` passes each defect's contrast here
as its strength instead of blending (a half-blended warp would be a ghost, not a smaller warp).
A missing or extra pad is blended at ``s`` as the other families are.

The ground-truth mask of a warp is where the picture changed (the slivers a moved edge sweeps,
the bent trace), closed over 3 px, within the displaced area: pixels an inspector could point at.
"""
from __future__ import annotations

import itertools

import cv2
import numpy as np

from vi_stream.evaluation.defects import PAD, SUBSTRATE, _where

CHANGED = 0.08   # reflectance change that counts as "the picture changed" for a warp's mask


def _inside(lay, shape, margin: int) -> list[np.ndarray]:
    h, w = shape
    return [p for p in lay.pads() if p[:, 0].min() > margin and p[:, 0].max() < w - margin
            and p[:, 1].min() > margin and p[:, 1].max() < h - margin]


def _amplitude(rng: np.random.Generator, strength: float, scale: float) -> float:
    return (2.0 + 8.0 * strength) * scale * rng.uniform(0.8, 1.2)


def _remap(img: np.ndarray, dx: np.ndarray, dy: np.ndarray, floor: float) -> np.ndarray:
    """Warp ``img`` in place (output at x shows input at x - d(x)); returns the changed mask where
    the displacement is at least ``floor`` px."""
    h, w = dx.shape
    before = img.copy()
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    moved = np.hypot(dx, dy) > 1e-3
    warped = cv2.remap(img, xs - dx, ys - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    img[moved] = warped[moved]
    changed = (np.abs(img - before).max(axis=-1) > CHANGED).astype(np.uint8)
    changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    return (changed.astype(bool) & (np.hypot(dx, dy) >= floor)).astype(np.uint8)


def lattice_warp(rng, img, pad_cov, lay, scale, margin, strength=1.0):
    """A smooth local warp centred on a pad: radius 0.5-1 pitch, peak displacement (2 + 8 s) px."""
    h, w = pad_cov.shape
    c = _where(rng, pad_cov, lay, margin, "pad")
    radius = rng.uniform(0.5, 1.0) * lay.pitch
    amp = _amplitude(rng, strength, scale)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rx, ry = xs - np.float32(c[0]), ys - np.float32(c[1])
    bump = np.exp(-(rx * rx + ry * ry) / np.float32(2 * radius * radius))
    a = rng.uniform(0, 2 * np.pi)
    swirl = rng.uniform(0, 1)          # 0: a plain shift of the neighbourhood, 1: a rotation of it
    ux, uy = np.cos(a) * (1 - swirl), np.sin(a) * (1 - swirl)
    sx, sy = -ry / np.float32(radius) * swirl, rx / np.float32(radius) * swirl
    dx = (amp * bump * (ux + sx)).astype(np.float32)
    dy = (amp * bump * (uy + sy)).astype(np.float32)
    return _remap(img, dx, dy, 0.5)


def _pad_cover(shape, pad: np.ndarray) -> np.ndarray:
    cov = np.zeros(shape, np.float32)
    cv2.fillConvexPoly(cov, np.round(pad * 16).astype(np.int32), 1.0, cv2.LINE_AA, 4)
    return cov


def _displaced(rng, img, pad_cov, lay, scale, margin, strength):
    pads = _inside(lay, pad_cov.shape, margin) or lay.pads()
    pad = pads[int(rng.integers(len(pads)))]
    gap = max(lay.pitch - lay.pad_w, 6.0)
    amp = min(_amplitude(rng, strength, scale), 0.6 * gap)
    a = rng.uniform(0, 2 * np.pi)
    d = amp * np.array([np.cos(a), np.sin(a)])
    inside = (_pad_cover(pad_cov.shape, pad) < 0.5).astype(np.uint8)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 5)          # px from the pad (0 inside it)
    falloff = max(gap - amp, 3.0)
    wt = np.clip(1.0 - (dist - amp) / falloff, 0.0, 1.0)
    wt = (wt * wt * (3 - 2 * wt)).astype(np.float32)              # smooth to 0 before the neighbours
    return _remap(img, (d[0] * wt).astype(np.float32), (d[1] * wt).astype(np.float32), 0.5)


def _blend(img: np.ndarray, cov: np.ndarray, target: np.ndarray, strength: float) -> np.ndarray:
    tgt = target.astype(np.float32)
    img[:] = img + np.float32(strength) * cov[..., None] * (tgt - img)
    return (cov >= 0.5).astype(np.uint8)


def _missing(rng, img, pad_cov, lay, scale, margin, strength):
    pads = _inside(lay, pad_cov.shape, margin) or lay.pads()
    pad = pads[int(rng.integers(len(pads)))]
    return _blend(img, _pad_cover(pad_cov.shape, pad), SUBSTRATE * rng.uniform(0.9, 1.1), strength)


def _extra(rng, img, pad_cov, lay, scale, margin, strength):
    """A pad in a lattice column, between two rows (or beyond the first or last), over the traces."""
    rows = sorted(lay.rows)
    gaps = [(a + b) / 2 for a, b in itertools.pairwise(rows)] or [rows[0] - lay.pad_h]
    y = gaps[int(rng.integers(len(gaps)))]
    room = (rows[1] - rows[0] - lay.pad_h) if len(rows) > 1 else lay.pad_h
    ph = max(4.0 * scale, min(lay.pad_h * rng.uniform(0.3, 0.6), 0.5 * room))
    pw = lay.pad_w * rng.uniform(0.6, 1.0)
    h, w = pad_cov.shape
    for _ in range(50):
        x = rng.uniform(margin, w - margin - pw)
        rect = lay.map(np.array([[x, y - ph / 2], [x + pw, y - ph / 2], [x + pw, y + ph / 2], [x, y + ph / 2]]))
        if rect[:, 0].min() > margin and rect[:, 0].max() < w - margin and rect[:, 1].min() > margin \
                and rect[:, 1].max() < h - margin:
            break
    return _blend(img, _pad_cover(pad_cov.shape, rect), PAD * rng.uniform(0.9, 1.05), strength)


def misplaced_pad(rng, img, pad_cov, lay, scale, margin, strength=1.0):
    """One pad displaced (half the draws), missing or extra (a quarter each)."""
    u = rng.random()
    painter = _displaced if u < 0.5 else _missing if u < 0.75 else _extra
    return painter(rng, img, pad_cov, lay, scale, margin, strength)


def row_shift(rng, img, pad_cov, lay, scale, margin, strength=1.0):
    """A run of 3-5 neighbouring pads of a row displaced together, along the row or across it, by
    (2 + 8 s) px: a misregistered section of the lattice. Reserved for the sealed split."""
    pads = _inside(lay, pad_cov.shape, margin) or lay.pads()
    first = pads[int(rng.integers(len(pads)))]
    row = sorted((p for p in pads if abs(float(p[:, 1].mean()) - float(first[:, 1].mean())) < lay.pad_h / 2),
                 key=lambda p: float(p[:, 0].mean()))
    n = min(int(rng.integers(3, 6)), len(row))
    i = int(rng.integers(len(row) - n + 1))
    run = row[i:i + n]
    gap = max(lay.pitch - lay.pad_w, 6.0)
    amp = min(_amplitude(rng, strength, scale), 0.6 * gap)
    a = rng.choice([0.0, np.pi / 2]) + rng.uniform(-0.2, 0.2) + (np.pi if rng.random() < 0.5 else 0.0)
    d = amp * np.array([np.cos(a), np.sin(a)])
    cover = np.zeros(pad_cov.shape, np.float32)
    for p in run:
        cover = np.maximum(cover, _pad_cover(pad_cov.shape, p))
    # the gaps between the run's pads move with it: the run's hull is one rigid block
    hull = cv2.convexHull(np.concatenate(run).astype(np.float32))
    block = np.zeros(pad_cov.shape, np.float32)
    cv2.fillConvexPoly(block, np.round(hull[:, 0] * 16).astype(np.int32), 1.0, cv2.LINE_AA, 4)
    dist = cv2.distanceTransform((np.maximum(block, cover) < 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    falloff = max(gap - amp, 3.0)
    wt = np.clip(1.0 - (dist - amp) / falloff, 0.0, 1.0)
    wt = (wt * wt * (3 - 2 * wt)).astype(np.float32)
    return _remap(img, (d[0] * wt).astype(np.float32), (d[1] * wt).astype(np.float32), 0.5)


# Painters that take the defect's contrast as their strength (module_image does not blend them).
PAINTERS = {f.__name__: f for f in (lattice_warp, misplaced_pad, row_shift)}
