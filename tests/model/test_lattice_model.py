"""The lattice score as a user meets it: ``vi_stream train --lattice on`` and ``vi_stream score`` (the
installed console script, as in tests/test_commands.py), its calibration in the model file under the
digest, the per-image report (lattice found, or why not), and model files from before it."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from vi_stream.errors import ModelError
from vi_stream.evaluation import synthetic
from vi_stream.io.files import read_image, write_image
from vi_stream.model import lattice, lattice_spread, load, read_meta
from vi_stream.model.anomaly import _lattice_maxima
from vi_stream.model.calibration import calibration_indices

from ..helpers.cli import SMALL_FIT as FIT
from ..helpers.cli import good_images
from ..helpers.cli import vi_ok as vi
from ..helpers.modelfiles import meta_change, rewrite_model

SHAPE = (256, 256)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("lattice")
    good_images(root / "good", SHAPE, 300)
    s = synthetic.module_image(SHAPE, seed=399, defects=("misplaced_pad",))
    write_image(str(root / "test" / "pad.png"), s.image)
    noise = np.random.default_rng(0).integers(60, 200, SHAPE).astype(np.uint8)   # no lattice in it
    write_image(str(root / "test" / "noise.png"), noise)
    return root


@pytest.fixture(scope="module")
def lattice_model(folders):
    out = folders / "lattice.npz"
    p = vi("train", "--images", folders / "good", "--out", out, "--lattice", "on", *FIT)
    assert ("lattice score: on, found on 6 of 6 good images, each map over its spread where the module looks "
            "alike") in p.stdout, p.stdout
    return out


@pytest.fixture(scope="module")
def plain_spread_model(folders):
    """The lattice on, its maps read as they are (``--lattice-spread off``)."""
    out = folders / "no-spread.npz"
    p = vi("train", "--images", folders / "good", "--out", out, "--lattice", "on", "--lattice-spread", "off", *FIT)
    assert "lattice score: on, found on 6 of 6 good images\n" in p.stdout, p.stdout
    return out


def test_train_with_the_lattice_saves_its_calibration_under_the_digest(lattice_model):
    meta = read_meta(str(lattice_model))
    lat = meta["lattice"]
    assert meta["config"]["lattice"] is True and lat["enabled"] and min(lat["gains"]) > 0
    assert lat["maps"] == list(lattice.MAPS) and len(lat["gains"]) == len(lattice.MAPS)
    # each map but "moved" over its spread per appearance bin; the setting is named, so an older
    # vi_stream, which would read the maps as they are, refuses the file
    assert meta["config"]["lattice_spread"] is True
    tables = np.asarray(lat["spread"]["tables"])
    assert tables.shape == (len(lattice.MAPS), lattice_spread.BINS) and (tables > 0).all()
    assert (tables[0] == 1).all() and lat["spread"]["maps"] == ["thin", "fine", "coarse", "wide"]
    # the threshold was set on the fused maps: each calibration score is at least its kNN part
    assert meta["threshold"] >= max(meta["calibration_scores"])
    # the gain is bound by the digest: a file whose gain was edited is refused
    def tenfold(meta):
        meta["lattice"]["gains"][0] *= 10
    forged = rewrite_model(str(lattice_model), str(lattice_model.parent / "forged.npz"), meta_change(tenfold),
                           seal=False)
    with pytest.raises(ModelError, match="digest does not match"):
        load(forged)


def test_score_reports_each_images_lattice_or_why_it_had_none(lattice_model, folders, tmp_path):
    vi("score", "--model", lattice_model, "--images", folders / "test", "--out", tmp_path)
    with open(tmp_path / "scores.csv") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert rows["pad.png"]["lattice"].startswith("pitch ")
    assert rows["noise.png"]["lattice"].startswith("none: ")
    model = load(str(lattice_model))
    r = model.score(synthetic.module_image(SHAPE, seed=399, defects=("misplaced_pad",)).image)
    assert r.lattice["used"] and r.lattice["found"] and 10 < r.lattice["pitch_px"] < 22 and "lattice" in r.timings


@pytest.mark.parametrize("spread", [True, False], ids=["over-the-spread", "as-they-are"])
def test_the_lattice_map_is_fused_into_the_heatmap(lattice_model, plain_spread_model, spread):
    """The fused heatmap is the largest of the kNN map and the scaled lattice maps, pixel by pixel;
    with the spread, each map over its table's entry at the pixel's appearance bin (the brightness and
    edge strength of its neighbours' median, computed here with numpy apart from the model's kernels)."""
    path = str(lattice_model if spread else plain_spread_model)
    model = load(path)
    img = synthetic.module_image(SHAPE, seed=399, defects=("misplaced_pad",)).image
    fused = model.score(img).heatmap
    model.lattice = {"enabled": False, "reason": "test"}
    knn = model.score(img).heatmap
    maps, parts, _lat = lattice.work_parts(img, 0, 255)
    assert maps.shape[1:] == img.shape                      # at this pitch the maps are at the image's size
    cal = read_meta(path)["lattice"]
    if spread:
        ref = parts.b - parts.d
        gx = cv2.Sobel(ref, cv2.CV_32F, 1, 0, ksize=3) / 8
        gy = cv2.Sobel(ref, cv2.CV_32F, 0, 1, ksize=3) / 8
        mag = cv2.GaussianBlur(np.sqrt(gx * gx + gy * gy), (0, 0), 1.5, borderType=cv2.BORDER_REPLICATE)
        bright = cv2.GaussianBlur(ref, (0, 0), 1.5, borderType=cv2.BORDER_REPLICATE)
        i = np.searchsorted(np.asarray(cal["spread"]["intensity_edges"]), bright, side="left")
        j = np.searchsorted(np.asarray(cal["spread"]["gradient_edges"]), mag, side="left")
        bins = i * (len(cal["spread"]["gradient_edges"]) + 1) + j
        # the appearance may differ in the last float bit at a bin's edge: compare where it agrees
        agree = bins == lattice_spread.appearance(parts.b, parts.d)
        assert agree.mean() > 0.999
        maps = maps / np.asarray(cal["spread"]["tables"], np.float32)[:, bins]
    else:
        assert "spread" not in cal
        agree = np.ones(img.shape, bool)
    comb = np.zeros_like(knn)
    for g, m in zip(cal["gains"], maps, strict=True):
        comb = np.maximum(comb, np.float32(g) * m)
    # spread over the calibration's reach: each pixel the largest within that many px (edges repeated)
    r = cal["reach_px"]
    assert r == lattice.REACH >= 1
    padded, padded_agree = np.pad(comb, r, mode="edge"), np.pad(agree, r, mode="edge")
    h, w = comb.shape
    window = [(dy, dx) for dy in range(2 * r + 1) for dx in range(2 * r + 1)]
    comb = np.max([padded[dy:dy + h, dx:dx + w] for dy, dx in window], axis=0)
    agree = np.min([padded_agree[dy:dy + h, dx:dx + w] for dy, dx in window], axis=0)
    expected = np.maximum(knn, comb)
    assert np.allclose(fused[agree], expected[agree], rtol=1e-5, atol=1e-5)
    assert (fused > knn + 1e-3).any()
    assert fused.max() == pytest.approx(max(knn.max(), float(comb.max())), rel=1e-5)


def test_a_lattice_model_with_two_maps_scores_as_it_was_calibrated(lattice_model, tmp_path):
    """A model file fitted when the lattice score had two maps (its calibration names no maps and
    holds two gains) is scored with those two maps at their blur, so an upgrade does not move its
    scores; a calibration naming a map this vi_stream does not know is refused in one line."""
    def two_maps(meta):
        for k in ("maps", "blur_px", "spread"):
            meta["lattice"].pop(k)
        meta["config"].pop("lattice_spread")
        meta["lattice"]["gains"] = [150.0, 300.0]
    model = load(rewrite_model(str(lattice_model), str(tmp_path / "two-maps.npz"), meta_change(two_maps)))
    img = synthetic.module_image(SHAPE, seed=399, defects=("misplaced_pad",)).image
    fused = model.score(img).heatmap
    model.lattice = {"enabled": False, "reason": "test"}
    knn = model.score(img).heatmap
    (fine3, coarse), _ = lattice.lattice_map(img, 0, 255, lattice.LEGACY_MAPS, lattice.LEGACY_BLUR)
    expected = np.maximum(np.maximum(knn, np.float32(150.0) * fine3), np.float32(300.0) * coarse)
    assert np.allclose(fused, expected, rtol=1e-5, atol=1e-5)


def test_a_model_file_fitted_with_the_cut_map_scores_with_it(lattice_model, tmp_path):
    """A model file fitted before the ``thin`` map (its calibration names ``cut``, 1 px less 3 px) is
    scored with ``cut``, so an upgrade does not move its scores; today's fit names ``thin``."""
    assert read_meta(str(lattice_model))["lattice"]["maps"][1] == "thin"

    def named_cut(meta):
        meta["lattice"]["maps"] = ["cut" if m == "thin" else m for m in meta["lattice"]["maps"]]
    old = load(rewrite_model(str(lattice_model), str(tmp_path / "cut.npz"), meta_change(named_cut)))
    new = load(str(lattice_model))
    img = synthetic.module_image(SHAPE, seed=401, defects=("dust",)).image
    fused_old, fused_new = old.score(img).heatmap, new.score(img).heatmap
    new.lattice = {"enabled": False, "reason": "test"}
    knn = new.score(img).heatmap
    cal = old.lattice
    for maps, fused in ((("moved", "cut", "fine", "coarse", "wide"), fused_old), (lattice.MAPS, fused_new)):
        expected, _lat = lattice.fuse(knn.copy(), img, old.intensity.lo, old.intensity.hi, cal["gains"], maps,
                                      cal["blur_px"], reach=cal["reach_px"],
                                      spread=lattice_spread.read(cal["spread"], len(maps)))
        assert np.allclose(fused, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(fused_old, fused_new, rtol=1e-3, atol=1e-3)


def test_a_model_file_from_before_the_reach_scores_its_lattice_maps_unspread(lattice_model, tmp_path):
    """A model file fitted before the reach (its calibration names no ``reach_px``) fuses the lattice
    maps as they are, so an upgrade does not move its heatmaps; today's fit spreads them over
    ``REACH`` px, which widens the lattice's marks and leaves the image's score where it was."""
    def no_reach(meta):
        meta["lattice"].pop("reach_px")
    old = load(rewrite_model(str(lattice_model), str(tmp_path / "no-reach.npz"), meta_change(no_reach)))
    new = load(str(lattice_model))
    img = synthetic.module_image(SHAPE, seed=399, defects=("misplaced_pad",)).image
    r_old, r_new = old.score(img), new.score(img)
    cal = old.lattice
    new.lattice = {"enabled": False, "reason": "test"}
    knn = new.score(img).heatmap
    for reach, fused in ((0, r_old.heatmap), (lattice.REACH, r_new.heatmap)):
        expected, _lat = lattice.fuse(knn.copy(), img, old.intensity.lo, old.intensity.hi, cal["gains"],
                                      lattice.MAPS, cal["blur_px"], reach=reach,
                                      spread=lattice_spread.read(cal["spread"], len(lattice.MAPS)))
        assert np.allclose(fused, expected, rtol=1e-5, atol=1e-5)
    assert r_old.score == pytest.approx(r_new.score, rel=1e-6)
    assert r_new.mask.sum() > r_old.mask.sum() > 0


def test_lattice_off_and_a_model_file_from_before_the_lattice_score(folders, tmp_path):
    out = tmp_path / "plain.npz"
    p = vi("train", "--images", folders / "good", "--out", out, "--lattice", "off", *FIT)
    assert "lattice score: off" in p.stdout
    # as an older vi_stream wrote it: no lattice setting, no lattice calibration, digest over that
    meta = read_meta(str(out))
    # with the lattice off the file names no lattice setting: an older vi_stream loads it
    assert not {"lattice", "lattice_weight", "lattice_spread"} & set(meta["config"])
    # nor with the spread's setting given too: with the lattice off it is moot
    out2 = tmp_path / "plain-no-spread.npz"
    vi("train", "--images", folders / "good", "--out", out2, "--lattice", "off", "--lattice-spread", "off", *FIT)
    assert not {"lattice", "lattice_weight", "lattice_spread"} & set(read_meta(str(out2))["config"])
    model = load(rewrite_model(str(out), str(tmp_path / "old.npz"), meta_change(lambda m: m.pop("lattice"))))
    assert model.config.lattice is False and not model.lattice["enabled"]
    r = model.score(synthetic.module_image(SHAPE, seed=5).image)
    assert r.lattice == {"used": False, "reason": "the model predates the lattice score"}


def test_the_daemons_pipeline_stamps_each_result_and_stored_record_with_its_lattice(lattice_model):
    from vi_stream.frame import Frame
    from vi_stream.processing.pipeline import Pipeline
    from vi_stream.processing.settings import Settings
    from vi_stream.store import record as rec
    pipe = Pipeline(load(str(lattice_model)))
    grid = pipe.process(Frame(synthetic.module_image(SHAPE, seed=7).image, 1), Settings())
    flat = pipe.process(Frame(np.full(SHAPE, 90, np.uint8), 2), Settings())
    assert grid.parameters["lattice"]["used"] and grid.parameters["lattice"]["pitch_px"] > 0
    assert flat.parameters["lattice"] == {"found": False, "reason": "flat image", "used": False}
    side = rec.build(grid, "CAM", 128, False).side
    assert side["processing_parameters"]["lattice"] == grid.parameters["lattice"]
    json.dumps(side["processing_parameters"])          # as the stream and the store send it


@pytest.mark.parametrize("bad", [{"enabled": True, "gains": [1.0]}, {"enabled": True, "gains": [1.0, "x"]},
                                 {"enabled": True, "gains": [1.0] * 4, "maps": ["moved", "fine", "coarse", "skew"],
                                  "blur_px": 0.7},
                                 {"enabled": True, "gains": [1.0] * 3, "maps": list(lattice.MAPS), "blur_px": 0.7},
                                 {"enabled": True, "gains": [1.0, -2.0]}, {"enabled": "yes"}, None])
def test_a_lattice_calibration_no_fit_writes_is_refused_with_one_line(lattice_model, tmp_path, bad):
    """Even re-digested (the digest is not a signature), a file whose lattice calibration a fit
    never writes is refused before it scores anything."""
    def change(meta):
        if bad is None:
            meta.pop("lattice")
        else:
            meta["lattice"] = bad
    path = rewrite_model(str(lattice_model), str(tmp_path / "bad.npz"), meta_change(change))
    with pytest.raises(ModelError, match="bad lattice calibration") as err:
        load(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("bad", [{"enabled": True, "gains": [1.0]}, {"enabled": True}, "on", []])
def test_a_lattice_calibration_in_a_model_with_the_lattice_off_is_refused(lattice_model, tmp_path, bad):
    """Re-digested, a file whose lattice setting is off was not checked for its calibration: one that
    was on (one gain for two maps) loaded, and every score read past the end of the gains in compiled
    code; one that was not a table failed at load with a traceback."""
    def change(meta):
        meta["config"]["lattice"] = False
        meta["lattice"] = bad
    path = rewrite_model(str(lattice_model), str(tmp_path / "bad.npz"), meta_change(change))
    with pytest.raises(ModelError, match="bad lattice calibration: the lattice setting is off") as err:
        load(path)
    assert "\n" not in str(err.value)


FIVE = list(lattice.MAPS)


@pytest.mark.parametrize("edit, named", [
    ({"blur_px": None}, "blur_px"), ({"blur_px": "abc"}, "blur_px"), ({"blur_px": True}, "blur_px"),
    ({"blur_px": -1.0}, "blur_px"), ({"blur_px": float("nan")}, "blur_px"), ({"blur_px": float("inf")}, "blur_px"),
    ({"blur_px": 1e5}, "blur_px"), ({"blur_px": "0.7"}, "blur_px"), ("no blur_px", "blur_px"),
    ({"maps": [], "gains": []}, "maps"), ({"maps": "moved"}, "maps"), ({"maps": [["moved"]] + FIVE[1:]}, "maps"),
    ({"reach_px": -1}, "reach_px"), ({"reach_px": 1.5}, "reach_px"), ({"reach_px": True}, "reach_px"),
    ({"reach_px": "1"}, "reach_px"), ({"reach_px": 10 ** 6}, "reach_px"), ({"reach_px": None}, "reach_px")],
    ids=["none", "text", "bool", "negative", "nan", "inf", "huge", "quoted", "missing", "no-maps", "a-string",
         "a-list-in-the-list", "reach-negative", "reach-fraction", "reach-bool", "reach-quoted", "reach-huge",
         "reach-none"])
def test_a_lattice_calibration_naming_a_blur_or_maps_no_fit_writes_is_refused_at_load(lattice_model, tmp_path,
                                                                                      edit, named):
    """Re-digested, a calibration that names the maps (a fit since the five maps) but a blur no fit writes,
    or maps that are not a list of names, was loaded: a negative or NaN blur silently skipped the blur, a
    blur of 1e5 px took a minute an image and one of Infinity px had OpenCV ask for 8 GiB (the daemon
    killed); no maps and no gains passed and every score failed on an IndexError. Refused in one line
    naming the field, as the gains are; so is a reach that is not a whole number of pixels from 0 to
    MAX_REACH (the window's side is twice the reach, plus one)."""
    def change(meta):
        if edit == "no blur_px":
            meta["lattice"].pop("blur_px")
        else:
            meta["lattice"].update(edit)
    bad = rewrite_model(str(lattice_model), str(tmp_path / "bad.npz"), meta_change(change))
    with pytest.raises(ModelError, match=f"bad lattice calibration: {named} ") as err:
        load(bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("edit, named", [
    (lambda lat: lat["spread"]["tables"][1].__setitem__(3, 0.0), "spread tables"),
    (lambda lat: lat["spread"]["tables"][2].__setitem__(0, float("nan")), "spread tables"),
    (lambda lat: lat["spread"]["tables"].pop(), "spread tables"),
    (lambda lat: lat["spread"]["tables"][0].append(1.0), "spread tables"),
    (lambda lat: lat["spread"].__setitem__("tables", "wide"), "spread tables"),
    (lambda lat: lat["spread"]["gradient_edges"].__setitem__(0, 0.5), "spread gradient_edges"),
    (lambda lat: lat["spread"].pop("intensity_edges"), "spread intensity_edges"),
    (lambda lat: lat.__setitem__("spread", [1, 2]), "spread "),
    (lambda lat: lat["spread"]["tables"][1].__setitem__(7, 1e-50), "spread tables"),     # 0 in float32
    (lambda lat: lat["spread"]["tables"][1].__setitem__(7, 1e300), "spread tables"),     # inf in float32
    (lambda lat: lat["spread"]["tables"][1].__setitem__(7, "2.5"), "spread tables"),
    (lambda lat: lat["spread"]["tables"][1].__setitem__(7, True), "spread tables"),
    (lambda lat: lat.__setitem__("spread", None), "the lattice_spread setting is on but the calibration has no spread"),
    (lambda lat: lat.pop("spread"), "the lattice_spread setting is on but the calibration has no spread tables")],
    ids=["a-zero", "nan", "a-map-short", "a-bin-more", "not-a-table", "other-edges", "no-edges", "a-list",
         "tiny", "huge", "quoted", "a-bool", "null", "no-spread"])
def test_a_spread_no_fit_writes_is_refused_at_load_in_one_line(lattice_model, tmp_path, edit, named):
    """Re-digested, a spread table with a zero would divide a map by it (an infinite heatmap), one of another
    shape would be read past its end in compiled code, and other bin edges would read every pixel in
    another bin: each is refused before it scores, naming the field."""
    bad = rewrite_model(str(lattice_model), str(tmp_path / "bad.npz"), meta_change(lambda m: edit(m["lattice"])))
    with pytest.raises(ModelError, match=f"bad lattice calibration: {named}") as err:
        load(bad)
    assert "\n" not in str(err.value)


def test_spread_tables_with_the_setting_off_are_refused(plain_spread_model, lattice_model, tmp_path):
    """A file whose setting says its maps are read as they are but whose calibration has tables (or the
    converse) was calibrated one way and would score the other: refused."""
    tables = read_meta(str(lattice_model))["lattice"]["spread"]
    bad = rewrite_model(str(plain_spread_model), str(tmp_path / "bad.npz"),
                        meta_change(lambda m: m["lattice"].__setitem__("spread", tables)))
    with pytest.raises(ModelError, match="the lattice_spread setting is off but the calibration has spread tables"):
        load(bad)


BIG = (512, 512)      # six good images of it fill some appearance bins (MIN_PIXELS each), not only the whole map


def _as_kind(img: np.ndarray, kind: str) -> np.ndarray:
    return {"grey8": img, "rgb16": np.repeat(img[:, :, None], 3, axis=2).astype(np.uint16) * 257,
            "float": img.astype(np.float32) / 255}[kind]


@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    """The same six good 512 px images and a misplaced pad, as 8-bit grey PNGs, 16-bit colour PNGs
    (x 257, every channel) and 32-bit float TIFFs (/ 255); and the 8-bit grey model."""
    root = tmp_path_factory.mktemp("typed")
    images = [synthetic.module_image(BIG, seed=300 + i).image for i in range(6)]
    pad = synthetic.module_image(BIG, seed=399, defects=("misplaced_pad",)).image
    for kind, suffix in (("grey8", ".png"), ("rgb16", ".png"), ("float", ".tiff")):
        for i, img in enumerate(images):
            write_image(str(root / kind / "good" / f"g{i}{suffix}"), _as_kind(img, kind))
        write_image(str(root / kind / "test" / f"pad{suffix}"), _as_kind(pad, kind))
    vi("train", "--images", root / "grey8" / "good", "--out", root / "grey8.npz", "--lattice", "on", *FIT)
    return root


@pytest.mark.parametrize("kind", ["rgb16", "float"])
def test_the_spread_is_read_in_the_images_own_range_whatever_its_type(typed, kind):
    """The same good images as 16-bit colour or float fit the same spread, bin by bin, as the 8-bit
    grey ones: the maps and their appearance bins are of the image brought to [0, 1] by the model's
    range, so a table is not in one type's units (in 16-bit units every pixel would sit in the
    brightest bin). Scored, the misplaced pad is over the threshold on every type."""
    out = typed / f"{kind}.npz"
    vi("train", "--images", typed / kind / "good", "--out", out, "--lattice", "on", *FIT)
    meta, ref = read_meta(str(out)), read_meta(str(typed / "grey8.npz"))
    assert meta["intensity"] == ([0.0, 65535.0] if kind == "rgb16" else [0.0, 1.0])
    got, want = (np.asarray(m["lattice"]["spread"]["tables"]) for m in (meta, ref))
    assert max(len(np.unique(row)) for row in want) >= 3      # bins of their own, not one value a map
    # the same pixels in the same bins: the same histogram buckets (1.2 % apart), but for a pixel whose
    # value moved across a bucket's or a bin's edge in the last float bit
    assert np.mean(np.isclose(got, want, rtol=0.025)) > 0.99, np.abs(got / want - 1).max()
    vi("score", "--model", out, "--images", typed / kind / "test", "--out", typed / f"scored-{kind}")
    with open(typed / f"scored-{kind}" / "scores.csv") as f:
        row = next(csv.DictReader(f))
    assert row["file"].startswith("pad.") and row["lattice"].startswith("pitch ")
    assert float(row["score"]) > meta["threshold"], (row, meta["threshold"])


def test_held_out_calibration_reads_the_lattice_over_the_same_spread(lattice_model, folders, tmp_path):
    """With ``--calibration-folds 0`` (every other good image held out of the bank to set the threshold)
    every good image still gives its maps to the spread, in the same folds: the tables are those of the
    out-of-fold fit, and each held-out image's calibration score is the larger of its kNN score and its
    gained maps' maxima read over the tables of the other folds' images (recomputed here from the
    same files). The misplaced pad is over the threshold so set."""
    out = tmp_path / "held-out.npz"
    p = vi("train", "--images", folders / "good", "--out", out, "--lattice", "on", *FIT, "--calibration-folds", 0)
    assert "3 training + 3 calibration images" in p.stdout and "each map over its spread" in p.stdout, p.stdout
    meta = read_meta(str(out))
    assert meta["lattice"]["spread"] == read_meta(str(lattice_model))["lattice"]["spread"]
    model = load(str(out))
    images = [read_image(str(f)) for f in sorted((folders / "good").glob("*.png"))]
    stats = lattice_spread.SpreadStats(lattice.MAPS)
    items = [_lattice_maxima(i, im, model.intensity, stats) for i, im in enumerate(images)]
    gains = meta["lattice"]["gains"]
    model.lattice = {"enabled": False, "reason": "test"}
    model.index.gate = 0.0                  # exhaustive within the probed cells, as the fit scores them
    held = calibration_indices(len(images), model.config)
    want = [lattice.fused_maximum(model.score(images[i]).score, stats.maxima(items[i]), gains) for i in held]
    assert np.allclose(meta["calibration_scores"], want, rtol=1e-4), (meta["calibration_scores"], want)
    # read over every image's tables (its own pixels in them) instead, they would have been other numbers
    whole = lattice_spread.read(stats.tables(), len(lattice.MAPS))
    own = [lattice.fused_maximum(0.0, lattice_spread.image_maxima(items[i][1], whole), gains) for i in held]
    assert not np.allclose(own, [lattice.fused_maximum(0.0, stats.maxima(items[i]), gains) for i in held], rtol=1e-3)
    vi("score", "--model", out, "--images", folders / "test", "--out", tmp_path / "scored")
    with open(tmp_path / "scored" / "scores.csv") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert float(rows["pad.png"]["score"]) > meta["threshold"], (rows["pad.png"], meta["threshold"])
