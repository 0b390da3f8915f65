"""The lattice maps over their spread (model/lattice_spread.py): the appearance bins, the tables a fit
keeps, and the out-of-fold maxima that set the threshold. The model files and the heatmap that use
them: tests/model/test_lattice_model.py, through the installed command."""
from __future__ import annotations

import numpy as np
import pytest

from vi_stream.model import lattice_spread as ls

from ..helpers.lattices import pads

MAPS = ("moved", "cut", "fine", "coarse", "wide")
NG = ls.GRADIENT_BINS


def test_a_flat_place_falls_in_its_brightness_bin_and_an_edge_in_a_strong_gradient_bin():
    b = np.full((64, 64), 0.30, np.float32)
    b[:, 32:] = 0.90                                  # a pad's edge: dark substrate, bright metal
    d = np.zeros_like(b)
    bins = ls.appearance(b, d)
    assert bins[:, :20].tolist() == [[int(np.searchsorted(ls.INTENSITY_EDGES, 0.30)) * NG] * 20] * 64
    assert bins[:, 44:].tolist() == [[int(np.searchsorted(ls.INTENSITY_EDGES, 0.90)) * NG] * 20] * 64
    assert (bins[:, 31:33] % NG >= NG - 3).all()      # at the edge, a strong gradient bin (0.6 over a pixel)
    # the appearance is the neighbours' median's (b - d), not the pixel's own: a defect leaves it alone
    assert (ls.appearance(b + 0.5 * (np.arange(64) == 10)[None, :], 0.5 * (np.arange(64) == 10)[None, :]
                          .astype(np.float32)) == bins).all()


def _stats_of(images):
    """SpreadStats of ``images``: (maps, bins, d) triples, each image i in fold i % FOLDS."""
    s = ls.SpreadStats(MAPS)
    return s, [s.add(i, *im) for i, im in enumerate(images)]


def _image(rng, bin_a, bin_b, scale_a, scale_b, n=200):
    """Maps of n x n pixels, the left half in appearance bin ``bin_a`` with |N(0, scale_a)| values on
    every map, the right half in ``bin_b``; d is 1 (a pair of neighbours) everywhere."""
    bins = np.full((n, n), bin_a, np.int32)
    bins[:, n // 2:] = bin_b
    maps = np.abs(rng.standard_normal((len(MAPS), n, n))).astype(np.float32)
    maps[:, :, : n // 2] *= scale_a
    maps[:, :, n // 2:] *= scale_b
    return maps, bins, np.ones((n, n), np.float32)


def test_each_bins_spread_is_its_percentile_on_the_good_images_and_moved_is_left_as_it_is():
    rng = np.random.default_rng(0)
    images = [_image(rng, 5, 40, 0.05, 0.2) for _ in range(10)]
    s, _tops = _stats_of(images)
    rec = s.tables()
    t = ls.read(rec, len(MAPS))
    for i in range(1, len(MAPS)):
        for b, half in ((5, slice(0, 100)), (40, slice(100, 200))):
            want = np.percentile(np.concatenate([im[0][i][:, half].ravel() for im in images]), ls.QUANTILE)
            assert t[i, b] == pytest.approx(want, rel=0.03)       # buckets 1.6% apart
        # a bin no good pixel fell in takes the map's spread over every pixel
        whole = np.percentile(np.concatenate([im[0][i].ravel() for im in images]), ls.QUANTILE)
        assert t[i, 77] == pytest.approx(whole, rel=0.03)
    assert (t[0] == 1).all() and rec["maps"] == ["cut", "fine", "coarse", "wide"]
    # pixels without a pair of neighbours (d == 0) are no measure of the spread
    maps, bins, d = _image(rng, 5, 40, 0.05, 100.0)
    d[:, 100:] = 0
    s2, _ = _stats_of([(maps, bins, d)] + images)
    assert ls.read(s2.tables(), len(MAPS))[1, 40] == pytest.approx(t[1, 40], rel=0.2)


def test_a_quiet_bin_is_not_read_below_a_tenth_of_the_maps_whole_spread():
    rng = np.random.default_rng(1)
    images = [_image(rng, 5, 40, 1e-5, 1.0) for _ in range(5)]
    t = ls.read(_stats_of(images)[0].tables(), len(MAPS))
    whole = np.percentile(np.concatenate([im[0][1].ravel() for im in images]), ls.QUANTILE)
    assert t[1, 5] == pytest.approx(ls.FLOOR * whole, rel=0.03)


def test_an_image_that_sets_the_threshold_is_read_over_the_other_folds_spread():
    """Image 0 is louder than the others in bin 5: over a spread it set itself its maximum would look
    ordinary; over the other folds' spread it stands out, as a fresh image as loud would."""
    rng = np.random.default_rng(2)
    images = [_image(rng, 5, 40, 0.15 if i == 0 else 0.05, 0.2) for i in range(10)]
    s, tops = _stats_of(images)
    own = ls.image_maxima(tops[0][1], ls.read(s.tables(), len(MAPS)))
    out = s.maxima(tops[0])
    assert all(o > 1.5 * w for o, w in zip(out[1:], own[1:]))
    assert out[0] == own[0]                                          # moved: as it is, both ways
    fold1 = ls.read(s._tables(s.hist.sum(axis=0) - s.hist[1]), len(MAPS))
    assert s.maxima(tops[6]) == ls.image_maxima(tops[6][1], fold1)   # image 6 is in fold 1
    assert s.maxima(None) is None


def test_the_normalised_maximum_divides_each_map_by_its_bins_entry_before_the_gain():
    rng = np.random.default_rng(3)
    maps = rng.random((len(MAPS), 30, 40)).astype(np.float32)
    bins = rng.integers(0, ls.BINS, (30, 40)).astype(np.int32)
    tables = rng.uniform(0.1, 2.0, (len(MAPS), ls.BINS)).astype(np.float32)
    gains = [3.0, 1.0, 2.0, 5.0, 0.5]
    want = np.max([g * m / t[bins] for g, m, t in zip(gains, maps, tables)], axis=0)
    assert np.allclose(ls.normalised_maximum(maps, gains, tables, bins), want, rtol=1e-5)


def test_an_images_maxima_over_the_spread_are_those_of_the_map_scoring_computes():
    """What a fit reads of a good image (its per-bin maxima over the tables) is the maximum of the map
    scoring computes from the same maps, every pixel counted: also where there is no pair of
    neighbours (d == 0), where the smoothed maps spill and scoring sees them."""
    rng = np.random.default_rng(4)
    maps = rng.random((len(MAPS), 50, 60)).astype(np.float32)
    bins = rng.integers(0, ls.BINS, (50, 60)).astype(np.int32)
    d = np.ones((50, 60), np.float32)
    d[:, :10] = 0
    maps[2, 5, 3] = 50.0                                   # the loudest pixel, where no pair is
    s = ls.SpreadStats(MAPS)
    item = s.add(0, maps, bins, d)
    tables = rng.uniform(0.5, 2.0, (len(MAPS), ls.BINS)).astype(np.float32)
    got = ls.image_maxima(item[1], tables)
    for i in range(len(MAPS)):
        gains = [1.0 if j == i else 1e-9 for j in range(len(MAPS))]
        assert got[i] == pytest.approx(float(ls.normalised_maximum(maps, gains, tables, bins).max()), rel=1e-5)
    assert got[2] == pytest.approx(50.0 / tables[2, bins[5, 3]], rel=1e-6)
    assert s.hist[0].sum() == len(MAPS) * 50 * 50           # the histogram: paired pixels only


def test_a_thin_bin_takes_the_spread_of_its_edge_strength_not_a_maximum_of_a_few_pixels():
    """The 99.99th percentile of a few thousand pixels is their maximum, and another fold's maximum
    is another number: a good image read over the other folds' spread then scored 63 where its
    neighbours scored 20 (a line 7 fit, bench/history.md). A bin of fewer than MIN_PIXELS takes the
    spread of every bin of its edge strength."""
    rng = np.random.default_rng(5)
    n = 200
    images = []
    for _ in range(10):
        maps, bins, d = _image(rng, 5, 40, 0.05, 0.2, n)
        bins[:2, :] = 5 + 2 * NG             # a thin bin (4,000 pixels): brightness 2 bins up, bin 5's edge strength
        maps[:, :2, :] *= 3.0                # and louder than its edge strength's other bin
        images.append((maps, bins, d))
    t = ls.read(_stats_of(images)[0].tables(), len(MAPS))
    column = np.concatenate([im[0][1][(im[1] % NG) == 5] for im in images])
    assert t[1, 5 + 2 * NG] == pytest.approx(np.percentile(column, ls.QUANTILE), rel=0.03)
    own = np.percentile(np.concatenate([im[0][1][im[1] == 5 + 2 * NG] for im in images]), ls.QUANTILE)
    assert t[1, 5 + 2 * NG] < 0.95 * own            # not the few pixels' own (their maximum, nearly)
    assert t[1, 5] == pytest.approx(np.percentile(np.concatenate([im[0][1][im[1] == 5] for im in images]),
                                                  ls.QUANTILE), rel=0.03)


def test_a_large_images_maps_are_read_over_the_spread_at_their_working_size():
    """A 1536 px image with a 150 px pitch is compared a third of its size (lattice.WORK_PITCH): its
    appearance bins are taken there too, so each map is divided by its own pixels' entries, and the
    fused map comes back at the image's size. A 3 px dark cut across one pad (1 px at the working size)
    stands out over a spread its good neighbours set, further than over the maps as they are."""
    from vi_stream.model import lattice
    from vi_stream.model.anomaly import Intensity, _lattice_maxima
    shape, unit = (1152, 1536), Intensity(0.0, 1.0)
    s = ls.SpreadStats(lattice.MAPS)
    goods = [pads(shape, 150.0, 0.7, seed=seed) for seed in range(5)]
    items = [_lattice_maxima(i, g, unit, s) for i, g in enumerate(goods)]     # as a fit gathers them
    tables = ls.read(s.tables(), len(lattice.MAPS))
    assert min(len(np.unique(t)) for t in tables[1:]) >= 2           # bins of their own at the working size
    good = pads(shape, 150.0, 0.7, seed=9)
    bad = good.copy()
    bad[574:577, 720:790] = 0.3                          # across the pad at the centre (x 741-824, y 523-628)
    gains = [1.0] * len(lattice.MAPS)
    zero = np.zeros(shape, np.float32)

    def fused(img, spread):
        return lattice.fuse(zero, img, 0.0, 1.0, gains, lattice.MAPS, lattice.BLUR, spread=spread)
    (g, info), (b, _) = fused(good, tables), fused(bad, tables)
    assert info["used"] and g.shape == b.shape == shape
    y, x = np.unravel_index(int(np.argmax(b)), shape)
    assert 560 <= y <= 590 and 700 <= x <= 810, (y, x)
    # 42x when written; as they are, the same maps put the cut at 20x the good image's maximum
    plain = fused(bad, None)[0].max() / fused(good, None)[0].max()
    assert b.max() / g.max() > 1.5 * plain, (b.max() / g.max(), plain)
    # what the fit read of a good image is the maximum of the map scoring computes from it (brought
    # to the image's size at a whole factor, which keeps the working size's pixels)
    assert max(ls.image_maxima(items[0][1], tables)) == pytest.approx(float(fused(goods[0], tables)[0].max()),
                                                                      rel=1e-5)
