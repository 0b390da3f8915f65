"""The threshold from every good image scored out of fold: the bank whole, each image against the
bank less its own fold's patches (model/calibration.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vi_stream.errors import ConfigError
from vi_stream.evaluation import synthetic
from vi_stream.model import AnomalyModel, ModelConfig, calibration
from vi_stream.model.config import config_from_meta
from vi_stream.model.index import PatchIndex

from ..helpers import SMALL_CONFIG, SMALL_SHAPE


def test_an_index_without_a_label_has_every_other_row_and_none_of_its_own():
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((3000, 16)).astype(np.float32)
    labels = rng.integers(0, 3, 3000).astype(np.uint8)
    index = PatchIndex.build(bank, 32, 32, labels=labels)       # nprobe = every cell: exact
    half = lambda x: x.astype(np.float16).astype(np.float32)    # the bank is held at half precision
    rows = {r.tobytes() for r in half(bank[labels != 1])}
    sub = index.without(1)
    assert len(sub.bank) == int(np.sum(labels != 1)) and {r.tobytes() for r in sub.bank} == rows
    own = half(bank[labels == 1][:50])
    assert np.all(index.distance(own, gate=0.0) < 0.01)         # each finds itself in the whole bank (rounding)
    expected = np.sqrt(((own[:, None, :] - half(bank[labels != 1])[None]) ** 2).sum(-1).min(1))
    assert np.allclose(sub.distance(own, gate=0.0), expected, rtol=1e-3, atol=0.01) and np.all(expected > 0.5)
    plain = PatchIndex.build(bank, 32, 32)
    with pytest.raises(ValueError, match="keeps no labels"):
        plain.without(0)


def test_an_odd_training_image_is_scored_as_the_bank_did_not_see_it():
    """One training image with a scratch among good ones: in the bank, so a model scores it low, but its
    calibration score comes from the other folds' patches, which have no scratch: it is the highest."""
    imgs = [synthetic.module_image(SMALL_SHAPE, seed=1000 + i).image for i in range(10)]
    imgs[7] = synthetic.module_image(SMALL_SHAPE, seed=77, defects=("scratch",)).image
    config = dataclasses.replace(SMALL_CONFIG, lattice=False)
    model = AnomalyModel.fit(imgs, config)
    cal = model.meta["calibration_scores"]
    assert model.meta["training_images"] == model.meta["calibration_images"] == len(cal) == 10
    # folds 0, 1, 2, 3, 4 hold images 0 and 5, 1 and 6, ...: the scratched image is fold 2's second
    by_fold = [i for f in range(5) for i in range(10) if i % 5 == f]
    scratched = cal[by_fold.index(7)]
    assert scratched == max(cal) and scratched > 1.5 * sorted(cal)[-2]
    assert model.score(imgs[7]).score < 0.8 * scratched           # the model's bank holds its patches
    held = AnomalyModel.fit(imgs, dataclasses.replace(config, calibration_folds=0))
    assert held.meta["training_images"] == 8 and held.meta["calibration_images"] == 2   # images 4 and 9


def test_the_cache_keeps_a_uniform_sample_of_the_images_beyond_its_bytes(monkeypatch):
    rows = np.zeros((10, 8), np.float32)                        # 160 bytes in half precision
    monkeypatch.setattr(calibration, "CACHE_BYTES", 10 * 160)
    cache = calibration.FoldCache(5, seed=0)
    for i in range(100):
        cache.offer(i, (i, i), rows, None)
    kept = sorted(shape[0] for _f, shape, _r, _l in cache.items)
    assert cache.capacity == 10 and len(kept) == 10 and cache.offered == 100
    assert kept[-1] >= 50 and kept[0] < 50 and len(set(kept)) == 10       # from all of them, not the first ten
    assert all(f == s[0] % 5 for f, s, _r, _l in cache.items) and cache.items[0][2].dtype == np.float16


@pytest.mark.parametrize("field, key, bad, kept, unknown", [
    ("calibration_folds", "folds", (1, 21, True, 2.0, -1), 5, 64),
    ("false_alarm_confidence", "confidence", (0.3, 1.0, 0.995, True, "0.9", -0.1), 0.95, 2),
])
def test_a_threshold_setting_is_checked_and_a_model_file_keeps_it_with_its_threshold_rule(field, key, bad, kept,
                                                                                           unknown):
    """The folds and the confidence act at the fit only: a file keeps them in threshold_rule, not in its config;
    a file from before one names none (held-out images, the target on average: 0), and one a future vi_stream
    names loads as provenance."""
    for b in bad:
        with pytest.raises(ConfigError, match=f"{field} must be 0"):
            ModelConfig(**{field: b}).validate()
    assert getattr(ModelConfig(**{field: 0}).validate(), field) == 0
    meta = {"config": {"backbone": "efficientnet-lite0", "taps": [2, 4, 7]}, "threshold_rule": {key: kept}}
    assert getattr(config_from_meta(meta), field) == kept
    del meta["threshold_rule"][key]
    assert getattr(config_from_meta(meta), field) == 0
    meta["threshold_rule"][key] = unknown
    assert getattr(config_from_meta(meta), field) == 0


def test_a_larger_image_shrinks_the_cache_to_its_bytes(monkeypatch):
    monkeypatch.setattr(calibration, "CACHE_BYTES", 10 * 160)
    cache = calibration.FoldCache(5, seed=0)
    for i in range(8):
        cache.offer(i, (i, i), np.zeros((10, 8), np.float32), None)         # 160 bytes each: all 8 kept
    assert len(cache.items) == 8
    cache.offer(8, (8, 8), np.zeros((40, 8), np.float32), None)            # 640 bytes: room for two of those
    assert cache.capacity == 2 and len(cache.items) == 2
    assert sum(item[2].nbytes for item in cache.items) <= calibration.CACHE_BYTES
