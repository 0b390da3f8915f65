"""A model checks itself when it is loaded.

When a model is saved it carries a few reference tiles and the scores it gave them
(``check_tiles`` in the ``.npz``, ``meta["self_check"]``). Loading rescores them and
refuses a model whose scores do not come back within ``rtol``: a file whose bank,
projection or metadata was altered, or a machine that computes differently (a
broken torch build, a different backbone's weights), is caught before it judges a
module. The tiles are synthetic and deterministic (flat, gradient and texture in the
model's intensity range), so a model fitted anywhere gets them without its images,
and a score depends on every part of the model: backbone, projection, bank, index.

The tolerance is this code's (``RTOL``, ``ATOL``), never the file's: a file cannot widen it.
A file with a digest must carry a self-check (every save writes both); files saved before
either existed load only with ``--allow-unchecked``, then with a warning and no check.
"""
from __future__ import annotations

import logging

import numpy as np

from vi_stream.errors import ModelError

log = logging.getLogger("vi_stream.model")

RTOL = 0.02          # relative tolerance: CPU and CUDA, AVX2 and AVX-512 agree far closer than this
ATOL = 1e-4


def reference_tiles(model) -> np.ndarray:
    """(3, tile, tile[, 3]) tiles in the model's intensity range and image type."""
    t = model.config.tile
    lo, hi = model.intensity.lo, model.intensity.hi
    rng = np.random.default_rng(20261129)
    y, x = np.mgrid[0:t, 0:t] / max(t - 1, 1)
    texture = 0.5 + 0.25 * np.sin(12 * x + 3 * np.sin(9 * y)) + 0.08 * rng.standard_normal((t, t))
    fractions = [np.full((t, t), 0.5), 0.2 + 0.6 * x * y, np.clip(texture, 0, 1)]
    dtype = np.uint8 if hi <= 255 and lo >= 0 and hi > 1 else (np.uint16 if hi > 255 else np.float32)
    tiles = []
    for f in fractions:
        v = lo + f * (hi - lo)
        v = v.astype(dtype) if dtype is np.float32 else np.rint(v).astype(dtype)
        tiles.append(np.repeat(v[:, :, None], 3, axis=2) if model.channels == 3 else v)
    return np.stack(tiles)


def scores(model, tiles: np.ndarray) -> list[float]:
    return [float(model.score(tile).score) for tile in tiles]


def attach(model) -> np.ndarray:
    """The tiles to save with ``model`` (scored now, unless the model carries them already)."""
    tiles = getattr(model, "check_tiles", None)
    if tiles is None or "self_check" not in model.meta:
        tiles = reference_tiles(model)
        model.meta["self_check"] = {"scores": [round(s, 7) for s in scores(model, tiles)],
                                    "rtol": RTOL, "atol": ATOL}
        model.check_tiles = tiles
    return tiles


def verify(model, tiles: np.ndarray | None, where: str, required: bool = True) -> None:
    """Rescore the file's reference tiles; ModelError unless every score comes back within tolerance
    (or, when not ``required``, the file has no self-check at all: a warning)."""
    record = model.meta.get("self_check")
    if tiles is None or record is None:
        if required:
            raise ModelError(f"{where}: has a digest but no self-check (every save writes both): refused")
        log.warning("%s: saved without a self-check (an older vi_stream); it loads unchecked", where)
        return
    try:
        want = [float(s) for s in record["scores"]]
        rtol, atol = RTOL, ATOL   # the code's: a file that widened its own tolerance would pass anything
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{where}: bad self-check record ({err})") from err
    if tiles.ndim not in (3, 4) or len(want) != len(tiles) or not len(tiles):
        raise ModelError(f"{where}: the self-check has {len(tiles)} tiles and {len(want)} scores")
    got = scores(model, tiles)
    for i, (g, w) in enumerate(zip(got, want)):
        if not abs(g - w) <= atol + rtol * abs(w):
            raise ModelError(f"{where}: failed its self-check: reference tile {i} scores {g:.6g}, the file says "
                             f"{w:.6g} (tolerance {rtol:.0%}); the file was altered, or this machine computes "
                             f"differently from the one that saved it")
    model.check_tiles = tiles
