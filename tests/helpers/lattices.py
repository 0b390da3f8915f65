"""Synthetic lattices for the lattice score's tests (tests/model/test_lattice*.py): pads whose pitch
and rotation are known."""
from __future__ import annotations

import math

import cv2
import numpy as np


def pads(shape, pitch: float, angle_deg: float, pad=(0.55, 0.7), row_gap: float = 2.2, seed: int = 0,
         noise: float = 0.01, gradient: float = 0.0, moved: float = 0.0) -> np.ndarray:
    """Rows of bright rectangles on a dark ground, every ``pitch`` px along a direction at ``angle_deg``;
    ``moved`` px shifts the pad at the centre along the rows; drawn 4x larger and area-averaged."""
    h, w = shape
    up = 4
    big = np.full((h * up, w * up), 0.3, np.float32)
    a = math.radians(angle_deg)
    u, v = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
    c = np.array([w / 2, h / 2])
    pw, ph = pad[0] * pitch, pad[1] * pitch
    for r in range(-int(h / (row_gap * pitch)) - 1, int(h / (row_gap * pitch)) + 2):
        for k in range(-int(w / pitch) - 2, int(w / pitch) + 3):
            o = c + (k * pitch + (0.5 * pitch if r % 2 else 0)) * u + r * row_gap * pitch * v
            if r == 0 and k == 0:
                o = o + moved * u
            corners = np.array([o - pw / 2 * u - ph / 2 * v, o + pw / 2 * u - ph / 2 * v,
                                o + pw / 2 * u + ph / 2 * v, o - pw / 2 * u + ph / 2 * v])
            cv2.fillConvexPoly(big, np.round(corners * up * 16).astype(np.int32), 0.9, cv2.LINE_AA, 4)
    img = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    img *= 1 + gradient * (np.arange(w, dtype=np.float32)[None, :] / w - 0.5)
    img += np.random.default_rng(seed).normal(0, noise, img.shape).astype(np.float32)
    return img
