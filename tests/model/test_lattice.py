"""The lattice score (vi_stream.model.lattice): the lattice found from the image itself, on synthetic
lattices whose pitch and rotation are known, and the cell-to-cell map that sees what moved."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vi_stream.evaluation import synthetic
from vi_stream.model import lattice, lattice_kernels

from ..helpers.lattices import pads


def named(maps: np.ndarray, name: str) -> np.ndarray:
    """One of :func:`lattice.lattice_map`'s maps by its name (lattice.MAPS)."""
    return maps[lattice.MAPS.index(name)]


@pytest.mark.parametrize("pitch,angle", [(20.5, 0.0), (37.3, -3.0), (64.0, 2.5), (83.7, 1.0), (48.2, -0.4)])
def test_pitch_and_rotation_of_a_known_lattice_are_found_to_a_tenth_of_a_pixel(pitch, angle):
    lat = lattice.estimate(pads((512, 640), pitch, angle))
    assert lat.found, lat.reason
    assert abs(lat.pitch - pitch) < 0.1, (lat.pitch, pitch)
    assert abs(lat.angle - angle) < 0.15, (lat.angle, angle)
    assert lat.describe()["pitch_px"] == round(lat.pitch, 3)


def test_the_generators_modules_give_their_layouts_pitch_and_rotation():
    """The synthetic modules' own layout (rows of pads, traces, staggered rows, lighting, texture)."""
    for line, seed in ((None, 0), (7, 1), (11, 2), (20, 3)):
        v = synthetic.Variation.draw(line) if line is not None else synthetic.Variation()
        lay = synthetic._Layout(np.random.default_rng(seed), 768, 768, v)    # the same draws as the image
        truth = lay.rot @ np.array([lay.pitch, 0.0])
        img = synthetic.module_image((768, 768), seed=seed, variation=v if line is not None else None).image
        lat = lattice.estimate(lattice.grey(img, 0, 255))
        assert lat.found and np.hypot(lat.ax - truth[0], lat.ay - truth[1]) < 0.1, (line, lat, truth)


@pytest.mark.parametrize("what", ["noise", "texture", "flat", "too few periods"])
def test_no_lattice_is_reported_with_its_reason(what):
    rng = np.random.default_rng(3)
    if what == "noise":
        g = rng.normal(0.5, 0.1, (384, 384)).astype(np.float32)
    elif what == "texture":
        g = cv2.GaussianBlur(rng.normal(0.5, 0.1, (384, 384)).astype(np.float32), (0, 0), 8)
    elif what == "flat":
        g = np.full((256, 256), 0.4, np.float32)
    else:
        g = pads((200, 200), 60.0, 0.0)
    lat = lattice.estimate(g)
    assert not lat.found and lat.reason and lat.describe() == {"found": False, "reason": lat.reason}
    m, lat2 = lattice.lattice_map(g, 0.0, 1.0)
    assert m is None and lat2 == lat


def test_a_pad_moved_by_two_pixels_is_the_brightest_place_of_the_map():
    pitch = 40.0
    good = pads((384, 384), pitch, 1.0, gradient=0.2)
    bad = pads((384, 384), pitch, 1.0, gradient=0.2, moved=2.0)
    gmaps, glat = lattice.lattice_map(good, 0.0, 1.0)
    bmaps, blat = lattice.lattice_map(bad, 0.0, 1.0)
    gm, bm = named(gmaps, "moved"), named(bmaps, "moved")           # a moved edge
    assert glat.found and blat.found
    diff = np.abs(bad - good) > 0.05            # where the moved pad's edges swept
    ys, xs = np.nonzero(diff)
    assert len(ys) > 20
    y, x = np.unravel_index(int(np.argmax(bm)), bm.shape)
    assert abs(y - ys.mean()) < pitch / 2 and abs(x - xs.mean()) < pitch / 2
    # the good lattice under a 20% illumination gradient stays far below the moved pad
    assert gm.max() < 0.5 * bm.max(), (gm.max(), bm.max())


def test_pads_a_pixel_off_their_place_are_forgiven_and_a_pad_moved_by_three_is_not():
    """The tolerant comparison (``moved``): on a lattice whose every pad sits up to a pixel off its
    place (as real pads and the generator's do), the plain residual's map lights the jittered edges
    at more than a quarter of what it shows for a pad moved by three pixels; the tolerant map
    forgives the jitter and keeps the moved pad."""
    pitch, rng = 40.0, np.random.default_rng(5)

    def jittered(moved):
        img = pads((384, 384), pitch, 0.0, moved=moved, noise=0.005)
        out = img.copy()
        for x0 in range(0, 384, int(pitch)):       # each column of cells shifted by up to 1 px
            dx = float(rng.uniform(-1, 1))
            m = np.float32([[1, 0, dx], [0, 1, 0]])
            out[:, x0:x0 + int(pitch)] = cv2.warpAffine(img, m, (384, 384), borderMode=cv2.BORDER_REFLECT)[:, x0:x0 + int(pitch)]
        return out

    good, bad = jittered(0.0), jittered(3.0)
    gmaps, _ = lattice.lattice_map(good, 0.0, 1.0)
    bmaps, _ = lattice.lattice_map(bad, 0.0, 1.0)
    tolerant = named(bmaps, "moved").max() / named(gmaps, "moved").max()
    legacy_g, _ = lattice.lattice_map(good, 0.0, 1.0, lattice.LEGACY_MAPS, lattice.LEGACY_BLUR)
    legacy_b, _ = lattice.lattice_map(bad, 0.0, 1.0, lattice.LEGACY_MAPS, lattice.LEGACY_BLUR)
    plain = legacy_b[0].max() / legacy_g[0].max()       # the map before the tolerance (measured: 6.0 against 3.6)
    assert tolerant > 4 and tolerant > 1.4 * plain, (tolerant, plain)


def test_the_band_without_neighbours_on_both_sides_is_left_to_the_knn_map():
    g = pads((256, 320), 30.0, 0.0)
    lat = lattice.estimate(g)
    raw = lattice.median_residual(g, np.float32(lat.ax), np.float32(lat.ay), lattice.NEIGHBOURS)
    assert not raw[:, :int(lat.pitch) - 1].any() and not raw[:, -int(lat.pitch) + 1:].any()
    assert raw[:, int(lat.pitch) + 1:-int(lat.pitch) - 1].any()


def test_each_pixel_is_compared_with_numpys_median_of_the_pairs_inside_the_image():
    """The sorting networks (8, 6 and 4 values) and the two-value mean give what np.median gives over
    the pairs of neighbours whose both cells lie inside, in every band of the image (1-4 pairs)."""
    rng = np.random.default_rng(7)
    g = cv2.GaussianBlur(rng.random((60, 90), np.float32), (0, 0), 1.0)
    ax, ay, k = 7.3, 1.6, 4
    stack = []
    for j in range(1, k + 1):
        for sign in (1.0, -1.0):
            m = np.float32([[1, 0, sign * j * ax], [0, 1, sign * j * ay]])
            stack.append(cv2.warpAffine(g, m, (90, 60), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan")))
    stack = np.array(stack)
    want, pairs = np.zeros_like(g), np.zeros(g.shape, int)
    for y in range(60):
        for x in range(90):
            n = 0
            while n < k and not np.isnan(stack[2 * n:2 * n + 2, y, x]).any():
                n += 1
            pairs[y, x] = n
            if n:
                want[y, x] = g[y, x] - np.median(stack[:2 * n, y, x])
    got = lattice_kernels.median_residual(g, np.float32(ax), np.float32(ay), k)
    assert set(np.unique(pairs)) == {0, 1, 2, 3, 4}
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_the_autocorrelation_at_a_few_shifts_is_the_plain_sum_of_products():
    x = np.random.default_rng(2).standard_normal((70, 50)).astype(np.float32)
    sy, sx = np.array([0, 3, -4, 10, 69, 0], np.int64), np.array([0, -7, 5, 49, 0, -50], np.int64)
    want = [float((x[max(0, -dy):70 - max(0, dy), max(0, -dx):50 - max(0, dx)].astype(np.float64)
                   * x[max(0, dy):70 - max(0, -dy), max(0, dx):50 - max(0, -dx)]).sum()) for dy, dx in zip(sy, sx)]
    np.testing.assert_allclose(lattice_kernels.correlations(x, sy, sx), want, rtol=1e-5, atol=1e-4)


def test_a_large_faint_region_shows_in_the_coarse_map_more_than_in_the_fine_one():
    good = pads((384, 512), 32.0, 0.5, noise=0.02)
    yy, xx = np.mgrid[0:384, 0:512]
    region = np.exp(-((yy - 192) ** 2 + (xx - 256) ** 2) / (2 * 45.0 ** 2)).astype(np.float32)
    bad = good * (1 - 0.06 * region)                      # 6% darker, 45 px across: faint, over many cells
    gmaps, _ = lattice.lattice_map(good, 0.0, 1.0)
    bmaps, _ = lattice.lattice_map(bad, 0.0, 1.0)
    gf, gc, bf, bc = named(gmaps, "fine"), named(gmaps, "coarse"), named(bmaps, "fine"), named(bmaps, "coarse")
    assert bc.max() / gc.max() > 1.5 * (bf.max() / gf.max()), (bc.max() / gc.max(), bf.max() / gf.max())
    assert bc.max() / gc.max() > 2


@pytest.mark.parametrize("shape,pitch", [((384, 512), 40.0), ((1150, 1534), 150.0)], ids=["own-size", "shrunk"])
def test_the_reach_widens_the_lattices_mark_and_keeps_its_peak(shape, pitch):
    """Spread over REACH px, the fused lattice map marks a cut wider and keeps the maps' maximum: at
    the image's own size exactly; where the maps are computed shrunk (a pitch over 96 px; here by 3,
    to a size the image's is not a whole multiple of, as 2048 px is not of its), the peak the
    interpolation to the image's size lowered comes through whole, as the fit read it."""
    good = pads(shape, pitch, 0.7)
    bad = good.copy()
    y, x = shape[0] // 2, shape[1] // 2
    bad[y - 1:y + 2, x - 30:x + 30] = 0.3                  # a thin cut across the pads at the centre
    zero = np.zeros(shape, np.float32)
    gains = [1.0] * len(lattice.MAPS)
    plain = lattice.fuse(zero, bad, 0.0, 1.0, gains, lattice.MAPS, lattice.BLUR, reach=0)[0]
    spread = lattice.fuse(zero, bad, 0.0, 1.0, gains, lattice.MAPS, lattice.BLUR, reach=lattice.REACH)[0]
    work, _lat = lattice.work_maps(bad, 0.0, 1.0)
    peak = float(work.max())                              # what a fit reads of the image (lattice.maxima)
    assert spread.max() == pytest.approx(peak, rel=1e-6)
    if work.shape[1:] == shape:
        assert plain.max() == pytest.approx(peak, rel=1e-6)
    else:
        assert plain.max() < peak * (1 - 1e-4)
    half = 0.5 * peak
    assert (spread > half).sum() > 1.5 * (plain > half).sum() > 0
    assert (spread >= plain - 1e-6).all()


def test_calibration_matches_each_map_to_the_knn_map_on_good_images_and_is_off_without_a_lattice():
    cal = lattice.calibrate([20.0, 22.0, 24.0], [[0.1, 0.01], [0.11, 0.02], None, [0.09, 0.03]], weight=1.0)
    q = np.percentile([[0.1, 0.01], [0.11, 0.02], [0.09, 0.03]], lattice.GOOD_QUANTILE, axis=0)
    assert cal["enabled"] and cal["gains"] == pytest.approx([22.0 / q[0], 22.0 / q[1]]) and cal["found"] == 3
    assert 0.1 < q[0] < 0.11 and 0.02 < q[1] < 0.03       # a high percentile of the good maxima, not their median
    half = lattice.calibrate([20.0, 22.0], [[0.1, 0.1], [0.2, 0.2]], weight=0.5)
    q = np.percentile([0.1, 0.2], lattice.GOOD_QUANTILE)
    assert half["gains"] == pytest.approx([0.5 * 21.0 / q] * 2)
    off = lattice.calibrate([20.0, 22.0], [None, None, [0.1, 0.1]], weight=1.0)
    assert not off["enabled"] and "1 of 3" in off["reason"]
    assert lattice.fused_maximum(20.0, [0.1, 0.2], [100.0, 150.0]) == pytest.approx(30.0)
    assert lattice.fused_maximum(20.0, None, [100.0, 150.0]) == 20.0


def test_a_large_image_is_compared_at_the_size_where_its_pitch_is_48_to_96_px():
    """A 1536 px image with a 150 px pitch: its maps come at full size, and a pad moved by 6 px
    (2 px at a third of the size) still shows where it moved."""
    good = pads((1152, 1536), 150.0, 0.7)
    bad = pads((1152, 1536), 150.0, 0.7, moved=6.0)
    gmaps, lat = lattice.lattice_map(good, 0.0, 1.0)
    bmaps, _ = lattice.lattice_map(bad, 0.0, 1.0)
    gm, bm = named(gmaps, "moved"), named(bmaps, "moved")
    assert lat.found and abs(lat.pitch - 150.0) < 0.2 and gm.shape == good.shape
    ys, xs = np.nonzero(np.abs(bad - good) > 0.05)
    y, x = np.unravel_index(int(np.argmax(bm)), bm.shape)
    assert abs(y - ys.mean()) < 75 and abs(x - xs.mean()) < 75 and gm.max() < 0.5 * bm.max()


def test_a_2048_px_module_has_its_lattice_found():
    """The generator's module at 2048 px (pitch about 200 px): a 512 px crop alone holds 2.5 periods."""
    v = synthetic.Variation.draw(7)
    lay = synthetic._Layout(np.random.default_rng(4), 2048, 2048, v)
    truth = lay.rot @ np.array([lay.pitch, 0.0])
    lat = lattice.estimate(lattice.grey(synthetic.module_image((2048, 2048), seed=4, variation=v).image, 0, 255))
    assert lat.found and np.hypot(lat.ax - truth[0], lat.ay - truth[1]) < 0.3, (lat, truth)
