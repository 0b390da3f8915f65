"""The zoom setting as a user meets it: ``vi_stream train --zoom`` enlarges each image before the
backbone sees it, and the model still answers at the image's own size (its heatmap, its defects);
a zoom out of range is refused before anything is written, and a model at zoom 1 names no zoom (an
older vi_stream loads it)."""
from __future__ import annotations

import csv
import subprocess

import numpy as np
import pytest

from vi_stream.evaluation import synthetic
from vi_stream.io.files import write_image
from vi_stream.model import load, read_meta

from ..helpers.cli import ok
from ..helpers.cli import vi as run

SHAPE = (192, 192)
FIT = ("--tile", 128, "--overlap", 32, "--bank-size", 2000, "--cells", 16, "--calibration-every", 2)


def vi(*args) -> subprocess.CompletedProcess:
    return ok(run(*args))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoom")
    for i in range(6):
        write_image(str(root / "good" / f"g{i}.png"), synthetic.module_image(SHAPE, seed=500 + i).image)
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
    p = run("train", "--images", folders / "good", "--out", out, "--zoom", zoom, *FIT)
    assert p.returncode != 0 and "zoom must be a number from 1 to 3" in p.stderr, p.stderr
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
