import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vi_stream.errors import ConfigError
from vi_stream.model.tiling import make_grid, owned_cells, stitch, tile, untile


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 90), w=st.integers(1, 90), t=st.integers(1, 40), data=st.data(),
       dtype=st.sampled_from([np.uint8, np.uint16, np.float32]))
def test_untile_of_tile_is_exact_for_any_size_tile_and_overlap(h, w, t, data, dtype):
    ov = data.draw(st.integers(0, t - 1))
    rng = np.random.default_rng(h * 1000 + w)
    if dtype == np.float32:
        x = rng.standard_normal((h, w)).astype(np.float32) * 1e3
    else:
        x = rng.integers(0, np.iinfo(dtype).max, (h, w), endpoint=True).astype(dtype)
    tiles, grid = tile(x, t, ov)
    assert tiles.shape == (grid.count, t, t)
    back = untile(tiles, grid)
    assert back.dtype == np.float32 and back.shape == (h, w)
    assert np.array_equal(back, x.astype(np.float32))


@settings(max_examples=30, deadline=None)
@given(h=st.integers(20, 120), w=st.integers(20, 120), t=st.integers(8, 40), data=st.data(),
       c=st.floats(-1e4, 1e4, allow_nan=False, width=32))
def test_constant_maps_blend_without_seams(h, w, t, data, c):
    ov = data.draw(st.integers(0, t - 1))
    grid = make_grid(h, w, t, ov)
    out = untile(np.full((grid.count, t, t), c, np.float32), grid)
    assert np.all(out == np.float32(c))


def test_smooth_map_stays_smooth_across_tile_boundaries():
    # Each tile sees the same global ramp; blending must not create steps.
    h, w, t, ov = 100, 100, 32, 12
    grid = make_grid(h, w, t, ov)
    ys, xs = np.mgrid[0:grid.padded_shape[0], 0:grid.padded_shape[1]].astype(np.float32)
    ramp = 0.5 * xs + 0.25 * ys
    maps = np.stack([ramp[y:y + t, x:x + t] for y, x in grid.origins()])
    out = untile(maps, grid)
    assert np.allclose(out, ramp[:h, :w], atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 90), w=st.integers(1, 90), t=st.integers(1, 40), data=st.data())
def test_stitch_takes_every_position_once_from_the_tile_it_is_deepest_in(h, w, t, data):
    ov = data.draw(st.integers(0, t - 1))
    x = np.random.default_rng(h * 100 + w).standard_normal((h, w)).astype(np.float32)
    tiles, grid = tile(x, t, ov)
    assert np.array_equal(stitch(tiles, grid), x)  # each position comes from a tile that holds it
    src, dst = owned_cells(grid)
    assert np.array_equal(np.sort(dst), np.arange(h * w))  # every position exactly once
    assert np.all(np.diff(src) > 0)  # tile-major: a run of tiles is a contiguous slice
    # Depth = distance to the nearest edge of the tile that an interior overlap is shared with;
    # the owner is never shallower than the other tile by more than the half-cell of an odd split.
    k, local = np.divmod(src, t * t)
    ly, lx = np.divmod(local, t)
    gy, gx = np.divmod(dst, w)
    origins = grid.origins()
    assert np.array_equal(origins[k, 0] + ly, gy) and np.array_equal(origins[k, 1] + lx, gx)
    depth = np.minimum.reduce([ly, lx, t - 1 - ly, t - 1 - lx])
    for j, (oy, ox) in enumerate(origins):
        inside = (gy >= oy) & (gy < oy + t) & (gx >= ox) & (gx < ox + t)
        other = np.minimum.reduce([gy - oy, gx - ox, oy + t - 1 - gy, ox + t - 1 - gx])
        # positions at the image border are owned by the only tile reaching them; compare elsewhere
        interior = inside & (gy >= ov) & (gx >= ov) & (gy < h - ov) & (gx < w - ov)
        assert np.all(depth[interior] >= other[interior] - 1)


def test_stitch_rejects_maps_of_the_wrong_shape():
    grid = make_grid(50, 50, 16, 4)
    with pytest.raises(ConfigError):
        stitch(np.zeros((grid.count + 1, 16, 16), np.float32), grid)


def test_tiles_carry_fused_normalisation_and_colour():
    x = np.arange(40 * 30 * 3, dtype=np.uint16).reshape(40, 30, 3)
    tiles, grid = tile(x, 16, 4, lo=10.0, scale=0.5)
    assert tiles.shape == (grid.count, 16, 16, 3)
    assert tiles[0, 0, 0, 2] == (x[0, 0, 2] - 10.0) * 0.5
    # edge padding replicates the last row/column: every tile equals a slice of the edge-padded image
    ph, pw = grid.padded_shape
    padded = (np.pad(x, ((0, ph - 40), (0, pw - 30), (0, 0)), mode="edge").astype(np.float32) - 10) * 0.5
    for k in range(grid.count):
        oy, ox = (k // grid.nx) * grid.step, (k % grid.nx) * grid.step
        assert np.array_equal(tiles[k], padded[oy:oy + 16, ox:ox + 16])


@pytest.mark.parametrize("t,ov", [(0, 0), (8, 8), (8, -1), (8, 9)])
def test_bad_tiling_is_a_clear_error(t, ov):
    with pytest.raises(ConfigError):
        tile(np.zeros((10, 10), np.uint8), t, ov)


def test_untile_rejects_maps_of_the_wrong_shape():
    _tiles, grid = tile(np.zeros((50, 50), np.uint8), 16, 4)
    with pytest.raises(ConfigError, match="expected maps of shape"):
        untile(np.zeros((grid.count + 1, 16, 16), np.float32), grid)


def test_scaled_grid_matches_feature_resolution():
    grid = make_grid(768, 768, 320, 64)
    f = grid.scaled(8)
    assert (f.tile, f.overlap, f.ny, f.nx) == (40, 8, 3, 3)
    with pytest.raises(ConfigError):
        make_grid(100, 100, 36, 4).scaled(8)
