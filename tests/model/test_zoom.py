"""The zoom setting as a user meets it: ``vi_stream train --zoom`` enlarges each image before the
backbone sees it, and the model still answers at the image's own size (its heatmap, its defects);
a zoom out of range is refused before anything is written, and a model at zoom 1 names no zoom (an
older vi_stream loads it)."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from vi_stream.errors import InputError
from vi_stream.evaluation import synthetic
from vi_stream.io.files import write_image
from vi_stream.model import AnomalyModel, ModelConfig, load, read_meta
from vi_stream.model.calibration import calibration_indices
from vi_stream.model.tiling import zoomed

from ..helpers.cli import SMALL_FIT as FIT
from ..helpers.cli import good_images
from ..helpers.cli import one_line_error
from ..helpers.cli import vi as run
from ..helpers.cli import vi_ok as vi

SHAPE = (192, 192)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoom")
    good_images(root / "good", SHAPE, 500)
    write_image(str(root / "test" / "good.png"), synthetic.module_image(SHAPE, seed=590).image)
    write_image(str(root / "test" / "scratch.png"), synthetic.module_image(SHAPE, seed=591, defects=("scratch",)).image)
    return root


@pytest.fixture(scope="module")
def zoomed_model(folders):
    out = folders / "zoom.npz"
    vi("train", "--images", folders / "good", "--out", out, "--zoom", "1.5", *FIT)
    return out


def test_a_zoomed_model_answers_at_the_images_size_and_finds_the_defect_where_it_is(zoomed_model, folders, tmp_path):
    assert read_meta(str(zoomed_model))["config"]["zoom"] == 1.5
    model = load(str(zoomed_model))
    assert model.config.zoom == 1.5
    s = synthetic.module_image(SHAPE, seed=591, defects=("scratch",))
    r = model.score(s.image)
    assert r.heatmap.shape == SHAPE and r.mask.shape == SHAPE and r.is_anomalous
    y, x = np.unravel_index(np.argmax(r.heatmap), SHAPE)
    ys, xs = np.nonzero(s.mask)
    assert ys.min() - 8 <= y <= ys.max() + 8 and xs.min() - 8 <= x <= xs.max() + 8, ((y, x), s.info)
    assert np.array_equal(model.score(s.image).heatmap, r.heatmap)     # the same image, the same map
    vi("score", "--model", zoomed_model, "--images", folders / "test", "--out", tmp_path)
    with open(tmp_path / "scores.csv") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert rows["scratch.png"]["is_anomalous"] == "1" and rows["good.png"]["is_anomalous"] == "0"


@pytest.mark.parametrize("zoom", ["0.5", "3.5", "nan"])
def test_a_zoom_out_of_range_is_refused_and_nothing_is_written(folders, tmp_path, zoom):
    out = tmp_path / "m.npz"
    one_line_error(run("train", "--images", folders / "good", "--out", out, "--zoom", zoom, *FIT),
                   "zoom must be a number from 1 to 3")
    assert not out.exists()


def test_a_model_at_zoom_1_names_no_zoom_and_scores_as_before(folders, zoomed_model, tmp_path):
    out = tmp_path / "plain.npz"
    vi("train", "--images", folders / "good", "--out", out, *FIT)
    plain = read_meta(str(out))
    assert "zoom" not in plain["config"]      # a vi_stream from before zoom loads it
    # the zoomed fit saw each 192 px image at 288 px: 3x3 tiles of 128 px where the plain fit had 2x2
    assert plain["training_tiles"] == 4 * 6 and read_meta(str(zoomed_model))["training_tiles"] == 9 * 6
    model = load(str(out))
    assert model.config.zoom == 1.0
    assert model.score(synthetic.module_image(SHAPE, seed=590).image).heatmap.shape == SHAPE

TINY = dict(tile=128, overlap=32, bank_size=2000, cells=16, calibration_every=2)


def _images(kind: str, shape=(190, 203)):
    out = []
    for i in range(6):
        img = synthetic.module_image(shape, seed=700 + i, kind="rgb" if kind == "rgb16" else "grey8").image
        out.append({"grey8": img, "rgb16": img.astype(np.uint16) * 16, "float": img.astype(np.float32) / 255}[kind])
    return out


@pytest.mark.parametrize("kind,zoom,lat", [("grey8", 1.37, False), ("rgb16", 1.5, False), ("float", 1.5, True)])
def test_a_zoomed_model_scores_its_held_out_images_as_its_fit_did(kind, zoom, lat):
    """Fit and score see the image through the same zoom: a held-out image scored exhaustively (gate 0)
    gets the calibration score the fit gave it, at any size, type and with the lattice score (its maps
    as they are: over their spread, a calibration image is read over the other folds' spread, and
    scoring over every good image's, by design: tests/model/test_lattice_spread.py)."""
    imgs = _images(kind)
    config = ModelConfig(**TINY, zoom=zoom, lattice=lat, lattice_spread=False,
                         calibration_folds=0)   # held out: the model scores them
    model = AnomalyModel.fit(imgs, config)
    model.index.gate = 0.0
    held = calibration_indices(len(imgs), config)
    got = [model.score(imgs[i]).score for i in held]
    assert np.allclose(got, model.meta["calibration_scores"], rtol=1e-4), (got, model.meta["calibration_scores"])
    r = model.score(imgs[0])
    assert r.heatmap.shape == imgs[0].shape[:2] and np.isfinite(r.heatmap).all()


def test_the_enlarged_image_keeps_to_the_images_values_and_its_size_is_bounded():
    img = np.zeros((64, 64), np.float32)
    img[:, 32:] = 1.0                                         # a step: bicubic overshoots on both sides of it
    model_range = type("I", (), {"lo": 0.0, "hi": 1.0})()
    z = zoomed(img, 1.5, model_range)
    assert z.shape == (96, 96) and z.min() == 0.0 and z.max() == 1.0
    with pytest.raises(InputError, match="at zoom 3 is 199 MP through the backbone"):
        zoomed(np.zeros((4700, 4700), np.uint8), 3.0, model_range)
