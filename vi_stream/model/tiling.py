"""Tile an image into overlapping tiles and blend per-tile maps back (numba).

Tiles sit on a regular grid with step ``tile - overlap``; the image is
edge-padded at the bottom/right so the last tile is complete. ``untile``
blends overlaps with a separable linear ramp, so a map that is continuous
across tiles stays continuous (no seams), and ``untile(tile(x)) == x`` holds
*exactly*: the ramp weights are multiples of 2**-16 and accumulate in float64,
where every product and sum of them with a float32 value is exact.

``zoomed`` enlarges an image before it is tiled (the model's ``zoom`` setting) and ``at_size``
averages a map made on it back to the image's size.

``owned_cells``/``stitch`` are the alternative the model scores with: every
map position is taken from the one tile it is most interior to (overlaps are
split down the middle), so a position is computed once and never from the
band next to a tile edge where a CNN's zero padding shows.

    >>> import numpy as np
    >>> x = np.arange(100 * 70, dtype=np.float32).reshape(100, 70)
    >>> tiles, grid = tile(x, 32, 8)
    >>> bool((untile(tiles, grid) == x).all())
    True
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numba
import numpy as np

from vi_stream.errors import ConfigError, InputError
from vi_stream.threads import share as _share

_WEIGHT_BITS = 16


@dataclass(frozen=True)
class TileGrid:
    height: int
    width: int
    tile: int
    overlap: int
    ny: int
    nx: int

    @property
    def step(self) -> int:
        return self.tile - self.overlap

    @property
    def count(self) -> int:
        return self.ny * self.nx

    @property
    def padded_shape(self) -> tuple[int, int]:
        return self.ny * self.step + self.overlap, self.nx * self.step + self.overlap

    def origins(self) -> np.ndarray:
        """(count, 2) array of (y, x) top-left corners, row-major."""
        ys, xs = np.meshgrid(np.arange(self.ny) * self.step, np.arange(self.nx) * self.step, indexing="ij")
        return np.stack([ys.ravel(), xs.ravel()], axis=1)

    def scaled(self, stride: int) -> "TileGrid":
        """The same grid at 1/stride resolution (e.g. a backbone feature map)."""
        if self.tile % stride or self.overlap % stride:
            raise ConfigError(f"tile {self.tile} and overlap {self.overlap} must be multiples of {stride}")
        return TileGrid(-(-self.height // stride), -(-self.width // stride), self.tile // stride,
                        self.overlap // stride, self.ny, self.nx)


def make_grid(height: int, width: int, tile: int, overlap: int) -> TileGrid:
    check_tiling(tile, overlap)
    if height < 1 or width < 1:
        raise ConfigError(f"image must be at least 1x1, got {height}x{width}")
    step = tile - overlap
    ny = max(1, -(-(height - overlap) // step))
    nx = max(1, -(-(width - overlap) // step))
    return TileGrid(int(height), int(width), int(tile), int(overlap), int(ny), int(nx))


def check_tiling(tile: int, overlap: int) -> None:
    if not isinstance(tile, (int, np.integer)) or tile < 1:
        raise ConfigError(f"tile size must be a positive integer, got {tile!r}")
    if not isinstance(overlap, (int, np.integer)) or overlap < 0 or overlap >= tile:
        raise ConfigError(f"overlap must be in 0..tile-1 ({tile - 1}), got {overlap!r}")


@numba.njit(cache=True, parallel=True, fastmath=True)
def _tile_kernel(img, out, h, w, c, ny, nx, t, step, lo, scale, nt):  # pragma: no cover - compiled
    """Tile rows. ``img`` and ``out`` are the flat image (h, w, c) and tiles (n, t, t, c), so a
    tile row's part inside the image is one contiguous run of both; the part past the edge
    repeats the last pixel. Threads take shares of all tiles' rows. The runs are indexed
    through views from 0: numba wraps negative indices, and for an offset it cannot prove
    non-negative that check turned the loads into byte gathers (768x768: 0.53 -> 0.18 ms)."""
    for th in numba.prange(nt):
        lo_row, hi_row = _share(th, nt, ny * nx * t)
        for job in range(lo_row, hi_row):
            k = job // t
            i = job % t
            ox = (k % nx) * step
            src = (min((k // nx) * step + i, h - 1) * w + ox) * c
            dst = job * t * c
            inside = min(t, w - ox) * c
            s = img[src:src + inside]
            d = out[dst:dst + t * c]
            for j in range(inside):
                d[j] = (np.float32(s[j]) - lo) * scale
            for j in range(inside, t * c):  # the last pixel of the image row
                d[j] = (np.float32(s[inside - c + j % c]) - lo) * scale


def tile(image: np.ndarray, tile_size: int, overlap: int = 0, lo: float = 0.0, scale: float = 1.0
         ) -> tuple[np.ndarray, TileGrid]:
    """Split ``image`` (H, W) or (H, W, C) into float32 tiles (N, T, T[, C]).

    Values are mapped as ``(v - lo) * scale`` on the way (fused normalisation).
    """
    if image.ndim not in (2, 3) or image.size == 0:
        raise ConfigError(f"image must be 2-D or 3-D and non-empty, got shape {image.shape}")
    grid = make_grid(image.shape[0], image.shape[1], tile_size, overlap)
    img3 = image if image.ndim == 3 else image[:, :, None]
    img3 = np.ascontiguousarray(img3)
    c = img3.shape[2]
    out = np.empty((grid.count, tile_size, tile_size, c), np.float32)
    _tile_kernel(img3.reshape(-1), out.reshape(-1), img3.shape[0], img3.shape[1], c, grid.ny, grid.nx, tile_size,
                 grid.step, np.float32(lo), np.float32(scale), numba.get_num_threads())
    return (out if image.ndim == 3 else out[..., 0]), grid


def _ramp(t: int, overlap: int) -> np.ndarray:
    """1-D blend weight: linear ramp over each overlap, 1 in the middle, dyadic."""
    w = np.ones(t, np.float64)
    if overlap > 0:
        r = (np.arange(overlap) + 1.0) / (overlap + 1.0)
        w[:overlap] = r
        w[t - overlap:] = np.minimum(w[t - overlap:], r[::-1])
    q = float(1 << _WEIGHT_BITS)
    return np.maximum(np.round(w * q), 1.0) / q


@numba.njit(cache=True)
def _untile_kernel(maps, acc, wsum, ny, nx, step, wy, wx):  # pragma: no cover - compiled
    t = maps.shape[1]
    for k in range(ny * nx):
        oy = (k // nx) * step
        ox = (k % nx) * step
        for i in range(t):
            for j in range(t):
                wt = wy[i] * wx[j]
                acc[oy + i, ox + j] += wt * np.float64(maps[k, i, j])
                wsum[oy + i, ox + j] += wt


@numba.njit(cache=True, parallel=True)
def _divide_kernel(acc, wsum, out):  # pragma: no cover - compiled
    h, w = out.shape
    for y in numba.prange(h):
        for x in range(w):
            out[y, x] = np.float32(acc[y, x] / wsum[y, x])


def untile(maps: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Blend per-tile maps (N, T, T) back into one (H, W) float32 map."""
    if maps.ndim != 3 or maps.shape[0] != grid.count or maps.shape[1:] != (grid.tile, grid.tile):
        raise ConfigError(f"expected maps of shape ({grid.count}, {grid.tile}, {grid.tile}), got {maps.shape}")
    ph, pw = grid.padded_shape
    acc = np.zeros((ph, pw), np.float64)
    wsum = np.zeros((ph, pw), np.float64)
    ramp = _ramp(grid.tile, grid.overlap)
    _untile_kernel(np.ascontiguousarray(maps, dtype=np.float32), acc, wsum, grid.ny, grid.nx, grid.step, ramp, ramp)
    out = np.empty((grid.height, grid.width), np.float32)
    _divide_kernel(acc[: grid.height, : grid.width], wsum[: grid.height, : grid.width], out)
    return out


@lru_cache(maxsize=32)
def owned_cells(grid: TileGrid) -> tuple[np.ndarray, np.ndarray]:
    """Which tile each map position is taken from, as flat indices ``(src, dst)``.

    ``src`` indexes the (count, tile, tile) stack of per-tile maps, ``dst`` the
    (height, width) map; every map position appears in ``dst`` exactly once and
    ``src`` is increasing (tile-major), so the positions of a run of tiles are
    a contiguous slice. Each overlap is split down the middle: a position is
    owned by the tile it is farthest inside (the padded margin past the image
    is owned by nobody).
    """
    def spans(n: int, size: int) -> list[tuple[int, int]]:
        half = grid.overlap // 2
        out = []
        for k in range(n):
            start = k * grid.step + (half if k > 0 else 0)
            end = min((k + 1) * grid.step + half if k < n - 1 else k * grid.step + grid.tile, size)
            out.append((start, end))
        return out

    src, dst = [], []
    t = grid.tile
    for ky, (y0, y1) in enumerate(spans(grid.ny, grid.height)):
        for kx, (x0, x1) in enumerate(spans(grid.nx, grid.width)):
            k = ky * grid.nx + kx
            gy, gx = np.meshgrid(np.arange(y0, y1), np.arange(x0, x1), indexing="ij")
            src.append((k * t * t + (gy - ky * grid.step) * t + (gx - kx * grid.step)).ravel())
            dst.append((gy * grid.width + gx).ravel())
    src_a, dst_a = np.concatenate(src).astype(np.int64), np.concatenate(dst).astype(np.int64)
    src_a.flags.writeable = dst_a.flags.writeable = False  # shared through the cache
    return src_a, dst_a


def stitch(maps: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Per-tile maps (N, T, T) into one (H, W) float32 map, each position from the tile that owns it."""
    if maps.ndim != 3 or maps.shape[0] != grid.count or maps.shape[1:] != (grid.tile, grid.tile):
        raise ConfigError(f"expected maps of shape ({grid.count}, {grid.tile}, {grid.tile}), got {maps.shape}")
    src, dst = owned_cells(grid)
    out = np.empty(grid.height * grid.width, np.float32)
    out[dst] = maps.reshape(-1)[src]
    return out.reshape(grid.height, grid.width)


# ------------------------------------------------------------------ zoom
def zoomed_shape(shape: tuple[int, ...], zoom: float) -> tuple[int, int]:
    """The (height, width) the backbone sees of an image of ``shape`` at ``zoom``."""
    return (int(round(shape[0] * zoom)), int(round(shape[1] * zoom))) if zoom != 1 else tuple(shape[:2])


MAX_ZOOMED_PIXELS = 64_000_000   # an image enlarged past this is refused (its tiles alone would take GBs)


def zoomed(image: np.ndarray, zoom: float, intensity) -> np.ndarray:
    """The image enlarged ``zoom`` times (bicubic, its overshoot at edges clipped to the model's
    intensity range, or the image's own where it reaches further, as uint8 clips to 0-255; the image
    itself at 1). InputError past MAX_ZOOMED_PIXELS."""
    if zoom == 1:
        return image
    h, w = zoomed_shape(image.shape, zoom)
    if h * w > MAX_ZOOMED_PIXELS:
        raise InputError(f"a {image.shape[1]}x{image.shape[0]} image at zoom {zoom:g} is {h * w / 1e6:.0f} MP "
                         f"through the backbone, more than {MAX_ZOOMED_PIXELS / 1e6:.0f}: send a region of it "
                         "(roi) or use a model at a lower zoom")
    out = cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)
    if out.dtype != np.uint8:      # values the image has beyond the model's range are kept, overshoot is not
        lo, hi = min(intensity.lo, float(image.min())), max(intensity.hi, float(image.max()))
        np.clip(out, *((lo, hi) if out.dtype.kind == "f" else (int(lo), int(hi))), out=out)
    return out


def at_size(heat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A map computed on the enlarged image, averaged back to the image's (height, width)."""
    if heat.shape == tuple(shape[:2]):
        return heat
    return cv2.resize(heat, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
